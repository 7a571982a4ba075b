from __future__ import annotations

import os
import sys
from pathlib import Path

# Worker processes (forked or on Slurm nodes) import the shared test models from here.
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent / "integration"))


import shutil  # noqa: E402
import subprocess  # noqa: E402

import pytest  # noqa: E402

_REPO = Path(__file__).parents[1]


def _cluster_problem() -> str | None:
    """Why the local Slurm test cluster cannot be used, or None if it can."""
    if shutil.which("sbatch") is None:
        return "Slurm is not installed (run scripts/slurm-cluster up as root on Debian)"
    status = subprocess.run(
        [str(_REPO / "scripts" / "slurm-cluster"), "status"], capture_output=True, text=True
    )
    if status.returncode != 0:
        return f"the local Slurm cluster is not up: {status.stdout.strip().splitlines()[-1:]}"
    return None


@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    problem = _cluster_problem()
    if problem is not None:
        if os.environ.get("CI") and os.geteuid() == 0 and Path("/etc/debian_version").exists():
            pytest.fail(f"CI on a Debian machine as root must have the Slurm cluster: {problem}")
        pytest.skip(problem)
