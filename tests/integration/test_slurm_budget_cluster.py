"""On the real cluster: the request budget of a run, and sbatch from inside a Slurm job."""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _cluster_fs import cluster_up_command
from _support import Trigger, User, read_jsonl, users, write_csv

from zoopipe_hpc import CSVInputAdapter, JSONOutputAdapter, Pipe, PipeManager
from zoopipe_hpc.engines.slurm import SlurmEngine
from zoopipe_hpc.engines.slurm._budget import BURST

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]

STATE_QUERIES = ("sacct", "squeue", "scontrol", "pyslurm")


#: The controller's RPCs that ask about jobs (squeue, scontrol show job, pyslurm), and
#: slurmdbd's (sacct). Counted by the daemons themselves, not by the engine.
CONTROLLER_QUERIES = ("REQUEST_JOB_INFO", "REQUEST_JOB_INFO_SINGLE", "REQUEST_JOB_STATE")
DBD_QUERIES = ("DBD_GET_JOBS_COND",)
_RPC = re.compile(r"^\s+(?P<name>[A-Z_]+)\s+\(\s*\d+\)\s+count:(?P<count>\d+)", re.M)


def rpc_counts(command: list[str]) -> dict[str, int]:
    """``sdiag`` or ``sacctmgr show stats``: RPC counts by message type."""
    text = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    by_type = text.split("by message type", 1)[1].split("by user", 1)[0]
    return {m["name"]: int(m["count"]) for m in _RPC.finditer(by_type)}


def test_240_one_row_shards_as_the_controller_and_slurmdbd_count_them(tmp_path: Path) -> None:
    """The daemons' own statistics, reset before the run: the state queries they served stay
    within the budget (a burst, then 4 a minute), whatever the engine believes it did."""
    rows = users(240)
    source = write_csv(tmp_path / "in.csv", rows)
    engine = SlurmEngine(folder=tmp_path / "jobs", time="00:05:00", mem="300M", poll_interval=0.5)
    pipe = Pipe(CSVInputAdapter(source), JSONOutputAdapter(tmp_path / "out.jsonl"), User)
    manager = PipeManager.parallelize_pipe(pipe, workers=240, engine=engine)
    subprocess.run(["sdiag", "--reset"], check=True, capture_output=True)
    subprocess.run(["sacctmgr", "-i", "clear", "stats"], check=True, capture_output=True)
    started = time.monotonic()
    assert manager.run(timeout=900), manager.error
    minutes = (time.monotonic() - started) / 60
    controller = rpc_counts(["sdiag"])
    dbd = rpc_counts(["sacctmgr", "show", "stats"])
    served = sum(controller.get(k, 0) for k in CONTROLLER_QUERIES) + sum(
        dbd.get(k, 0) for k in DBD_QUERIES
    )
    calls = engine.slurm_calls()
    print(
        f"240 shards in {minutes:.2f} min: engine calls {calls}; daemons served {served} "
        f"state queries (controller {controller}, slurmdbd {dbd})"
    )
    assert calls["sbatch"] == 1, calls
    assert controller.get("REQUEST_SUBMIT_BATCH_JOB") == 1, controller
    # The source probe (one sacct) comes on top of the bucket.
    assert served <= 1 + BURST + 4 * math.ceil(minutes), (minutes, served, controller, dbd)
    assert [r["id"] for r in read_jsonl(tmp_path / "out.jsonl")] == [r["id"] for r in rows]


INNER = """#!/bin/bash
#SBATCH --array=0-1
#SBATCH --time=00:02:00
#SBATCH --output={folder}/inner_%A_%a.out
srun hostname
"""

SUBMIT = (
    "import sys; from pathlib import Path; "
    "from zoopipe_hpc.engines.slurm._cli import SlurmCLI; "
    "from zoopipe_hpc.engines.slurm._submitter import sbatch_script; "
    "print(sbatch_script(SlurmCLI(), Path(sys.argv[1])))"
)

OUTER = """#!/bin/bash
#SBATCH --mem=200M
#SBATCH --time=00:03:00
#SBATCH --output={folder}/outer.out
{python} -c '{code}' {folder}/inner.sh
"""


