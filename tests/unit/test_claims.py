"""Claims of packed Slurm arrays: one owner per shard, taken over only by a requeue of its task."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from zoopipe_hpc._private import Use, ensure_private_dir
from zoopipe_hpc.commit.staged import result_path
from zoopipe_hpc.engines._worker import progress_path
from zoopipe_hpc.engines.slurm._claims import ClaimBoard, claim_folder, claim_owner
from zoopipe_hpc.errors import PayloadRefused, StateError
from zoopipe_hpc.progress import ProgressWriter

_USE = Use(action="test", risk="none", error=PayloadRefused)


def job_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "job"
    for path in (folder, folder / "progress"):
        ensure_private_dir(path, "folder", _USE)
    return folder


def board(folder: Path, attempt: str, shards: range | list[int] = range(6)) -> ClaimBoard:
    return ClaimBoard(folder, attempt, list(shards)).open()


def test_each_shard_goes_to_the_first_claimer_in_order(tmp_path: Path) -> None:
    folder = job_folder(tmp_path)
    a, b = board(folder, "77-0-r0"), board(folder, "77-1-r0")
    assert [a.claim_next(), b.claim_next(), a.claim_next(), b.claim_next()] == [0, 1, 2, 3]
    assert [b.claim_next(), b.claim_next(), b.claim_next(), a.claim_next()] == [4, 5, None, None]
    assert [claim_owner(folder, "77", i) for i in range(6)] == [
        "77-0-r0",
        "77-1-r0",
        "77-0-r0",
        "77-1-r0",
        "77-1-r0",
        "77-1-r0",
    ]
    assert claim_owner(folder, "78", 0) is None  # another array's claims are its own
    assert oct(claim_folder(folder, "77").stat().st_mode & 0o777) == "0o700"
    assert not [p for p in claim_folder(folder, "77").iterdir() if p.name.startswith(".")]


def run_state(folder: Path, index: int, attempt: str, state: str) -> None:
    """Leave the record (and result) a run ``attempt`` of shard ``index`` would leave."""
    record = progress_path(folder / "progress", index, attempt)
    with ProgressWriter(record, attempt) as writer:
        writer.start()
        if state == "finished":
            writer.finish()
            result_path(record).write_text("{}")
        elif state == "failed":
            writer.fail("RuntimeError: boom")
        elif state == "cancelled":
            writer.cancel("stopped by SIGTERM")


@pytest.mark.parametrize(
    ("earlier", "recovered"),
    [
        ("none", True),
        ("running", True),
        ("cancelled", True),
        ("finished", False),
        ("failed", False),
    ],
)
def test_only_a_requeue_of_the_same_task_takes_an_unended_claim_over(
    tmp_path: Path, earlier: str, recovered: bool
) -> None:
    folder = job_folder(tmp_path)
    assert board(folder, "77-3-r0").claim(4)
    if earlier != "none":
        run_state(folder, 4, "77-3-r0", earlier)
    # Another task, or the same run again, never takes it: the engine retries it instead.
    assert not board(folder, "77-2-r0").claim(4)
    assert not board(folder, "77-2-r5").claim(4)
    assert not board(folder, "77-3-r0").claim(4)
    # A requeue of task 3 does, if the dead run did not end the shard itself.
    assert board(folder, "77-3-r1").claim(4) is recovered
    assert claim_owner(folder, "77", 4) == ("77-3-r1" if recovered else "77-3-r0")
    # Once taken over, the claim is the new run's: not even a later requeue of an older run
    # id, nor the dead run, gets it back.
    assert not board(folder, "77-3-r0").claim(4)
    if recovered:
        assert not board(folder, "77-3-r1").claim(4)
        assert board(folder, "77-3-r2").claim(4)
        assert claim_owner(folder, "77", 4) == "77-3-r2"


def test_a_requeued_task_takes_back_its_own_unfinished_shards_and_no_others(
    tmp_path: Path,
) -> None:
    folder = job_folder(tmp_path)
    first, other = board(folder, "77-0-r0"), board(folder, "77-1-r0")
    assert [first.claim_next(), other.claim_next(), first.claim_next()] == [0, 1, 2]
    run_state(folder, 0, "77-0-r0", "finished")
    run_state(folder, 2, "77-0-r0", "running")  # the run died under shard 2
    requeued = board(folder, "77-0-r1")
    assert [requeued.claim_next() for _ in range(5)] == [2, 3, 4, 5, None]


def test_bad_claims_are_refused_with_their_file(tmp_path: Path) -> None:
    folder = job_folder(tmp_path)
    b = board(folder, "77-0-r0")
    (claim_folder(folder, "77") / "00001.0").write_text("not an attempt\n")
    with pytest.raises(StateError, match="00001.0"):
        b.claim(1)
    (claim_folder(folder, "77") / "00003.0").symlink_to(folder / "elsewhere")
    with pytest.raises(PayloadRefused, match="00003.0.*never a link"):
        b.claim(3)
    with pytest.raises(PayloadRefused, match="00003.0.*never a link"):
        claim_owner(folder, "77", 3)
    if os.geteuid() == 0:
        planted = claim_folder(folder, "77") / "00002.0"
        planted.write_text("77-0-r0\n")
        os.chown(planted, 65534, 65534)
        with pytest.raises(PayloadRefused, match="00002.0"):
            claim_owner(folder, "77", 2)


def test_a_claims_folder_others_can_write_is_refused(tmp_path: Path) -> None:
    folder = job_folder(tmp_path)
    claims = folder / "claims"
    claims.mkdir(mode=0o700)
    claims.chmod(0o777)
    with pytest.raises(PayloadRefused, match="claims folder"):
        board(folder, "77-0-r0")


def test_a_local_attempt_id_cannot_claim(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="not the attempt id of a Slurm array task"):
        ClaimBoard(job_folder(tmp_path), "0123456789ab-3", [0])
