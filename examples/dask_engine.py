"""A pipe split into four shards, each one task of a local Dask cluster.

Run it with ``python examples/dask_engine.py [OUTPUT_DIR]`` (needs ``pip install
'zoopipe_hpc[dask]'``). DaskEngine() with no address starts a LocalCluster for the run and
closes it on shutdown; give it a scheduler address, a Client or a dask-jobqueue SLURMCluster
to run the same pipes elsewhere (see docs/dask.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import BaseModel, Field

from zoopipe_hpc import CSVInputAdapter, JSONOutputAdapter, Pipe, PipeManager
from zoopipe_hpc.engines.dask import DaskEngine


class Reading(BaseModel):
    sensor: str = Field(min_length=1)
    celsius: float = Field(ge=-90, le=60)


def main() -> int:
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "examples/output")
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / "readings.csv"
    with open(source, "w", encoding="utf-8") as f:
        f.write("sensor,celsius\n")
        for i in range(4000):
            # Every 500th reading is out of range: it goes to the error output.
            f.write(f"s{i % 17},{999 if i % 500 == 7 else (i % 50) - 10}\n")

    pipe = Pipe(
        input_adapter=CSVInputAdapter(source),
        output_adapter=JSONOutputAdapter(folder / "readings.jsonl"),
        error_output_adapter=JSONOutputAdapter(folder / "readings.errors.jsonl"),
        schema_model=Reading,
    )
    engine = DaskEngine(n_workers=2)
    manager = PipeManager.parallelize_pipe(pipe, workers=4, engine=engine)
    try:
        committed = manager.run(timeout=120)
    finally:
        engine.shutdown()  # closes the LocalCluster the engine started
    for shard in manager.pipe_reports:
        print(f"  {shard}")
    print(manager.report)
    if not committed:
        print(f"nothing committed: {manager.error}", file=sys.stderr)
        return 1
    report = manager.report
    return 0 if (report.success_count, report.error_count) == (3992, 8) else 1


if __name__ == "__main__":
    sys.exit(main())
