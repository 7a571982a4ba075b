"""Smoke test of the local Slurm test cluster started by ``scripts/slurm-cluster up``.

Skips (with the reason) when Slurm is not installed or the cluster is not up;
start it with ``sudo scripts/slurm-cluster up`` (root, Debian 12/13).
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[2]
CLUSTER_SCRIPT = REPO / "scripts" / "slurm-cluster"
NODES = ("n1", "n2", "n3")


def _run(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def slurm_cluster() -> None:
    if shutil.which("sinfo") is None:
        pytest.skip(
            "Slurm is not installed (sinfo not on PATH); run: sudo scripts/slurm-cluster up"
        )
    status = _run(["bash", str(CLUSTER_SCRIPT), "status"])
    if status.returncode != 0:
        tail = " | ".join((status.stdout + status.stderr).strip().splitlines()[-3:])
        pytest.skip(
            f"local Slurm cluster is not up (scripts/slurm-cluster status exit "
            f"{status.returncode}: {tail}); run: sudo scripts/slurm-cluster up"
        )


def _node_states() -> dict[str, str]:
    out = _run(["sinfo", "-h", "-N", "-o", "%N %T"], timeout=20)
    assert out.returncode == 0, out.stderr
    states: dict[str, str] = {}
    for line in out.stdout.splitlines():
        name, _, state = line.partition(" ")
        states[name] = state.strip()
    return states


def test_sinfo_shows_three_idle_nodes(slurm_cluster: None) -> None:
    # Jobs of an earlier test may still be finishing: poll, bounded.
    deadline = time.monotonic() + 120
    states = _node_states()
    while time.monotonic() < deadline:
        if all(states.get(n) == "idle" for n in NODES):
            break
        time.sleep(1)
        states = _node_states()
    assert {n: states.get(n) for n in NODES} == {n: "idle" for n in NODES}, states


def test_config_supports_fault_injection(slurm_cluster: None) -> None:
    out = _run(["scontrol", "show", "config"], timeout=20)
    assert out.returncode == 0, out.stderr
    config: dict[str, str] = {}
    for line in out.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            config[key.strip()] = value.strip()
    assert config["MaxArraySize"] == "1001"
    assert config["JobRequeue"] == "1"
    assert config["OverTimeLimit"] == "0 min"
    assert config["KillWait"] == "5 sec"
    assert "OverMemoryKill" in config["JobAcctGatherParams"]


def test_array_job_completes_and_is_accounted(slurm_cluster: None, tmp_path: Path) -> None:
    name = f"zoopipe-smoke-{uuid.uuid4().hex[:8]}"
    submit = _run(
        [
            "sbatch",
            "--parsable",
            "--wait",
            "--array=0-2",
            f"--job-name={name}",
            "--time=0:02:00",
            "--mem=100M",
            f"--output={tmp_path}/%A_%a.out",
            "--wrap",
            'echo "task=$SLURM_ARRAY_TASK_ID node=$SLURMD_NODENAME"',
        ],
        timeout=300,
    )
    assert submit.returncode == 0, submit.stderr
    job_id = submit.stdout.strip().split(";")[0]
    assert job_id.isdigit(), submit.stdout

    for task in range(3):
        out = (tmp_path / f"{job_id}_{task}.out").read_text()
        assert f"task={task} node=n" in out

    # slurmctld hands job records to slurmdbd asynchronously: poll sacct.
    deadline = time.monotonic() + 60
    while True:
        acct = _run(
            ["sacct", "-j", job_id, "-X", "-n", "-P", "--format=JobID,State,NodeList"],
            timeout=30,
        )
        assert acct.returncode == 0, acct.stderr
        rows = [line.split("|") for line in acct.stdout.splitlines() if line.strip()]
        states = {row[0]: row[1] for row in rows}
        expected = {f"{job_id}_{task}": "COMPLETED" for task in range(3)}
        if states == expected or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert states == expected, acct.stdout
    assert all(row[2] in NODES for row in rows), rows
