"""The zoopipe-hpc command line driven as a user would: local runs here, Slurm flows below."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from _support import read_jsonl, write_csv

from zoopipe_hpc.progress._direct_io import read_fresh

MODELS = """
import time
from pathlib import Path
from pydantic import BaseModel, field_validator

BROKEN = Path(__file__).with_name("broken")
#: A row named "gated" waits (at most 2 minutes) until the test creates this file.
GATE = Path(__file__).with_name("gate")


class Row(BaseModel):
    id: int
    name: str

    @field_validator("name")
    @classmethod
    def check(cls, value):
        if value.startswith("slow"):
            time.sleep(0.2)
        if value == "gated":
            deadline = time.monotonic() + 120
            while not GATE.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        if value == "needs-table" and BROKEN.exists():
            raise RuntimeError("the lookup table is missing (remove " + str(BROKEN) + ")")
        return value
"""

JOB = """
name: {name}
input:  {{format: csv, path: data/in.csv}}
output: {{format: jsonl, path: out/rows.jsonl}}
errors: {{format: jsonl, path: out/errors.jsonl}}
schema: "models:Row"
workers: {workers}
engine:
  kind: {kind}
{extra}
"""


def make_job(
    tmp_path: Path, names: list[str], *, kind: str = "local", workers: int = 3, extra: str = ""
) -> Path:
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "out").mkdir(exist_ok=True)
    (tmp_path / "models.py").write_text(MODELS)
    rows = [{"id": i if n != "bad-id" else "x", "name": n} for i, n in enumerate(names)]
    write_csv(tmp_path / "data" / "in.csv", rows)
    job = tmp_path / "job.yaml"
    job.write_text(JOB.format(name="t", kind=kind, workers=workers, extra=extra))
    return job


def cli(*args: str | Path, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zoopipe_hpc.cli", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def job_dir(tmp_path: Path) -> Path:
    [path] = sorted((tmp_path / "zoopipe-jobs").iterdir())
    return path


def manifest(path: Path) -> dict:  # type: ignore[type-arg]
    """The job's manifest, read as the product reads it (fresh, ``ESTALE`` retried: on the
    shared filesystem a commit job on a node may have just replaced it)."""
    return json.loads(read_fresh(path / "manifest.json"))["manifest"]


def wait_for_state(path: Path, states: set[str], limit: float = 240) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        current = manifest(path)
        if current["state"] in states:
            return current
        time.sleep(0.5)
    raise AssertionError(f"job stayed {manifest(path)['state']} (wanted {states})")


# -- without Slurm -------------------------------------------------------------------------------


def test_local_run_status_list_and_help(tmp_path: Path) -> None:
    job = make_job(tmp_path, [f"n{i}" for i in range(300)] + ["bad-id"])
    done = cli("run", job, "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "committed" in done.stdout
    assert len(read_jsonl(tmp_path / "out" / "rows.jsonl")) == 300
    assert len(read_jsonl(tmp_path / "out" / "errors.jsonl")) == 1
    path = job_dir(tmp_path)
    status = cli("status", path, "--json", cwd=tmp_path)
    document = json.loads(status.stdout)
    assert document["state"] == "committed"
    assert sum(s["rows"] for s in document["shards"]) == 301
    assert sum(s["errors"] for s in document["shards"]) == 1
    table = cli("status", path, cwd=tmp_path).stdout
    assert "rows/s" in table and "completed" in table
    listing = cli("list", cwd=tmp_path)
    assert path.name in listing.stdout and "committed" in listing.stdout
    for command in ("run", "status", "watch", "cancel", "resume", "retry", "list"):
        helped = cli(command, "--help", cwd=tmp_path)
        assert helped.returncode == 0 and "exit codes" in helped.stdout


def test_bad_job_file_is_exit_2_naming_the_key(tmp_path: Path) -> None:
    job = make_job(tmp_path, ["a"])
    job.write_text(job.read_text().replace("workers: 3", "workers: many"))
    done = cli("run", job, cwd=tmp_path)
    assert done.returncode == 2
    assert "workers" in done.stderr and "job.yaml" in done.stderr


def test_a_tampered_manifest_is_refused(tmp_path: Path) -> None:
    job = make_job(tmp_path, ["a", "b", "c"])
    assert cli("run", job, "--quiet", cwd=tmp_path).returncode == 0
    path = job_dir(tmp_path)
    text = (path / "manifest.json").read_text()
    (path / "manifest.json").write_text(text.replace('"committed"', '"running"', 1))
    done = cli("status", path, cwd=tmp_path)
    assert done.returncode == 3
    assert "checksum mismatch" in done.stderr


def test_local_retry_after_a_fixable_failure(tmp_path: Path) -> None:
    names = [f"n{i}" for i in range(30)]
    names[25] = "needs-table"
    job = make_job(tmp_path, names)
    (tmp_path / "broken").write_text("")
    first = cli("run", job, "--quiet", cwd=tmp_path)
    assert first.returncode == 1
    assert "lookup table is missing" in first.stdout and "zoopipe-hpc retry" in first.stdout
    assert not (tmp_path / "out" / "rows.jsonl").exists()
    path = job_dir(tmp_path)
    assert manifest(path)["state"] == "failed"
    (tmp_path / "broken").unlink()
    again = cli("retry", path, "--quiet", cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "resubmitted shards [2]" in again.stdout
    assert [r["id"] for r in read_jsonl(tmp_path / "out" / "rows.jsonl")] == list(range(30))
    attempts = [len(s["submissions"]) for s in manifest(path)["shards"]]
    assert attempts == [1, 1, 2]


def start_run(
    tmp_path: Path, job: Path, ready: Callable[[Path], bool] | None = None
) -> tuple[subprocess.Popen[str], Path]:
    """``zoopipe-hpc run`` in the background; returns once ``ready(job_dir)`` (default: the
    manifest says running)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "zoopipe_hpc.cli", "run", str(job), "--quiet"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        jobs = tmp_path / "zoopipe-jobs"
        if jobs.exists() and any(jobs.iterdir()):
            path = job_dir(tmp_path)
            if (path / "manifest.json").exists():
                if ready(path) if ready else manifest(path)["state"] == "running":
                    return process, path
        if process.poll() is not None:
            raise AssertionError(f"run ended early: {process.communicate()}")
        time.sleep(0.2)
    process.kill()
    raise AssertionError("the run never got ready")


