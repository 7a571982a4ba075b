"""Many small shards on few Slurm tasks: 120 shards packed onto 4 array tasks of 2 workers.

Each task claims the next shard nobody took yet and runs two at a time, so a fast node takes
more shards than a slow one; progress, retries and the commit stay per shard. Run it from a
login node: ``python examples/slurm_packed.py OUTPUT_DIR`` (``scripts/slurm-cluster up`` starts
a local cluster for testing).
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

from pydantic import BaseModel

from zoopipe_hpc import CSVInputAdapter, JSONOutputAdapter, Pipe, PipeManager
from zoopipe_hpc.engines.slurm import SlurmEngine

SHARDS = 120


class Reading(BaseModel):
    sensor: int
    value: float


def main() -> int:
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "examples/output").absolute()
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / "readings.csv"
    source.write_text("sensor,value\n" + "".join(f"{i},{i / 8}\n" for i in range(SHARDS * 25)))

    engine = SlurmEngine(
        folder=folder / "jobs",
        max_tasks=4,
        workers_per_task=2,
        cpus_per_task=2,
        time="00:10:00",
        mem="600M",
        max_retries=1,
        poll_interval=0.5,
    )
    print(engine.job_script(SHARDS))  # one array of 4 tasks, each with --packed 2
    pipe = Pipe(CSVInputAdapter(source), JSONOutputAdapter(folder / "readings.jsonl"), Reading)
    manager = PipeManager.parallelize_pipe(pipe, workers=SHARDS, engine=engine)
    ok = manager.run(timeout=600)
    print(manager.report)
    tasks = collections.Counter(r.extra.get("slurm_job_id") for r in manager.pipe_reports)
    for task, shards in sorted(tasks.items()):
        print(f"  task {task} ran {shards} shards")
    if not ok:
        print(f"nothing committed: {manager.error}", file=sys.stderr)
    return 0 if ok and len(tasks) <= 4 else 1


if __name__ == "__main__":
    sys.exit(main())
