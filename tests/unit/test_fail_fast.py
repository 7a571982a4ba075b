"""Fail fast: which failures count as the same error at the start of an attempt."""

from __future__ import annotations

from zoopipe_hpc.engines._fail_fast import FailFast, failure_signature

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