def test_a_local_run_is_watched_from_another_shell_and_never_run_twice(tmp_path: Path) -> None:
    # The first shard waits for the gate: the run cannot end before the test has looked.
    job = make_job(tmp_path, ["gated"] + [f"slow{i}" for i in range(1, 45)])
    runner, path = start_run(tmp_path, job)
    try:
        for command in ("resume", "cancel"):
            refused = cli(command, path, cwd=tmp_path)
            assert refused.returncode == 4, refused.stdout + refused.stderr
            assert f"being run by pid {runner.pid} on host" in refused.stderr
            assert f"zoopipe-hpc watch {path}" in refused.stderr
        status = json.loads(cli("status", path, "--json", cwd=tmp_path).stdout)
        assert status["state"] == "running"
        (tmp_path / "gate").touch()
        watched = cli("watch", path, "--quiet", cwd=tmp_path)
        assert watched.returncode == 0, watched.stdout + watched.stderr
        assert f"{path.name}: committed" in watched.stdout
        assert runner.wait(120) == 0
    finally:
        runner.kill()
        runner.wait()
    final = manifest(path)
    assert final["state"] == "committed"
    assert all(len(s["submissions"]) == 1 for s in final["shards"])
    assert [r["id"] for r in read_jsonl(tmp_path / "out" / "rows.jsonl")] == list(range(45))
    assert not (path / "local-runner.json").exists()


