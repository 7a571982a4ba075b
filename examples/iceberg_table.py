"""Append validated rows to an Apache Iceberg table, one atomic snapshot per run.

Run it with ``python examples/iceberg_table.py [OUTPUT_DIR]`` (needs ``zoopipe_hpc[iceberg]``).
It writes a small CSV of orders, then runs it twice through three local processes into the
table ``shop.orders`` of a warehouse folder with an embedded SQLite catalog: each run adds
exactly one snapshot, tagged with its run id; a rerun with the same run id adds nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import BaseModel, Field

from zoopipe_hpc import CSVInputAdapter, IcebergOutputAdapter, JSONOutputAdapter, Pipe, PipeManager


class Order(BaseModel):
    order_id: int
    customer: str = Field(min_length=1)
    amount: float = Field(ge=0)


def make_input(path: Path, rows: int = 3_000) -> None:
    lines = ["order_id,customer,amount"]
    for i in range(rows):
        amount = "-1" if i % 500 == 7 else f"{i * 1.25:.2f}"  # a few invalid rows
        lines.append(f"{i},customer {i % 97},{amount}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def run(folder: Path, run_id: str) -> bool:
    pipe = Pipe(
        input_adapter=CSVInputAdapter(folder / "orders.csv"),
        output_adapter=IcebergOutputAdapter("shop.orders", warehouse=folder / "warehouse"),
        error_output_adapter=JSONOutputAdapter(folder / "orders.errors.jsonl"),
        schema_model=Order,
    )
    manager = PipeManager.parallelize_pipe(pipe, workers=3, run_id=run_id)
    ok = manager.run()
    print(f"run {run_id}: {manager.report}")
    if not ok:
        print(f"nothing committed: {manager.error}", file=sys.stderr)
    return ok


def main() -> int:
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "examples/output")
    folder.mkdir(parents=True, exist_ok=True)
    make_input(folder / "orders.csv")
    for run_id in ("orders-day-1", "orders-day-2", "orders-day-2"):  # the last is a rerun
        if not run(folder, run_id):
            return 1

    table = IcebergOutputAdapter("shop.orders", warehouse=folder / "warehouse").load_table()
    for snapshot in table.snapshots():
        summary = snapshot.summary.additional_properties if snapshot.summary else {}
        print(
            f"snapshot {snapshot.snapshot_id}: run {summary.get('zoopipe.run-id')}, "
            f"+{summary.get('added-records')} rows"
        )
    rows = table.scan().to_arrow().num_rows
    print(f"shop.orders has {rows} rows in {len(table.snapshots())} snapshots")
    expected = 2 * (3_000 - 6)
    if rows != expected or len(table.snapshots()) != 2:
        print(f"expected {expected} rows in 2 snapshots", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
