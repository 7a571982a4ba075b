"""Quickstart: validate a CSV of users on this machine, split across two local processes.

Run it with ``python examples/quickstart.py [OUTPUT_DIR]``. It writes a small input with a few
bad rows, then produces ``users.parquet`` (valid rows) and ``users.errors.jsonl`` (invalid rows,
each with its line and pydantic's errors), committed only if every shard succeeded.
"""

from __future__ import annotations

import csv
import random
import sys
import time
from pathlib import Path

from pydantic import BaseModel, Field

from zoopipe_hpc import (
    CSVInputAdapter,
    JSONOutputAdapter,
    ParquetOutputAdapter,
    Pipe,
    PipeManager,
)


class User(BaseModel):
    user_id: int
    username: str = Field(min_length=1, max_length=32)
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    age: int = Field(ge=0, le=150)


def make_input(path: Path, rows: int = 20_000) -> None:
    rng = random.Random(7)
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["user_id", "username", "email", "age"])
        for i in range(rows):
            age: object = rng.randint(18, 90)
            email = f"user{i}@example.org"
            if i % 1000 == 17:
                age = "unknown"  # not a number: goes to the error output
            if i % 1000 == 523:
                email = "no-at-sign"
            out.writerow([i, f"user, {i}", email, age])


def main() -> int:
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "examples/output")
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / "users.csv"
    make_input(source)

    pipe = Pipe(
        input_adapter=CSVInputAdapter(source),
        output_adapter=ParquetOutputAdapter(folder / "users.parquet"),
        error_output_adapter=JSONOutputAdapter(folder / "users.errors.jsonl"),
        schema_model=User,
    )
    manager = PipeManager.parallelize_pipe(pipe, workers=2)
    manager.start()
    while not manager.report.is_finished:
        report = manager.report
        print(f"  {report.total_processed} rows, {report.items_per_second:,.0f} rows/s")
        time.sleep(0.2)
    committed = manager.run()  # already started: waits, then merges and commits
    print(manager.report)
    for shard in manager.pipe_reports:
        print(f"  {shard}")
    if not committed:
        print(f"nothing committed: {manager.error}", file=sys.stderr)
        return 1
    print(f"valid rows  -> {folder / 'users.parquet'}")
    print(f"error rows  -> {folder / 'users.errors.jsonl'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