def _wait_for_states(job: str, count: int, limit: float) -> list[str]:
    deadline = time.monotonic() + limit
    while True:
        out = subprocess.run(
            ["sacct", "-X", "-n", "-P", "-j", job, "--format=JobID,State"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        states = [line.split("|")[1] for line in out.splitlines() if line.strip()]
        settled = [s for s in states if s not in ("PENDING", "RUNNING", "COMPLETING")]
        if len(settled) >= count or time.monotonic() > deadline:
            return states
        time.sleep(1)


def test_an_array_submitted_from_inside_a_job_runs(tmp_path: Path) -> None:
    """The outer job has --mem (SLURM_MEM_PER_NODE); the cluster sets DefMemPerCPU: an inner
    task inheriting both dies in srun, unless the submission scrubbed the job's variables."""
    folder = tmp_path / "nested"
    folder.mkdir()
    (folder / "inner.sh").write_text(INNER.format(folder=folder))
    (folder / "outer.sh").write_text(
        OUTER.format(folder=folder, python=sys.executable, code=SUBMIT)
    )
    outer = subprocess.run(
        ["sbatch", "--parsable", str(folder / "outer.sh")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert _wait_for_states(outer, 1, 120) == ["COMPLETED"]
    inner = (folder / "outer.out").read_text().strip().splitlines()[-1]
    assert inner.isdigit(), (folder / "outer.out").read_text()
    assert _wait_for_states(inner, 2, 120) == ["COMPLETED", "COMPLETED"]
    for task in (0, 1):
        text = (folder / f"inner_{inner}_{task}.out").read_text()
        assert "mutually exclusive" not in text and text.strip(), text


def test_without_accounting_the_queue_and_the_records_suffice(tmp_path: Path) -> None:
    """state_source="squeue" (a site without accounting): squeue only says what is still
    queued; finished tasks vanish from it, and their records and result files decide: the run
    commits exactly, and no sacct is called."""
    rows = users(30)
    source = write_csv(tmp_path / "in.csv", rows)
    engine = SlurmEngine(
        folder=tmp_path / "jobs",
        time="00:05:00",
        mem="300M",
        poll_interval=0.3,
        stale_after=6.0,
        state_source="squeue",
    )
    pipe = Pipe(CSVInputAdapter(source), JSONOutputAdapter(tmp_path / "out.jsonl"), User)
    manager = PipeManager.parallelize_pipe(pipe, workers=6, engine=engine)
    assert manager.run(timeout=300), manager.error
    calls = engine.slurm_calls()
    assert calls.get("sacct", 0) == 0 and calls["squeue"] >= 1, calls
    assert [r["id"] for r in read_jsonl(tmp_path / "out.jsonl")] == [r["id"] for r in rows]


REPO = Path(__file__).resolve().parents[2]
DBD_PID = Path("/var/lib/zoopipe-slurm/run/slurmdbd.pid")


def test_slurmdbd_down_for_40_s_blocks_no_poll_and_the_run_commits(tmp_path: Path) -> None:
    """sacct fails while slurmdbd is down: each failed query is one attempt, its backoff
    spread over later polls, so reading the progress records never waits for it."""
    rows = [{"id": i, "name": "sleep0.3"} for i in range(150)]
    source = write_csv(tmp_path / "in.csv", rows)
    engine = SlurmEngine(
        folder=tmp_path / "jobs", time="00:05:00", mem="300M", poll_interval=1.0, stale_after=8.0
    )
    pipe = Pipe(CSVInputAdapter(source), JSONOutputAdapter(tmp_path / "out.jsonl"), Trigger)
    manager = PipeManager.parallelize_pipe(pipe, workers=3, engine=engine)
    manager.start()
    deadline = time.monotonic() + 120
    while manager.report.total_processed == 0:
        assert time.monotonic() < deadline, manager.pipe_reports
        time.sleep(0.5)
    if not DBD_PID.exists():
        pytest.fail(f"{DBD_PID} is missing: the test cluster's slurmdbd is not ours to stop")
    pid = int(DBD_PID.read_text().split()[0])
    os.kill(pid, signal.SIGTERM)
    down_at = time.monotonic()
    longest, seen = 0.0, []
    try:
        while time.monotonic() - down_at < 40:
            before = time.monotonic()
            seen.append(manager.report.total_processed)
            longest = max(longest, time.monotonic() - before)
            time.sleep(engine.poll_interval)
    finally:
        subprocess.run(cluster_up_command(), check=True)  # as it ran: local or shared fs
    assert longest < engine.poll_interval, f"a poll took {longest:.2f} s with slurmdbd down"
    assert seen[-1] > seen[0], f"the progress did not move while slurmdbd was down: {seen}"
    assert manager.run(timeout=300), manager.error
    assert [r["id"] for r in read_jsonl(tmp_path / "out.jsonl")] == list(range(150))
