"""A durable job whose concluding process dies in the middle of its commit, then `resume`.

The job's schema module (a test-only ``models.py`` in the test's folder, imported by every
process that builds the job's pipe: the attached `run`, the detached `_commit` Slurm job)
replaces ``zoopipe_hpc.commit.transaction._step`` when ``ZOOPIPE_TEST_DIE_AT`` names a step,
so that process kills itself (SIGKILL) there. Right after the crash every target is old or new
(never partial); `status` changes nothing; after `resume` every target is exactly what a run
that commits writes, the manifest says `committed`, no staging folder is left and no shard ran
again.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from test_cli_jobs import job_dir, make_job, manifest
from test_slurm_job_retries import sacct_rows, tasks_of

MODELS = """
import os
import signal

from pydantic import BaseModel


class Row(BaseModel):
    id: int
    name: str


_DIE_AT = os.environ.get("ZOOPIPE_TEST_DIE_AT")
if _DIE_AT:
    from zoopipe_hpc.commit import transaction

    def _die_at(name):
        if name == _DIE_AT:
            os.kill(os.getpid(), signal.SIGKILL)

    transaction._step = _die_at
"""

#: 60 rows, every 7th with an id that does not validate (the error output gets rows).
NAMES = ["bad-id" if i % 7 == 3 else f"n{i}" for i in range(60)]
TARGETS = ("rows.jsonl", "errors.jsonl")
OLD = {name: f'{{"old": "{name}"}}\n'.encode() for name in TARGETS}

#: The commit record's targets are in key order: errors.jsonl is published first.
AFTER_CRASH = {
    "prepared": {"errors.jsonl": "old", "rows.jsonl": "old"},
    "recorded-prepared": {"errors.jsonl": "old", "rows.jsonl": "old"},
    "recorded": {"errors.jsonl": "old", "rows.jsonl": "old"},
    "published:0": {"errors.jsonl": "new", "rows.jsonl": "old"},
    "cleaning": {"errors.jsonl": "new", "rows.jsonl": "new"},
}


def build(tmp_path: Path, kind: str = "local", extra: str = "") -> Path:
    job = make_job(tmp_path, NAMES, kind=kind, extra=extra)
    (tmp_path / "models.py").write_text(MODELS)
    return job


def cli(
    *args: str | Path, cwd: Path, die_at: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ZOOPIPE_TEST_DIE_AT"}
    if die_at is not None:
        env["ZOOPIPE_TEST_DIE_AT"] = die_at
    return subprocess.run(
        [sys.executable, "-m", "zoopipe_hpc.cli", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def targets(tmp_path: Path) -> dict[str, bytes | None]:
    out = tmp_path / "out"
    return {n: (out / n).read_bytes() if (out / n).exists() else None for n in TARGETS}


def staging_left(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "out" / ".zoopipe-staging").glob("*.run-*"))


def snapshot(tmp_path: Path) -> dict[str, str]:
    """Every file under the test folder, by content (what a read-only command must not touch)."""
    return {
        str(p.relative_to(tmp_path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(tmp_path.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def status_is_read_only(tmp_path: Path, path: Path) -> dict:  # type: ignore[type-arg]
    """`status` and `status --json` exit 0 and change no file; returns the JSON document."""
    before = snapshot(tmp_path)
    table = cli("status", path, cwd=tmp_path)
    document = cli("status", path, "--json", cwd=tmp_path)
    assert table.returncode == 0 and document.returncode == 0, table.stderr + document.stderr
    assert snapshot(tmp_path) == before, "status changed the job directory or the targets"
    parsed: dict = json.loads(document.stdout)  # type: ignore[type-arg]
    assert f"{path.name}: {parsed['state']}" in table.stdout
    return parsed


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, bytes]]:
    """What a job that commits writes to each target, and the folder it ran in."""
    folder = tmp_path_factory.mktemp("reference")
    job = build(folder)
    for name, data in OLD.items():
        (folder / "out" / name).write_bytes(data)
    done = cli("run", job, "--quiet", cwd=folder)
    assert done.returncode == 0, done.stdout + done.stderr
    written = targets(folder)
    assert all(data not in (None, OLD[n]) for n, data in written.items())
    lines = written["errors.jsonl"].splitlines()  # type: ignore[union-attr]
    assert len(lines) == NAMES.count("bad-id")
    return folder, {n: data for n, data in written.items() if data is not None}


def new(reference: tuple[Path, dict[str, bytes]], tmp_path: Path) -> dict[str, bytes]:
    """The reference targets as a job in ``tmp_path`` writes them (error rows name the input)."""
    folder, written = reference
    return {n: d.replace(str(folder).encode(), str(tmp_path).encode()) for n, d in written.items()}


# -- local engine, attached run ------------------------------------------------------------------


@pytest.mark.parametrize("step", list(AFTER_CRASH))
def test_a_local_run_killed_mid_commit_is_finished_by_resume(
    tmp_path: Path, step: str, reference: tuple[Path, dict[str, bytes]]
) -> None:
    expected = new(reference, tmp_path)
    job = build(tmp_path)
    for name, data in OLD.items():
        (tmp_path / "out" / name).write_bytes(data)
    crashed = cli("run", job, "--quiet", cwd=tmp_path, die_at=step)
    assert crashed.returncode == -signal.SIGKILL, crashed.stdout + crashed.stderr
    path = job_dir(tmp_path)

    after_crash = targets(tmp_path)
    for name, found in after_crash.items():
        assert found in (OLD[name], expected[name]), f"{name} is partial or mixed after {step}"
        which = "old" if found == OLD[name] else "new"
        assert which == AFTER_CRASH[step][name], f"{name} is {which} right after {step}"
    assert manifest(path)["state"] == "committing"
    assert staging_left(tmp_path), "the dead run's staging is what resume finishes from"

    document = status_is_read_only(tmp_path, path)
    assert document["state"] == "committing"
    assert [s["state"] for s in document["shards"]] == ["completed"] * 3
    assert targets(tmp_path) == after_crash

    resumed = cli("resume", path, "--quiet", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "reattached: nothing submitted again" in resumed.stdout  # no shard ran again
    assert f"{path.name}: committed" in resumed.stdout
    final = manifest(path)
    assert final["state"] == "committed", final["message"]
    assert [len(s["submissions"]) for s in final["shards"]] == [1, 1, 1]
    assert targets(tmp_path) == expected, f"after {step} and resume every target is new"
    assert not staging_left(tmp_path)

    document = status_is_read_only(tmp_path, path)
    assert document["state"] == "committed"
    again = cli("resume", path, "--quiet", cwd=tmp_path)  # a concluded job: nothing to do
    assert again.returncode == 0, again.stdout + again.stderr
    assert targets(tmp_path) == expected and not staging_left(tmp_path)


# -- Slurm, detached: the commit job dies ----------------------------------------------------------


def sacct_state(job: str) -> str:
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", "--format=State", "-j", job],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return out[0] if out else "UNKNOWN"


def wait_until(what: str, ready, limit: float = 90) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + limit
    while not ready():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(1)


@pytest.mark.slurm
@pytest.mark.on_shared_fs
@pytest.mark.usefixtures("slurm_cluster")
def test_a_detached_commit_job_killed_after_the_decision_is_finished_by_resume(
    tmp_path: Path, reference: tuple[Path, dict[str, bytes]]
) -> None:
    expected = new(reference, tmp_path)
    start = time.strftime("%Y-%m-%dT%H:%M:%S")
    name = f"cr{uuid.uuid4().hex[:8]}"
    extra = (
        f'  partition: debug\n  time: "00:05:00"\n  mem: 300M\n  max_retries: 0\n'
        f'  job_name: {name}-array\n  finish_mem: 500M\n  finish_time: "00:05:00"'
    )
    job = build(tmp_path, kind="slurm", extra=extra)
    job.write_text(job.read_text().replace("name: t\n", f"name: {name}\n", 1))
    for target, data in OLD.items():
        (tmp_path / "out" / target).write_bytes(data)

    # sbatch exports the submitting environment (Slurm's default): the commit job dies too.
    done = cli("run", job, "--detach", cwd=tmp_path, die_at="recorded", timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    path = job_dir(tmp_path)
    commit_job = manifest(path)["finish_jobs"]["commit"]
    wait_until(
        f"commit job {commit_job} to end",
        lambda: sacct_state(commit_job) not in ("PENDING", "RUNNING", "UNKNOWN", "REQUEUED"),
    )
    assert sacct_state(commit_job) == "FAILED", sorted((path / "logs").iterdir())

    assert manifest(path)["state"] == "committing"
    records = list((tmp_path / "out" / ".zoopipe-staging").glob("*.run-*/commit.json"))
    assert [json.loads(r.read_text())["state"] for r in records] == ["decided"]
    assert targets(tmp_path) == OLD, "killed right after the decision: nothing renamed yet"
    assert status_is_read_only(tmp_path, path)["state"] == "committing"
    # slurmdbd may list the array a moment after the commit job (slurmctld sends in batches).
    wait_until(
        "sacct to list the array's 3 tasks",
        lambda: len(tasks_of(sacct_rows(start, name), f"{name}-array")) == 3,
        limit=60,
    )
    tasks = tasks_of(sacct_rows(start, name), f"{name}-array")

    try:
        resumed = cli("resume", path, "--quiet", cwd=tmp_path, timeout=30)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(
            f"`zoopipe-hpc resume` still waiting after 30 s; manifest {manifest(path)['state']}"
        ) from exc
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    final = manifest(path)
    assert final["state"] == "committed", final["message"]
    assert targets(tmp_path) == expected
    assert not staging_left(tmp_path)
    assert status_is_read_only(tmp_path, path)["state"] == "committed"
    time.sleep(2)
    assert tasks_of(sacct_rows(start, name), f"{name}-array") == tasks, "shards resubmitted"
    assert [len(s["submissions"]) for s in final["shards"]] == [1, 1, 1]
