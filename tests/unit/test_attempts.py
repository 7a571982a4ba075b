"""One attempt-id scheme for every engine: made, checked and parsed by engines._attempts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zoopipe_hpc.engines._attempts import (
    ATTEMPT_ID_MAX,
    LocalAttempt,
    SlurmAttempt,
    check_attempt_id,
    local_attempt_ids,
    parse_attempt_id,
    parse_record_name,
    record_name,
    slurm_attempt_id,
    slurm_attempt_id_from_environment,
    slurm_attempt_prefix,
    slurm_restart,
)
from zoopipe_hpc.engines._tracking import PipeTracker
from zoopipe_hpc.engines._worker import progress_path
from zoopipe_hpc.errors import ConfigurationError
from zoopipe_hpc.progress import ProgressWriter, read_progress

SAFE = re.compile(r"[A-Za-z0-9_-]+")


def test_local_ids_share_one_run_token_and_differ_by_index() -> None:
    ids = local_attempt_ids(300)
    assert len(set(ids)) == 300
    parsed = [parse_attempt_id(i) for i in ids]
    assert all(isinstance(p, LocalAttempt) for p in parsed)
    assert {p.run for p in parsed if isinstance(p, LocalAttempt)} == {ids[0].split("-")[0]}
    assert [p.index for p in parsed if isinstance(p, LocalAttempt)] == list(range(300))
    assert all(SAFE.fullmatch(i) and "_" not in i for i in ids)


def test_every_local_run_has_its_own_token() -> None:
    runs = {local_attempt_ids(1)[0] for _ in range(200)}
    assert len(runs) == 200
    assert local_attempt_ids(0) == []
    with pytest.raises(ConfigurationError):
        local_attempt_ids(-1)


def test_slurm_ids_name_array_task_and_restart() -> None:
    assert slurm_attempt_id("4711", 3) == "4711-3-r0"
    assert slurm_attempt_id("4711", 3, 2) == "4711-3-r2"
    assert parse_attempt_id("4711-3-r2") == SlurmAttempt("4711", 3, 2)
    assert slurm_attempt_prefix("4711", 3) == "4711-3-r"
    with pytest.raises(ConfigurationError):
        slurm_attempt_id("4711", -1)


def test_slurm_restart_belongs_to_one_submitted_task_only() -> None:
    assert slurm_restart("12-1-r0", "12", 1) == 0
    assert slurm_restart("12-1-r7", "12", 1) == 7
    assert slurm_restart("12-10-r0", "12", 1) is None  # task 10, not task 1
    assert slurm_restart("13-1-r0", "12", 1) is None  # another array
    assert slurm_restart("12-1-r", "12", 1) is None
    assert slurm_restart("12-1-rx", "12", 1) is None


def test_the_slurm_id_comes_from_slurms_variables() -> None:
    array = {
        "SLURM_ARRAY_JOB_ID": "88",
        "SLURM_JOB_ID": "91",
        "SLURM_ARRAY_TASK_ID": "3",
    }
    assert slurm_attempt_id_from_environment(array) == "88-3-r0"
    assert slurm_attempt_id_from_environment({**array, "SLURM_RESTART_COUNT": "2"}) == "88-3-r2"
    assert slurm_attempt_id_from_environment({"SLURM_JOB_ID": "91"}) == "91-0-r0"
    assert slurm_attempt_id_from_environment({}) == "local-0-r0"
    assert slurm_attempt_id_from_environment({"SLURM_RESTART_COUNT": ""}) == "local-0-r0"
    with pytest.raises(ConfigurationError):
        slurm_attempt_id_from_environment({"SLURM_JOB_ID": "91+0"})
    with pytest.raises(ConfigurationError):
        slurm_attempt_id_from_environment({"SLURM_ARRAY_TASK_ID": "x"})


@pytest.mark.parametrize(
    "bad", ["", "a.b", "a/b", "../x", "a b", "ü", "a\n", "x" * (ATTEMPT_ID_MAX + 1)]
)
def test_ids_unsafe_in_a_file_name_are_refused(bad: str) -> None:
    with pytest.raises(ConfigurationError):
        check_attempt_id(bad)
    with pytest.raises(ConfigurationError):
        record_name(0, bad)


def test_the_longest_id_fits_the_progress_record(tmp_path: Path) -> None:
    longest = check_attempt_id("A-_9" * (ATTEMPT_ID_MAX // 4))
    assert len(longest) == ATTEMPT_ID_MAX
    record = progress_path(tmp_path, 0, longest)
    with ProgressWriter(record, longest) as writer:
        writer.start()
    snapshot = read_progress(record, expected_attempt_id=longest)
    assert snapshot is not None and snapshot.attempt_id == longest


def test_text_that_is_no_attempt_id_is_refused_by_the_parser() -> None:
    with pytest.raises(ConfigurationError):
        parse_attempt_id("attempt-0001")


def test_record_names_round_trip_and_other_files_are_not_records() -> None:
    assert record_name(3, "88-3-r1") == "progress-00003.88-3-r1.rec"
    assert parse_record_name("progress-00003.88-3-r1.rec") == (3, "88-3-r1")
    assert parse_record_name("progress-123456.abc.rec") == (123456, "abc")
    for other in (
        "progress-00003.88-3-r1.stop",
        "progress-00003.88-3-r1.rec.tmp",
        "progress-00003..rec",
        "progress-x.abc.rec",
        "part-00003.88-3-r1.jsonl",
        f"progress-00001.{'x' * (ATTEMPT_ID_MAX + 1)}.rec",
    ):
        assert parse_record_name(other) is None, other


@given(
    index=st.integers(min_value=0, max_value=10**6),
    attempt=st.text(alphabet="ABCXYZabcxyz0123456789_-", min_size=1, max_size=ATTEMPT_ID_MAX),
)
def test_any_safe_id_round_trips_through_a_record_name(index: int, attempt: str) -> None:
    assert parse_record_name(record_name(index, attempt)) == (index, attempt)


def test_the_tracker_of_local_engines_uses_the_scheme(tmp_path: Path) -> None:
    tracker = PipeTracker(3, tmp_path)
    parsed = [parse_attempt_id(a) for a in tracker.attempt_ids]
    assert [p.index for p in parsed if isinstance(p, LocalAttempt)] == [0, 1, 2]
    assert tracker.record_path(2) == tmp_path / record_name(2, tracker.attempt_ids[2])
    assert PipeTracker(3, tmp_path).attempt_ids != tracker.attempt_ids
