"""Durable jobs whose shards are packed onto few array tasks (``engine.max_tasks``), without a
cluster: the job's own submission writes the job directory and the job scripts, and the test
runs the scripts' task commands as real processes (see ``_local_array``), kills them, and
drives the job as ``zoopipe-hpc resume``, ``retry``, ``cancel`` and the detached recover and
commit jobs do. The same on the real cluster: ``test_slurm_job_retries.py``."""

from __future__ import annotations

import functools
import multiprocessing
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from _local_array import LocalArray
from _support import read_jsonl
from test_cli_jobs import job_dir, make_job, manifest

from zoopipe_hpc.engines.slurm import SlurmEngine
from zoopipe_hpc.engines.slurm import engine as engine_module
from zoopipe_hpc.engines.slurm._claims import claim_owner
from zoopipe_hpc.jobs import _ledger, _reading, follow_up, handle
from zoopipe_hpc.jobs._ownership import RECOVER_TOKEN
from zoopipe_hpc.jobs.config import load_job_file
from zoopipe_hpc.jobs.detached import finish_commit, finish_recover
from zoopipe_hpc.jobs.handle import JobHandle, open_job
from zoopipe_hpc.jobs.manifest import JobDirectory, Manifest
from zoopipe_hpc.jobs.submission import submit
from zoopipe_hpc.progress import ProgressState, read_progress
from zoopipe_hpc.report import PipeReport

#: Rows per shard (about: shards are byte ranges); after the first 20 rows each takes 0.2 s.
ROWS_PER_SHARD = 20


