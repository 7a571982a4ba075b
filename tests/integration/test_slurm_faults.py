"""Faults injected into real Slurm runs, each with the outcome listed in docs/faults.md."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from _support import Trigger, read_jsonl, write_csv
from test_slurm_engine import slurm_engine

from zoopipe_hpc import CSVInputAdapter, JSONOutputAdapter, Pipe, PipeManager, PipeStatus
from zoopipe_hpc.report import PipeReport

pytestmark = [pytest.mark.slurm, pytest.mark.on_shared_fs, pytest.mark.usefixtures("slurm_cluster")]

ROWS = 60


def slow_pipe(tmp_path: Path, delay: float = 0.1, names: list[str] | None = None) -> Pipe:
    rows = [{"id": i, "name": f"sleep{delay}"} for i in range(ROWS)]
    for i, name in enumerate(names or []):
        rows[i]["name"] = name
    source = write_csv(tmp_path / "in.csv", rows)
    return Pipe(CSVInputAdapter(source), JSONOutputAdapter(tmp_path / "out.jsonl"), Trigger)


def wait_for(manager: PipeManager, check: Callable[[list[PipeReport]], bool], limit: float = 90):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        reports = manager.pipe_reports
        if check(reports):
            return reports
        time.sleep(0.2)
    raise AssertionError(f"condition not reached in {limit} s: {manager.pipe_reports}")


def running_with_rows(reports: list[PipeReport]) -> bool:
    return all(r.status is PipeStatus.RUNNING and r.total_processed > 0 for r in reports)


def assert_exact_output(tmp_path: Path) -> None:
    assert [r["id"] for r in read_jsonl(tmp_path / "out.jsonl")] == list(range(ROWS))


def test_task_killed_with_sigkill_is_retried_and_rows_are_exact(tmp_path: Path):
    engine = slurm_engine(tmp_path, max_retries=1)
    manager = PipeManager.parallelize_pipe(slow_pipe(tmp_path), workers=2, engine=engine)
    manager.start()
    reports = wait_for(manager, running_with_rows)
    os.kill(reports[1].pid, signal.SIGKILL)
    assert manager.run(timeout=240), manager.error
    final = manager.pipe_reports[1]
    assert final.extra["attempts"] == "2"
    assert "SIGKILL" in final.extra["earlier_failures"]
    assert_exact_output(tmp_path)
    assert manager.report.total_processed == ROWS


def test_one_cancelled_task_fails_the_run_and_rolls_back(tmp_path: Path):
    target = tmp_path / "out.jsonl"
    target.write_text("previous\n")
    manager = PipeManager.parallelize_pipe(
        slow_pipe(tmp_path), workers=3, engine=slurm_engine(tmp_path)
    )
    manager.start()
    reports = wait_for(manager, running_with_rows)
    subprocess.run(["scancel", reports[2].extra["slurm_job_id"]], check=True)
    assert manager.run(timeout=240) is False
    cancelled = manager.pipe_reports[2]
    assert cancelled.has_error
    assert "cancelled" in cancelled.message.lower() and "log:" in cancelled.message
    assert manager.pipe_reports[0].status is PipeStatus.COMPLETED
    assert target.read_text() == "previous\n"


def test_requeue_of_a_running_task_never_duplicates_rows(tmp_path: Path):
    engine = slurm_engine(tmp_path)
    manager = PipeManager.parallelize_pipe(slow_pipe(tmp_path), workers=2, engine=engine)
    manager.start()
    reports = wait_for(manager, running_with_rows)
    job = reports[0].extra["slurm_job_id"]
    subprocess.run(["scontrol", "requeue", job], check=True)
    assert manager.run(timeout=300), manager.error
    first = manager.pipe_reports[0]
    assert first.attempt_id.endswith("-r1"), first.attempt_id
    assert first.total_processed == ROWS // 2 or first.total_processed > 0
    assert_exact_output(tmp_path)
    assert manager.report.total_processed == ROWS


def test_node_taken_down_requeues_its_task_elsewhere(tmp_path: Path):
    engine = slurm_engine(tmp_path)
    manager = PipeManager.parallelize_pipe(slow_pipe(tmp_path), workers=2, engine=engine)
    manager.start()
    reports = wait_for(manager, running_with_rows)
    node = reports[0].host
    try:
        subprocess.run(
            ["scontrol", "update", f"nodename={node}", "state=DOWN", "reason=zoopipe-test"],
            check=True,
        )
        assert manager.run(timeout=300), manager.error
    finally:
        subprocess.run(["scontrol", "update", f"nodename={node}", "state=RESUME"], check=False)
    assert manager.pipe_reports[0].host != node
    assert manager.pipe_reports[0].attempt_id.endswith("-r1")
    assert_exact_output(tmp_path)


def test_task_over_its_time_limit_is_reported_as_such(tmp_path: Path):
    engine = slurm_engine(tmp_path, time="00:01:00", signal_delay_s=20)
    pipe = slow_pipe(tmp_path, delay=2.0)
    manager = PipeManager.parallelize_pipe(pipe, workers=1, engine=engine)
    assert manager.run(timeout=240) is False
    [report] = manager.pipe_reports
    assert report.status is PipeStatus.FAILED
    assert "time limit" in report.message
    assert not (tmp_path / "out.jsonl").exists()


def test_task_over_its_memory_is_reported_as_such(tmp_path: Path):
    engine = slurm_engine(tmp_path, mem="150M")
    pipe = slow_pipe(tmp_path, names=["hog"])
    manager = PipeManager.parallelize_pipe(pipe, workers=1, engine=engine)
    assert manager.run(timeout=240) is False
    [report] = manager.pipe_reports
    assert report.status is PipeStatus.FAILED
    assert "OUT_OF_MEMORY" in report.message or "memory" in report.message, report.message


def test_group_writable_job_folder_is_refused(tmp_path: Path):
    engine = slurm_engine(tmp_path, extra={"hold": True})
    manager = PipeManager.parallelize_pipe(slow_pipe(tmp_path, delay=0.0), workers=2, engine=engine)
    manager.start()
    assert engine.job_folder is not None
    os.chmod(engine.job_folder, 0o770)
    array = manager.pipe_reports[0].extra["slurm_job_id"].split("_")[0]
    subprocess.run(["scontrol", "release", array], check=True)
    assert manager.run(timeout=240) is False
    for report in manager.pipe_reports:
        assert report.status is PipeStatus.FAILED
        assert "writable by group" in report.message and "chmod go-w" in report.message


def test_the_same_error_at_start_fails_fast_instead_of_retrying(tmp_path: Path):
    """Every shard's input vanished before the tasks ran: the same error before any record.
    With max_retries=2 each shard still runs once (one sbatch), and the run says why once."""
    engine = slurm_engine(tmp_path, max_retries=2, extra={"hold": True})
    manager = PipeManager.parallelize_pipe(slow_pipe(tmp_path, delay=0.0), workers=6, engine=engine)
    manager.start()
    (tmp_path / "in.csv").unlink()
    array = manager.pipe_reports[0].extra["slurm_job_id"].split("_")[0]
    subprocess.run(["scontrol", "release", array], check=True)
    assert manager.run(timeout=240) is False
    reports = manager.pipe_reports
    assert engine.slurm_calls()["sbatch"] == 1, engine.slurm_calls()
    assert [r.extra["attempts"] for r in reports] == ["1"] * 6
    failed = [r for r in reports if r.status is PipeStatus.FAILED]
    assert len(failed) >= 2 and all("in.csv" in r.message for r in failed), reports
    assert all(r.status in (PipeStatus.FAILED, PipeStatus.CANCELLED) for r in reports)
    assert "fail fast" in str(manager.error) or all(
        "failed fast" in r.message for r in reports if r.status is PipeStatus.CANCELLED
    ), manager.error


# -- packed tasks (max_tasks): a fault takes several shards at once ---------------------------

PACKED_SHARDS = 8


def packed_run(tmp_path: Path) -> tuple[PipeManager, list[PipeReport], PipeReport]:
    """8 slow shards on 2 packed tasks of 2 workers, started and caught mid-run: some shards
    done, and a victim under way that started after the first one was done (so it has most
    of its ~8 s ahead of it, and a fault sent now lands before it can finish)."""
    engine = slurm_engine(tmp_path, max_tasks=2, workers_per_task=2, max_retries=1)
    # About 8 s a shard, two rounds of 4: the second round runs while the first is done.
    pipe = slow_pipe(tmp_path, delay=1.0)
    manager = PipeManager.parallelize_pipe(pipe, workers=PACKED_SHARDS, engine=engine)
    manager.start()
    first_round: set[int] = set()

    def mid_run(reports: list[PipeReport]) -> bool:
        done = [r for r in reports if r.status is PipeStatus.COMPLETED]
        # Under way: its record is there (a slow model's rows count once its batch is done).
        busy = {r.pipe_index for r in reports if r.status is PipeStatus.RUNNING and r.pid}
        if not done:
            first_round.update(busy)
            return False
        if not first_round:  # the shards running when the first one was seen done
            first_round.update(busy | {r.pipe_index for r in done})
        return bool(busy - first_round)

    before = wait_for(manager, mid_run, limit=180)
    victim = next(
        r
        for r in before
        if r.status is PipeStatus.RUNNING and r.pid and r.pipe_index not in first_round
    )
    return manager, before, victim


def parent_pid(pid: int) -> int:
    """The packed task process whose worker ``pid`` is (workers are its forks)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    raise AssertionError(f"no parent of process {pid}")


