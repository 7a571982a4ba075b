"""Several independent pipes at once: one process each, with a live per-pipe report.

Run it with ``python examples/many_pipes.py [OUTPUT_DIR]``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import BaseModel

from zoopipe_hpc import CSVInputAdapter, CSVOutputAdapter, JSONInputAdapter, Pipe, PipeManager


class Order(BaseModel):
    order_id: int
    amount: float


class Product(BaseModel):
    sku: str
    price: float


def main() -> int:
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "examples/output")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "orders.csv").write_text(
        "order_id,amount\n" + "".join(f"{i},{i * 1.5}\n" for i in range(1000)) + "oops,1\n"
    )
    with open(folder / "products.jsonl", "w") as f:
        for i in range(500):
            f.write(json.dumps({"sku": f"P{i:04d}", "price": i / 3}) + "\n")

    manager = PipeManager(
        pipes=[
            Pipe(
                input_adapter=CSVInputAdapter(folder / "orders.csv"),
                output_adapter=CSVOutputAdapter(folder / "orders_clean.csv"),
                schema_model=Order,
            ),
            Pipe(
                input_adapter=JSONInputAdapter(folder / "products.jsonl"),
                output_adapter=CSVOutputAdapter(folder / "products_clean.csv"),
                schema_model=Product,
            ),
        ]
    )
    with manager:
        manager.wait()
    for report in manager.pipe_reports:
        print(report)
    # The invalid order was counted and logged (there is no error output), never written.
    return 0 if manager.succeeded and manager.report.error_count == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