@pytest.fixture
def slurm(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> LocalArray:
    """Every Slurm command of the job's code goes to one local array; records go stale after
    3 s (not 20), so that a killed task is noticed quickly."""
    cli = LocalArray()
    for module in (engine_module, handle, _ledger, follow_up):
        monkeypatch.setattr(module, "SlurmCLI", lambda: cli)
    monkeypatch.setattr(_reading, "SlurmEngine", functools.partial(SlurmEngine, stale_after=3.0))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # the job's schema module
    return cli


def packed_job(tmp_path: Path, shards: int, **engine: int) -> Path:
    names = [f"n{i}" if i < ROWS_PER_SHARD else f"slow{i}" for i in range(shards * ROWS_PER_SHARD)]
    names[5] = "bad-id"  # one invalid row: the error output is committed too
    extra = '  time: "00:05:00"\n' + "".join(f"  {key}: {value}\n" for key, value in engine.items())
    return make_job(tmp_path, names, kind="slurm", workers=shards, extra=extra)


def assert_output_exact(tmp_path: Path, shards: int) -> None:
    ids = [r["id"] for r in read_jsonl(tmp_path / "out" / "rows.jsonl")]
    assert ids == [i for i in range(shards * ROWS_PER_SHARD) if i != 5]
    assert len(read_jsonl(tmp_path / "out" / "errors.jsonl")) == 1


def until(condition: Callable[[], bool], what: str, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def kill_mid_run(
    path: Path, array: str, task: subprocess.Popen[bytes], finished_first: int = 1
) -> int:
    """SIGKILL packed task 0 of ``array`` once it finished ``finished_first`` shards and has
    rows of the next one; returns the shard it was running."""
    attempt = f"{array}-0-r0"

    def states() -> dict[int, tuple[bool, int]]:
        """Task 0's shards: (finished, rows) of each."""
        found = {}
        for record in (path / "progress").glob(f"progress-*.{attempt}.rec"):
            snapshot = read_progress(record, expected_attempt_id=attempt)
            if snapshot is not None:
                index = int(record.name.split(".")[0].removeprefix("progress-"))
                finished = snapshot.state is ProgressState.FINISHED
                found[index] = (finished, snapshot.total_processed)
        return found

    def under_way() -> bool:  # well before the shard's end: the kill comes while it runs
        seen = states().values()
        return sum(done for done, _ in seen) >= finished_first and any(
            not done and 0 < rows <= ROWS_PER_SHARD // 2 for done, rows in seen
        )

    until(under_way, f"task 0 of {array} to finish a shard and start the next")
    os.kill(task.pid, signal.SIGKILL)
    assert task.wait(10) == -signal.SIGKILL
    # Its worker dies with it (and may record why): the shard is not finished.
    [killed] = [index for index, (done, _) in states().items() if not done]
    return killed


def submissions(path: Path) -> list[list[str]]:
    return [s["submissions"] for s in manifest(path)["shards"]]


def _submit_and_exit(job: Path) -> None:
    submit(load_job_file(job))


def test_resume_after_the_submitting_process_died_then_retry_the_unfinished_shards(
    tmp_path: Path, slurm: LocalArray
) -> None:
    job = packed_job(tmp_path, 4, max_tasks=1, workers_per_task=1)
    # The login node's process submits the job, then dies (here: a forked child that exits).
    child = multiprocessing.get_context("fork").Process(target=_submit_and_exit, args=(job,))
    child.start()
    child.join(120)
    assert child.exitcode == 0
    path = job_dir(tmp_path)
    [array] = manifest(path)["arrays"]
    slurm.adopt(array, path / "logs" / f"{array}_submission.sh")
    # One packed array: its task claims the shards, so no shard has a task of its own.
    assert submissions(path) == [[f"{array}_*"]] * 4
    script = slurm.scripts[array].read_text()
    assert "#SBATCH --array=0-0%1" in script and "--shards 0-3 --packed 1" in script
    task = slurm.start_task(array, 0)
    # `status` / `watch` show each shard's own progress, on the node of the task that runs it.
    watcher = open_job(path)

    def shard_1_under_way() -> bool:
        rows = watcher.shard_status()
        return rows[0].state == "completed" and rows[1].rows > 0

    until(shard_1_under_way, "shard 1 to make progress")
    rows = watcher.shard_status()
    assert rows[0].rows > 0 and rows[0].node == "local0"
    assert rows[1].state == "running" and rows[1].log.endswith(f"{array}_0_0_log.err")
    assert [r.state for r in rows[2:]] == ["pending", "pending"]
    killed = kill_mid_run(path, array, task, finished_first=1)
    assert killed == 1
    # `zoopipe-hpc resume`: nothing is submitted again (max_retries 0), the job is concluded.
    resumed = open_job(path)
    assert resumed.resume() == []
    assert not resumed.wait(poll=0.1)
    final = manifest(path)
    assert final["state"] == "failed"
    assert [s["state"] for s in final["shards"]] == ["completed", "failed", "failed", "failed"]
    assert "UNCLAIMED" in final["shards"][2]["message"]  # never claimed: no task ran it
    # `zoopipe-hpc retry`: only the unfinished shards, packed again.
    retrying = open_job(path)
    assert retrying.retry() == [1, 2, 3]
    [retry] = set(slurm.scripts) - {array}
    assert "--shards 1-3 --packed 1" in slurm.scripts[retry].read_text()
    assert slurm.tasks(retry) == 1
    task = slurm.start_task(retry, 0)
    assert retrying.wait(poll=0.1), manifest(path)["message"]
    assert task.wait(30) == 0
    assert manifest(path)["state"] == "committed"
    assert_output_exact(tmp_path, 4)
    assert submissions(path) == [[f"{array}_*"]] + [[f"{array}_*", f"{retry}_*"]] * 3


def next_array(watched: JobHandle, slurm: LocalArray, known: set[str]) -> str:
    """The array the job submits next (an automatic retry), once a look made it."""

    def submitted() -> bool:
        watched.shard_reports()  # a look is what makes the engine retry
        return bool(set(slurm.scripts) - known)

    until(submitted, "a retry to be submitted")
    [new] = set(slurm.scripts) - known
    return new


def test_a_packed_task_killed_mid_run_keeps_its_finished_shards_and_retries_the_rest(
    tmp_path: Path, slurm: LocalArray
) -> None:
    job = packed_job(tmp_path, 6, max_tasks=2, workers_per_task=1, max_retries=1)
    running = submit(load_job_file(job))
    path = running.path
    [array] = manifest(path)["arrays"]
    assert slurm.tasks(array) == 2
    first, second = slurm.start_task(array, 0), slurm.start_task(array, 1)
    killed = kill_mid_run(path, array, first)
    assert second.wait(120) == 0  # the other task takes every shard still unclaimed
    retry = next_array(running, slurm, {array})
    # Only the shard killed under way runs again; the ones task 0 finished are kept.
    assert f"--shards {killed} --packed 1" in slurm.scripts[retry].read_text()
    slurm.start_task(retry, 0)
    assert running.wait(poll=0.1), manifest(path)["message"]
    assert_output_exact(tmp_path, 6)
    done_by_0 = [i for i in range(6) if claim_owner(path, array, i) == f"{array}-0-r0"]
    assert killed in done_by_0 and len(done_by_0) >= 2
    expected = [[f"{array}_*"]] * 6
    expected[killed] = [f"{array}_*", f"{retry}_*"]
    assert submissions(path) == expected


def test_the_detached_recover_job_retries_a_packed_job_and_the_commit_job_commits(
    tmp_path: Path, slurm: LocalArray, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = packed_job(tmp_path, 6, max_tasks=2, workers_per_task=1, max_retries=1)
    path = submit(load_job_file(job), detach=True).path
    started = manifest(path)
    [array] = started["arrays"]
    scripts = {step: slurm.script_text(i) for step, i in started["finish_jobs"].items()}
    assert f"--dependency=afternotok:{array}" in scripts["recover"]
    assert f"--dependency=afterok:{array}" in scripts["commit"]
    first, second = slurm.start_task(array, 0), slurm.start_task(array, 1)
    killed = kill_mid_run(path, array, first)
    assert second.wait(120) == 0
    # A task of the array failed: Slurm starts the recover job (afternotok), never the commit.
    monkeypatch.setenv(RECOVER_TOKEN, started["retry_owner"]["token"])
    assert finish_recover(path, timeout=60) is False  # resubmitted, not concluded
    retried = manifest(path)
    [retry] = sorted(set(retried["arrays"]) - {array})
    assert f"--shards {killed} --packed 1" in slurm.scripts[retry].read_text()
    assert retried["shards"][killed]["submissions"] == [f"{array}_*", f"{retry}_*"]
    commit_job = retried["finish_jobs"]["commit"]
    assert f"--dependency=afterok:{retry}" in slurm.script_text(commit_job)
    assert slurm.start_task(retry, 0).wait(120) == 0
    # Every task of the retry succeeded: Slurm starts the commit job.
    monkeypatch.delenv(RECOVER_TOKEN)
    assert finish_commit(path, timeout=60), manifest(path)["message"]
    assert manifest(path)["state"] == "committed"
    assert_output_exact(tmp_path, 6)


def test_cancel_stops_the_packed_tasks_and_leaves_the_targets_alone(
    tmp_path: Path, slurm: LocalArray
) -> None:
    job = packed_job(tmp_path, 4, max_tasks=2, workers_per_task=2)
    (tmp_path / "out" / "rows.jsonl").write_text('{"previous": true}\n')
    running = submit(load_job_file(job))
    path = running.path
    [array] = manifest(path)["arrays"]
    tasks = [slurm.start_task(array, t) for t in range(2)]
    until(lambda: any(r.rows for r in open_job(path).shard_status()[1:]), "slow shards to start")
    running.cancel()
    assert [t.wait(30) for t in tasks] == [1, 1]  # scancel: SIGTERM to both packed tasks
    assert manifest(path)["state"] == "cancelled"
    assert (tmp_path / "out" / "rows.jsonl").read_text() == '{"previous": true}\n'
    assert not list((tmp_path / "out" / ".zoopipe-staging").glob("rows.jsonl.run-*"))


def test_the_process_that_drives_a_job_does_not_read_its_manifest_at_every_poll(
    tmp_path: Path, slurm: LocalArray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine that drives the job follows every shard: a poll of ``wait`` asks it alone
    (O(shards not settled)), not the manifest (O(shards), megabytes at 50,000) as well."""
    job = packed_job(tmp_path, 4, max_tasks=2, workers_per_task=1)
    running = submit(load_job_file(job))
    [array] = manifest(running.path)["arrays"]
    reads: list[Path] = []
    read = JobDirectory.read

    def counted(directory: JobDirectory) -> Manifest:
        reads.append(directory.path)
        return read(directory)

    monkeypatch.setattr(JobDirectory, "read", counted)
    tasks = [slurm.start_task(array, task) for task in range(2)]
    polls: list[PipeReport] = []
    assert running.wait(on_report=lambda report, shards: polls.append(report), poll=0.05)
    assert [task.wait(30) for task in tasks] == [0, 0]
    assert_output_exact(tmp_path, 4)
    assert len(polls) > 20, polls  # the slow rows take seconds
    assert len(reads) <= 8, f"{len(reads)} manifest reads in {len(polls)} polls"
