"""A durable job from a YAML file, driven through the zoopipe-hpc command line.

Run it with ``python examples/durable_job.py [OUTPUT_DIR]``: it copies
``examples/durable_job/`` there, writes the input, runs ``zoopipe-hpc run --engine local``
and prints ``zoopipe-hpc status`` and ``zoopipe-hpc list``. On a cluster the same job runs with
``zoopipe-hpc run job.yaml`` (its site defaults say Slurm), or ``--detach``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path


def zoopipe_hpc(*args: str, cwd: Path) -> int:
    command = [sys.executable, "-m", "zoopipe_hpc.cli", *args]
    print("$ zoopipe-hpc " + " ".join(args), flush=True)
    return subprocess.run(command, cwd=cwd).returncode


def main() -> int:
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "examples/output").absolute()
    job = folder / "durable_job"
    shutil.copytree(Path(__file__).with_name("durable_job"), job, dirs_exist_ok=True)
    (job / "data").mkdir(exist_ok=True)
    (job / "out").mkdir(exist_ok=True)
    with open(job / "data" / "readings.csv", "w") as f:
        f.write("sensor,value\n")
        for i in range(20_000):
            value = "broken" if i % 2500 == 3 else f"{(i % 170) - 40}.5"
            f.write(f"S{i % 200:03d},{value}\n")
    code = zoopipe_hpc("run", "job.yaml", "--engine", "local", "--quiet", cwd=job)
    if code != 0:
        return code
    jobs = sorted((job / "zoopipe-jobs").iterdir())
    zoopipe_hpc("status", str(jobs[-1]), cwd=job)
    zoopipe_hpc("list", cwd=job)
    return 0 if (job / "out" / "readings.parquet").exists() else 1


if __name__ == "__main__":
    sys.exit(main())
