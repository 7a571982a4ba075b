"""On the real cluster: the request budget of a run, and sbatch from inside a Slurm job."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _support import User, read_jsonl, users, write_csv

from zoopipe_hpc import CSVInputAdapter, JSONOutputAdapter, Pipe, PipeManager
from zoopipe_hpc.engines.slurm import SlurmEngine
from zoopipe_hpc.engines.slurm._budget import BURST

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]

STATE_QUERIES = ("sacct", "squeue", "scontrol", "pyslurm")


def test_sixty_one_row_shards_stay_within_the_request_budget(tmp_path: Path) -> None:
    source = write_csv(tmp_path / "in.csv", users(60))
    engine = SlurmEngine(
        folder=tmp_path / "jobs", time="00:05:00", mem="300M", poll_interval=0.3, stale_after=6.0
    )
    pipe = Pipe(CSVInputAdapter(source), JSONOutputAdapter(tmp_path / "out.jsonl"), User)
    manager = PipeManager.parallelize_pipe(pipe, workers=60, engine=engine)
    started = time.monotonic()
    assert manager.run(timeout=600), manager.error
    minutes = (time.monotonic() - started) / 60
    calls = engine.slurm_calls()
    queries = sum(calls.get(kind, 0) for kind in STATE_QUERIES)
    print(f"{minutes:.2f} min, calls {calls}, {queries / max(minutes, 1 / 60):.1f} queries/min")
    assert calls["sbatch"] == 1, calls
    # The source probe (one sacct) comes on top of the bucket.
    assert queries <= 1 + BURST + 4 * math.ceil(minutes), (minutes, calls)
    assert len(read_jsonl(tmp_path / "out.jsonl")) == manager.report.success_count == 60


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