def assert_finished_shards_kept(manager: PipeManager, before: list[PipeReport]) -> None:
    for report in before:
        if report.status is PipeStatus.COMPLETED:
            after = manager.pipe_reports[report.pipe_index]
            assert after.attempt_id == report.attempt_id, (report, after)
            assert after.extra["attempts"] == "1"


def test_packed_task_killed_with_sigkill_keeps_finished_shards_and_retries_the_others(
    tmp_path: Path,
):
    manager, before, victim = packed_run(tmp_path)
    os.kill(parent_pid(victim.pid), signal.SIGKILL)
    assert manager.run(timeout=300), manager.error
    assert_finished_shards_kept(manager, before)
    again = manager.pipe_reports[victim.pipe_index]
    assert again.extra["attempts"] == "2", again
    assert (
        "SIGKILL" in again.extra["earlier_failures"] or "SIGTERM" in again.extra["earlier_failures"]
    ), again.extra
    assert_exact_output(tmp_path)
    assert manager.report.total_processed == ROWS


def test_node_taken_down_under_a_packed_task_keeps_finished_shards(tmp_path: Path):
    manager, before, victim = packed_run(tmp_path)
    node = victim.host
    try:
        subprocess.run(
            ["scontrol", "update", f"nodename={node}", "state=DOWN", "reason=zoopipe-test"],
            check=True,
        )
        assert manager.run(timeout=300), manager.error
    finally:
        subprocess.run(["scontrol", "update", f"nodename={node}", "state=RESUME"], check=False)
    assert_finished_shards_kept(manager, before)
    # The shard under way ran again elsewhere: requeued with its task, or retried alone.
    again = manager.pipe_reports[victim.pipe_index]
    assert again.host != node, again
    assert again.attempt_id.endswith("-r1") or again.extra["attempts"] == "2", again
    assert_exact_output(tmp_path)
    assert manager.report.total_processed == ROWS


