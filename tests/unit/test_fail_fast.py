"""Fail fast: which failures count as the same error at the start of an attempt, and the Slurm
engine holding the retry of such a failure until the other shards can show the same error."""

from __future__ import annotations

from pathlib import Path

import pytest

from zoopipe_hpc.engines._fail_fast import FailFast, failure_signature
from zoopipe_hpc.engines._worker import report_from_snapshot
from zoopipe_hpc.engines.slurm import SlurmEngine
from zoopipe_hpc.engines.slurm._watch import Shard
from zoopipe_hpc.report import PipeReport, PipeStatus

IMPORT = "could not load the pipe: ModuleNotFoundError: No module named 'models'"


def test_the_same_error_before_any_record_trips_on_the_second_failure() -> None:
    fail_fast = FailFast()
    first = f"{IMPORT} [Slurm task 12_0 on n1 failed (FAILED, exit code 1); log: /j/logs/12_0.err]"
    second = f"{IMPORT} [Slurm task 12_5 on n3 failed (FAILED, exit code 1); log: /j/logs/12_5.err]"
    assert not fail_fast.observe(0, first, 0)
    assert fail_fast.observe(5, second, 0)
    assert fail_fast.tripped is not None and fail_fast.tripped[1] == 0
    text = fail_fast.describe()
    assert "2 attempts" in text and "shard 0" in text and "/j/logs/12_0.err" in text


def test_two_attempts_of_one_shard_count_too() -> None:
    fail_fast = FailFast()
    assert not fail_fast.observe(0, "Slurm task 3_0 on n1 failed (FAILED, exit code 1); log: a", 0)
    assert fail_fast.observe(0, "Slurm task 4_0 on n2 failed (FAILED, exit code 1); log: b", 0)


def test_failures_after_reading_records_or_of_the_node_never_count() -> None:
    fail_fast = FailFast()
    for shard in range(5):
        assert not fail_fast.observe(shard, "ValueError: row 7 is bad", 7)
        assert not fail_fast.observe(shard, "Slurm task 1_0 lost its node (NODE_FAIL)", 0)
        assert not fail_fast.observe(shard, "Slurm task 1_0 reached its time limit (TIMEOUT)", 0)
        assert not fail_fast.observe(shard, "was cancelled (CANCELLED by 0)", 0)
        assert not fail_fast.observe(shard, "Slurm task 1_0 failed (FAILED, killed by SIGKILL)", 0)
        # A packed task's shard stopped by Slurm's warning before the time limit.
        assert not fail_fast.observe(
            shard,
            "the task is about to reach its Slurm time limit (SIGUSR2) "
            "[Slurm task 6837_3 on n2 failed (FAILED, exit code 1); log: /x/6837_3_0_log.err]",
            0,
        )
        assert not fail_fast.observe(
            shard, "Slurm task 1_* ended before one claimed (UNCLAIMED)", 0
        )
    assert fail_fast.tripped is None and fail_fast.describe() == ""
    assert failure_signature("", 0) is None


def test_different_errors_do_not_trip() -> None:
    fail_fast = FailFast()
    assert not fail_fast.observe(0, "FileNotFoundError: /data/a.csv", 0)
    assert not fail_fast.observe(1, "FileNotFoundError: /data/b.csv", 0)
    assert fail_fast.observe(2, "FileNotFoundError: /data/a.csv", 0)


# -- the engine: a failure at the start waits for the others before its retry ------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _engine_with_failures(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    failed: dict[int, str],
    clock: _Clock,
    records_read: int = 0,
) -> tuple[SlurmEngine, list[list[int]]]:
    """An engine watching 6 running shards (no record read yet) that fail when ``failed``
    (shard -> message) says so, after ``records_read`` records; it notes the shards it would
    resubmit instead of calling sbatch."""
    folder = tmp_path / "job"
    (folder / "progress").mkdir(parents=True)
    engine = SlurmEngine(tmp_path, max_retries=2, stale_after=6.0)
    engine._clock = clock
    engine.attach(folder, [[f"12_{i}"] for i in range(6)])
    engine.read_only = False
    submitted: list[list[int]] = []

    def judge(self: SlurmEngine, shard: Shard, report: PipeReport, now: float) -> PipeReport | None:
        if shard.index not in failed:
            return None
        outcome = report.copy()
        outcome.status = PipeStatus.FAILED
        outcome.message = failed[shard.index]
        outcome.total_processed = records_read
        return outcome

    def submit(self: SlurmEngine, indices: list[int], kind: str) -> list[int]:
        submitted.append(indices)
        for i in indices:
            self._shards[i].submissions.append(("13", i))
        return indices

    monkeypatch.setattr(SlurmEngine, "_judge", judge)
    monkeypatch.setattr(SlurmEngine, "_submit", submit)
    monkeypatch.setattr(SlurmEngine, "_maybe_ask_slurm", lambda self, shards: None)
    # The fake judgement stands for the records and Slurm answers that would wake a shard
    # waiting without a record (see ``LiveReports``): every shard is judged at every poll.
    monkeypatch.setattr(SlurmEngine, "_waits", lambda self, shard: False)
    monkeypatch.setattr(
        SlurmEngine, "_shard_report", lambda self, s: report_from_snapshot(s.index, None)
    )
    return engine, submitted


def _task_failed(task: int) -> str:
    return f"{IMPORT} [Slurm task 12_{task} on n{task % 3 + 1} failed (FAILED, exit code 1)]"


def test_a_failure_at_the_start_is_not_retried_before_the_others_show_the_same_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first failure is seen a poll before the others (their records are still on the way
    through the shared filesystem's caches): it is not resubmitted, and the second one trips
    fail fast; no sbatch at all."""
    clock = _Clock()
    failed: dict[int, str] = {0: _task_failed(0)}
    engine, submitted = _engine_with_failures(tmp_path, monkeypatch, failed, clock)
    engine._refresh()
    clock.now += 1.0
    engine._refresh()  # the same failure, seen again: counted once, so nothing trips yet
    assert submitted == [] and engine._fail_fast.tripped is None
    failed.update({i: _task_failed(i) for i in range(1, 6)})
    clock.now += 1.0
    reports = engine._refresh()
    assert submitted == []
    assert engine._fail_fast.tripped is not None and engine._fail_fast.tripped[1] == 0
    assert all(r.status is PipeStatus.FAILED for r in reports)


def test_a_failure_at_the_start_is_retried_once_the_others_read_records_or_after_stale_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = _Clock()
    engine, submitted = _engine_with_failures(tmp_path, monkeypatch, {0: _task_failed(0)}, clock)
    engine._refresh()
    clock.now += 5.9
    engine._refresh()
    assert submitted == []
    clock.now += 0.1  # stale_after: the others may never say anything
    engine._refresh()
    assert submitted == [[0]] and engine._fail_fast.tripped is None
    # A failure after reading records is not fail fast's: retried at once.
    clock = _Clock()
    late = {1: "ValueError: row 7 is bad"}
    engine, submitted = _engine_with_failures(tmp_path / "b", monkeypatch, late, clock, 7)
    engine._refresh()
    assert submitted == [[1]]
