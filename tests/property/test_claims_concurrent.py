"""Claims under contention: simulated packed tasks, each a real process, claim from one job
folder at once; every shard is claimed exactly once, and a dead claimer's claim is recovered
only by a later run of its own task, and only while that dead run had not ended the shard."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import tempfile
from collections.abc import Iterator
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from zoopipe_hpc._private import Use, ensure_private_dir
from zoopipe_hpc.commit.staged import result_path
from zoopipe_hpc.engines._worker import progress_path
from zoopipe_hpc.engines.slurm._claims import ClaimBoard, claim_owner
from zoopipe_hpc.errors import PayloadRefused
from zoopipe_hpc.progress import ProgressWriter

_BUDGET = settings().max_examples  # of the loaded profile
PROCESSES = settings(max_examples=max(8, _BUDGET // 6))
CHEAP = settings(max_examples=_BUDGET)

_USE = Use(action="test", risk="none", error=PayloadRefused)


@contextlib.contextmanager
def new_job_folder() -> Iterator[Path]:
    """A fresh job folder per example (hypothesis reuses a test's fixtures across examples)."""
    with tempfile.TemporaryDirectory(prefix="zoopipe-claims-") as parent:
        folder = Path(parent) / "job"
        for path in (folder, folder / "progress"):
            ensure_private_dir(path, "folder", _USE)
        yield folder


def claimer(folder: str, attempt: str, shards: list[int], start: multiprocessing.Event) -> None:
    """One simulated task: claim until nothing is left, then list what it got."""
    board = ClaimBoard(Path(folder), attempt, shards).open()
    start.wait()
    mine = []
    while (index := board.claim_next()) is not None:
        mine.append(index)
    Path(folder, f"{attempt}.json").write_text(json.dumps(mine))


@PROCESSES
@given(
    tasks=st.integers(min_value=2, max_value=5),
    shards=st.lists(st.integers(min_value=0, max_value=400), min_size=1, max_size=80, unique=True),
)
def test_concurrent_tasks_claim_every_shard_exactly_once(tasks: int, shards: list[int]) -> None:
    with new_job_folder() as folder:
        concurrent_claims(folder, tasks, shards)


def concurrent_claims(folder: Path, tasks: int, shards: list[int]) -> None:
    context = multiprocessing.get_context("fork")
    start = context.Event()
    attempts = [f"91-{task}-r0" for task in range(tasks)]
    processes = [
        context.Process(target=claimer, args=(str(folder), attempt, shards, start))
        for attempt in attempts
    ]
    for process in processes:
        process.start()
    start.set()
    for process in processes:
        process.join(60)
        assert process.exitcode == 0
    claimed = [json.loads((folder / f"{a}.json").read_text()) for a in attempts]
    everything = [index for mine in claimed for index in mine]
    assert sorted(everything) == sorted(shards)  # each once: none lost, none twice
    for attempt, mine in zip(attempts, claimed, strict=True):
        assert mine == [s for s in shards if s in set(mine)]  # in the list's order
        assert all(claim_owner(folder, "91", index) == attempt for index in mine)


_STATES = st.sampled_from(["none", "running", "cancelled", "finished", "failed"])


def leave(folder: Path, index: int, attempt: str, state: str) -> None:
    if state == "none":
        return
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


@CHEAP
@given(
    dead=st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 2), _STATES), min_size=1, max_size=12
    ),
    task=st.integers(0, 3),
    restart=st.integers(0, 3),
)
def test_a_dead_claim_is_recovered_only_under_the_fencing_rule(
    dead: list[tuple[int, int, str]], task: int, restart: int
) -> None:
    """Shard ``i`` was claimed by the dead run ``dead[i]`` = (task, restart, what it left);
    run ``restart`` of ``task`` then claims: it gets exactly the shards whose claimant was an
    earlier run of its own task that had not finished or failed the shard."""
    with new_job_folder() as folder:
        recover(folder, dead, task, restart)


def recover(folder: Path, dead: list[tuple[int, int, str]], task: int, restart: int) -> None:
    shards = list(range(len(dead)))
    for index, (owner_task, owner_restart, state) in enumerate(dead):
        attempt = f"92-{owner_task}-r{owner_restart}"
        assert ClaimBoard(folder, attempt, shards).open().claim(index)
        leave(folder, index, attempt, state)
    board = ClaimBoard(folder, f"92-{task}-r{restart}", shards).open()
    got = []
    while (index := board.claim_next()) is not None:
        got.append(index)
    expected = [
        index
        for index, (owner_task, owner_restart, state) in enumerate(dead)
        if owner_task == task and owner_restart < restart and state not in ("finished", "failed")
    ]
    assert got == expected
    for index, (owner_task, owner_restart, _) in enumerate(dead):
        owner = f"92-{task}-r{restart}" if index in got else f"92-{owner_task}-r{owner_restart}"
        assert claim_owner(folder, "92", index) == owner
