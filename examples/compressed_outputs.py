"""Compressed in, compressed out: a folder of .csv.gz files to one .csv.zst and a .jsonl.gz of
error records, through 3 shards whose compressed parts are merged without re-encoding.

Run it with ``python examples/compressed_outputs.py [OUTPUT_DIR]`` (``.zst`` needs the
``zstandard`` module: ``pip install 'zoopipe_hpc[zstd]'``).
"""

from __future__ import annotations

import csv
import gzip
import io
import sys
from pathlib import Path

import zstandard
from pydantic import BaseModel

from zoopipe_hpc import CSVInputAdapter, CSVOutputAdapter, JSONOutputAdapter, Pipe, PipeManager


class Reading(BaseModel):
    station: str
    value: float


def main() -> int:
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "examples/output")
    raw = folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for day in range(1, 7):
        rows = "".join(f"S{i % 5},{day * 100 + i}\n" for i in range(200))
        bad = "S9,not a number\n" if day == 3 else ""
        (raw / f"2024-01-{day:02d}.csv.gz").write_bytes(
            gzip.compress(("station,value\n" + rows + bad).encode())
        )

    pipe = Pipe(
        input_adapter=CSVInputAdapter(raw),  # the folder: its files in sorted order
        output_adapter=CSVOutputAdapter(folder / "readings.csv.zst"),
        error_output_adapter=JSONOutputAdapter(folder / "readings.errors.jsonl.gz"),
        schema_model=Reading,
    )
    manager = PipeManager.parallelize_pipe(pipe, workers=3)
    if not manager.run():
        print(f"nothing committed: {manager.error}")
        return 1
    print(manager.report)

    # One valid zstd file (the shards' frames one after another), its header once.
    with zstandard.open(folder / "readings.csv.zst", "rt", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    errors = gzip.decompress((folder / "readings.errors.jsonl.gz").read_bytes())
    print(f"{len(rows)} readings, {len(io.BytesIO(errors).readlines())} error record(s)")
    return 0 if len(rows) == 1200 and rows[0] == {"station": "S0", "value": "100"} else 1


if __name__ == "__main__":
    sys.exit(main())