def test_packed_array_out_of_time_continues_with_the_shards_it_did_not_get_to(tmp_path: Path):
    """Slurm's warning before the time limit (USR2, sent here with scancel as slurmctld does)
    stops a packed task: the shard it was running and those nobody claimed go on a new packed
    array, without using up retries (max_retries=0), and the output is exact."""
    engine = slurm_engine(tmp_path, max_tasks=1, workers_per_task=1)
    pipe = slow_pipe(tmp_path, delay=0.2)  # 3 rows a shard: 0.6 s each
    manager = PipeManager.parallelize_pipe(pipe, workers=20, engine=engine)
    manager.start()
    wait_for(manager, lambda rs: sum(r.status is PipeStatus.COMPLETED for r in rs) >= 3)
    [array] = engine.live_arrays()
    subprocess.run(["scancel", "--signal=USR2", array], check=True)
    assert manager.run(timeout=240), manager.error
    assert_exact_output(tmp_path)
    reports = manager.pipe_reports
    continued = [r for r in reports if r.extra.get("continuations") == "1"]
    assert continued, "no shard went onto a second array"
    assert all(r.status is PipeStatus.COMPLETED for r in reports)
    assert all(r.extra["attempts"] == "2" for r in continued)
    # The stopped shard may be judged a poll after the unclaimed ones (its task's end is
    # confirmed by Slurm first): then it continues on an array of its own.
    assert 2 <= len({r.extra["slurm_job_id"].split("_")[0] for r in reports}) <= 3, reports