def test_a_killed_local_run_is_finished_by_resume_once_its_workers_are_gone(
    tmp_path: Path,
) -> None:
    job = make_job(tmp_path, [f"slow{i}" for i in range(60)])  # ~4 s a shard
    runner, path = start_run(tmp_path, job)
    os.kill(runner.pid, signal.SIGKILL)
    runner.wait()
    # Its forked workers still run their shards and still hold the job: no second run yet.
    early = cli("resume", path, "--quiet", cwd=tmp_path)
    assert early.returncode == 4, early.stdout + early.stderr
    assert f"being run by pid {runner.pid}" in early.stderr
    # `watch` follows them, then says that nobody will conclude the job.
    watched = cli("watch", path, "--quiet", cwd=tmp_path)
    assert watched.returncode == 4, watched.stdout + watched.stderr
    assert "no process is running this local job any more" in watched.stderr
    assert f"zoopipe-hpc resume {path}" in watched.stderr
    resumed = cli("resume", path, "--quiet", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "running shards [0, 1, 2] again" in resumed.stdout
    assert manifest(path)["state"] == "committed"
    assert [r["id"] for r in read_jsonl(tmp_path / "out" / "rows.jsonl")] == list(range(60))


def test_a_second_handle_in_the_running_process_is_told_to_use_the_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From Python (a notebook): the handle submit() returned concludes the job; another one
    opened on the same directory in the same process must not wait forever for it."""
    from zoopipe_hpc.jobs import JobError, load_job_file, open_job, submit

    job = make_job(tmp_path, [f"n{i}" for i in range(30)])
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # the job's schema module
    handle = submit(load_job_file(job))
    other = open_job(handle.path)
    for action in (other.wait, other.resume, other.cancel):
        with pytest.raises(JobError, match="this process already runs the job"):
            action()
    assert handle.wait()
    assert other.wait()  # concluded: any handle may say so
    assert [r["id"] for r in read_jsonl(tmp_path / "out" / "rows.jsonl")] == list(range(30))


# -- on the Slurm test cluster --------------------------------------------------------------------

SLURM = '  time: "00:05:00"\n  mem: 300M\n  max_retries: 0'


@pytest.mark.slurm
@pytest.mark.on_shared_fs
@pytest.mark.usefixtures("slurm_cluster")
def test_detached_run_is_committed_by_slurm_alone(tmp_path: Path) -> None:
    job = make_job(tmp_path, [f"slow{i}" for i in range(30)], kind="slurm", extra=SLURM)
    done = cli("run", job, "--detach", cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    path = job_dir(tmp_path)
    current = manifest(path)
    assert set(current["finish_jobs"]) == {"commit", "recover"}
    # Nothing of ours is left running: the CLI returned, and this test only reads files.
    final = wait_for_state(path, {"committed", "rolled_back", "failed"})
    assert final["state"] == "committed"
    assert [r["id"] for r in read_jsonl(tmp_path / "out" / "rows.jsonl")] == list(range(30))
    assert list((path / "logs").glob("commit-*.out"))


@pytest.mark.slurm
@pytest.mark.on_shared_fs
@pytest.mark.usefixtures("slurm_cluster")
@pytest.mark.parametrize(
    "packing",
    ["", "\n  max_tasks: 2\n  workers_per_task: 2"],
    ids=["one-task-per-shard", "packed"],
)
def test_killed_run_is_resumed_with_the_same_array(tmp_path: Path, packing: str) -> None:
    names = [f"slow{i}" for i in range(45)]
    job = make_job(tmp_path, names, kind="slurm", extra=SLURM + packing)

    def submitted(path: Path) -> bool:
        return bool(manifest(path)["arrays"]) and len(list((path / "progress").glob("*.rec"))) == 3

    process, path = start_run(tmp_path, job, submitted)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    arrays = manifest(path)["arrays"]
    assert len(arrays) == 1
    resumed = cli("resume", path, "--quiet", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "nothing submitted again" in resumed.stdout
    final = manifest(path)
    assert final["state"] == "committed" and final["arrays"] == arrays
    assert all(len(s["submissions"]) == 1 for s in final["shards"])
    if packing:  # two tasks shared the three shards, each shard with its own record
        assert [s["submissions"] for s in final["shards"]] == [[f"{arrays[0]}_*"]] * 3
        ran_by = {s["attempt_id"] for s in final["shards"]}
        assert ran_by <= {f"{arrays[0]}-0-r0", f"{arrays[0]}-1-r0"}, ran_by
    assert [r["id"] for r in read_jsonl(tmp_path / "out" / "rows.jsonl")] == list(range(45))


@pytest.mark.slurm
@pytest.mark.on_shared_fs
@pytest.mark.usefixtures("slurm_cluster")
def test_slurm_retry_after_a_fixable_failure(tmp_path: Path) -> None:
    names = [f"n{i}" for i in range(30)]
    names[3] = "needs-table"
    job = make_job(tmp_path, names, kind="slurm", extra=SLURM)
    (tmp_path / "broken").write_text("")
    first = cli("run", job, "--quiet", cwd=tmp_path)
    assert first.returncode == 1, first.stdout + first.stderr
    assert "lookup table is missing" in first.stdout
    path = job_dir(tmp_path)
    (tmp_path / "broken").unlink()
    again = cli("retry", path, "--quiet", cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    final = manifest(path)
    assert len(final["arrays"]) == 2
    assert [len(s["submissions"]) for s in final["shards"]] == [2, 1, 1]
    assert [r["id"] for r in read_jsonl(tmp_path / "out" / "rows.jsonl")] == list(range(30))


@pytest.mark.slurm
@pytest.mark.on_shared_fs
@pytest.mark.usefixtures("slurm_cluster")
def test_cancel_rolls_back(tmp_path: Path) -> None:
    job = make_job(tmp_path, [f"slow{i}" for i in range(60)], kind="slurm", extra=SLURM)
    (tmp_path / "out" / "rows.jsonl").write_text('{"previous": true}\n')
    assert cli("run", job, "--detach", cwd=tmp_path, timeout=60).returncode == 0
    path = job_dir(tmp_path)
    wait_for_state(path, {"running"})
    done = cli("cancel", path, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert manifest(path)["state"] == "cancelled"
    assert (tmp_path / "out" / "rows.jsonl").read_text() == '{"previous": true}\n'
    assert not list((tmp_path / "out" / ".zoopipe-staging").glob("rows.jsonl.run-*"))
    time.sleep(2)
    queue = subprocess.run(["squeue", "-h", "-o", "%j"], capture_output=True, text=True).stdout
    assert "t-commit" not in queue and "t-recover" not in queue
    again = cli("cancel", path, cwd=tmp_path)
    assert again.returncode == 4
