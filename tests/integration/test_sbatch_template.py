"""The coordinator template runs a pipeline script as a batch job that submits the array."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]
pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]


def test_coordinator_template_runs_the_pipeline_as_a_job(tmp_path: Path) -> None:
    env = dict(os.environ, ZOOPIPE_PYTHON=sys.executable)
    done = subprocess.run(
        [
            "sbatch",
            "--wait",
            f"--chdir={tmp_path}",
            f"--output={tmp_path}/coordinator-%j.out",
            "--time=00:10:00",
            str(REPO / "sbatch_templates" / "coordinator.sbatch"),
            str(REPO / "examples" / "slurm_pipeline.py"),
            str(tmp_path / "out"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    logs = "".join(p.read_text() for p in tmp_path.glob("coordinator-*.out"))
    assert done.returncode == 0, f"{done.stdout}{done.stderr}\n{logs}"
    assert (tmp_path / "out" / "measurements.parquet").exists()
    assert "6/6 shards" in logs or "completed" in logs
