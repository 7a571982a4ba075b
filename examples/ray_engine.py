"""Ray: validate a CSV of orders split into two shards, each run as one task on a local Ray.

Run it with ``python examples/ray_engine.py [OUTPUT_DIR]`` (needs ``pip install
'zoopipe_hpc[ray]'``). It starts a local Ray instance (two CPUs, no dashboard), writes
``orders.jsonl`` (valid rows, in input order) and ``orders.errors.jsonl`` (invalid rows),
prints the report, and stops the Ray instance it started. To use a running cluster instead,
pass its address: ``RayEngine(address="auto")`` (see docs/ray.md).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from pydantic import BaseModel, Field

from zoopipe_hpc import CSVInputAdapter, JSONOutputAdapter, Pipe, PipeManager
from zoopipe_hpc.engines.ray import RayEngine


class Order(BaseModel):
    order_id: int
    customer: str = Field(min_length=1)
    amount: float = Field(gt=0)


def make_input(path: Path, rows: int = 2_000) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["order_id", "customer", "amount"])
        for i in range(rows):
            amount = "-1" if i % 250 == 3 else f"{(i % 97) + 0.5:.2f}"  # a few invalid rows
            out.writerow([i, f"customer {i % 40}", amount])


def main() -> int:
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "examples/output").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / "orders.csv"
    make_input(source)

    pipe = Pipe(
        input_adapter=CSVInputAdapter(source),
        output_adapter=JSONOutputAdapter(folder / "orders.jsonl"),
        error_output_adapter=JSONOutputAdapter(folder / "orders.errors.jsonl"),
        schema_model=Order,
    )
    engine = RayEngine(init_kwargs={"num_cpus": 2})
    manager = PipeManager.parallelize_pipe(pipe, workers=2, engine=engine)
    try:
        committed = manager.run(timeout=300)
    finally:
        manager.shutdown()  # stops the local Ray instance the engine started
    print(manager.report)
    for shard in manager.pipe_reports:
        print(f"  {shard}")
    if not committed:
        print(f"nothing committed: {manager.error}", file=sys.stderr)
        return 1
    print(f"valid rows  -> {folder / 'orders.jsonl'}")
    print(f"error rows  -> {folder / 'orders.errors.jsonl'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
