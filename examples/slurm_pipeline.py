"""A pipeline on Slurm: one job array of six shards, committed only if all succeed.

Run it from a login node (``python examples/slurm_pipeline.py OUTPUT_DIR``) or as a batch job
of its own with ``sbatch sbatch_templates/coordinator.sbatch examples/slurm_pipeline.py DIR``.
Needs a Slurm cluster (``scripts/slurm-cluster up`` starts a local one for testing).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from pydantic import BaseModel, Field

from zoopipe_hpc import CSVInputAdapter, JSONOutputAdapter, ParquetOutputAdapter, Pipe, PipeManager
from zoopipe_hpc.engines.slurm import SlurmEngine


class Measurement(BaseModel):
    station: str
    day: int = Field(ge=1, le=366)
    temperature: float = Field(ge=-90, le=60)


def main() -> int:
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "examples/output").absolute()
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / "measurements.csv"
    with open(source, "w") as f:
        f.write("station,day,temperature\n")
        for i in range(30_000):
            temperature = (i % 70) - 20 if i % 997 else 999  # a few impossible readings
            f.write(f"ST{i % 40:03d},{i % 365 + 1},{temperature}\n")

    engine = SlurmEngine(
        folder=folder / "jobs", time="00:10:00", mem="500M", max_retries=1, poll_interval=0.5
    )
    pipe = Pipe(
        input_adapter=CSVInputAdapter(source),
        output_adapter=ParquetOutputAdapter(folder / "measurements.parquet"),
        error_output_adapter=JSONOutputAdapter(folder / "measurements.errors.jsonl"),
        schema_model=Measurement,
    )
    manager = PipeManager.parallelize_pipe(pipe, workers=6, engine=engine)
    manager.start()
    print(f"submitted; job folder {engine.job_folder}")
    while not manager.report.is_finished:
        r = manager.report
        print(f"  {r.pipes_finished}/{r.pipes_total} shards done, {r.total_processed} rows")
        time.sleep(1)
    ok = manager.run()
    print(manager.report)
    for report in manager.pipe_reports:
        print(f"  {report} on {report.host} ({report.extra.get('slurm_job_id')})")
    if not ok:
        print(f"nothing committed: {manager.error}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
