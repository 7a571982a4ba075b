"""Staged commit: readers see the old target or the whole new one, never a partial one."""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import signal
import threading
from pathlib import Path

import pytest
from _support import User, users, write_csv
from test_slurm_engine import slurm_engine

from zoopipe_hpc import CSVInputAdapter, JSONOutputAdapter, Pipe, PipeManager
from zoopipe_hpc.commit import transaction
from zoopipe_hpc.commit._locks import locked
from zoopipe_hpc.commit._staging import StagingArea
from zoopipe_hpc.commit.transaction import clean_leftovers


def _pipe(source: Path, target: Path) -> Pipe:
    return Pipe(CSVInputAdapter(source), JSONOutputAdapter(target), User)


def _valid_versions(target: Path, sources: list[Path]) -> set[bytes]:
    """The bytes of the target after a single-pipe run of each source."""
    versions = set()
    for k, source in enumerate(sources):
        reference = target.with_name(f"reference{k}.jsonl")
        _pipe(source, reference).run()
        versions.add(reference.read_bytes())
    return versions


def _run_many(source: str, target: str, rounds: int, jobs: str | None = None) -> None:
    """``rounds`` runs of one coordinator; on the Slurm cluster when ``jobs`` names its folder."""
    for _ in range(rounds):
        engine = None if jobs is None else slurm_engine(Path(jobs))
        pipe = _pipe(Path(source), Path(target))
        manager = PipeManager.parallelize_pipe(pipe, workers=2, engine=engine)
        if not manager.run(timeout=600):
            print(f"run failed: {manager.error!r} {manager.pipe_reports}", flush=True)
            raise SystemExit(1)


ON_SLURM = pytest.param("slurm", marks=[pytest.mark.slurm, pytest.mark.on_shared_fs], id="slurm")


@pytest.mark.parametrize("engine", ["local", ON_SLURM])
def test_concurrent_managers_never_expose_a_partial_target(tmp_path: Path, engine: str):
    """Two coordinators commit to one target while a reader reads it. On the Slurm cluster
    (``slurm``) the shards run on the nodes; with ``--shared-fs gluster`` the parts cross from
    the nodes' clients to the coordinators' (tests/conftest.py puts ``tmp_path`` there)."""
    rounds = 4 if engine == "local" else 2
    sources = [
        write_csv(tmp_path / "a.csv", users(3000)),
        write_csv(tmp_path / "b.csv", users(1500, bad_every=2)),
    ]
    target = tmp_path / "out.jsonl"
    target.write_text('{"old": 1}\n')
    allowed = _valid_versions(target, sources) | {b'{"old": 1}\n'}
    context = multiprocessing.get_context("fork")
    writers = [
        context.Process(
            target=_run_many,
            args=(
                str(s),
                str(target),
                rounds,
                None if engine == "local" else str(tmp_path / f"j{k}"),
            ),
        )
        for k, s in enumerate(sources)
    ]
    seen: list[bytes] = []
    stop = threading.Event()

    def read_forever() -> None:
        while not stop.is_set():
            try:
                seen.append(target.read_bytes())
            except OSError as exc:
                # On a network filesystem an open racing a rename from another client can
                # answer "stale file handle" (docs/commit.md): a reader opens again.
                if exc.errno != errno.ESTALE:
                    raise

    reader = threading.Thread(target=read_forever)
    reader.start()
    for w in writers:
        w.start()
    for w in writers:
        w.join(120 if engine == "local" else 900)
    stop.set()
    reader.join()
    assert [w.exitcode for w in writers] == [0, 0]
    assert seen and set(seen) <= allowed
    assert target.read_bytes() in allowed - {b'{"old": 1}\n'}


def _crash_during_merge(source: str, target: str) -> None:
    def die_after_merging(name: str) -> None:
        if name == "prepared":  # every part merged into a staged file, nothing published
            os.kill(os.getpid(), signal.SIGKILL)

    transaction._step = die_after_merging
    PipeManager.parallelize_pipe(_pipe(Path(source), Path(target)), workers=3).run()


def test_crash_in_the_middle_of_a_merge_keeps_the_old_target_and_is_cleaned_next_run(
    tmp_path: Path,
):
    source = write_csv(tmp_path / "in.csv", users(600))
    target = tmp_path / "out.jsonl"
    target.write_text("old\n")
    child = multiprocessing.get_context("fork").Process(
        target=_crash_during_merge, args=(str(source), str(target))
    )
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL
    assert target.read_text() == "old\n"
    leftovers = list((tmp_path / ".zoopipe-staging").glob("out.jsonl.run-*"))
    assert len(leftovers) == 1 and list(leftovers[0].glob("part-*"))
    assert PipeManager.parallelize_pipe(_pipe(source, target), workers=3).run()
    assert not list((tmp_path / ".zoopipe-staging").glob("out.jsonl.run-*"))
    assert len(target.read_text().splitlines()) == 600


def test_leftovers_of_live_runs_are_kept(tmp_path: Path):
    target = tmp_path / "out.csv"
    live = StagingArea(target)
    live.create()
    dead = StagingArea(target)
    dead.create()
    owner = dead.path / "owner.json"
    record = json.loads(owner.read_text())
    record["pid"] = 2**22 + 12345  # no such process
    owner.write_text(json.dumps(record))
    assert clean_leftovers(target) == [dead.path]
    assert live.path.exists()


def test_missing_output_folder_fails_before_any_work(tmp_path: Path):
    source = write_csv(tmp_path / "in.csv", users(10))
    pipe = _pipe(source, tmp_path / "no" / "such" / "dir" / "out.jsonl")
    with pytest.raises(Exception, match="does not exist"):
        PipeManager.parallelize_pipe(pipe, workers=2).run()


def _die_holding_the_lock(target: str) -> None:
    with locked(Path(target)):
        os.kill(os.getpid(), signal.SIGKILL)


def test_a_lock_left_by_a_dead_process_on_this_host_is_reclaimed(tmp_path: Path):
    target = tmp_path / "out.csv"
    child = multiprocessing.get_context("fork").Process(
        target=_die_holding_the_lock, args=(str(target),)
    )
    child.start()
    child.join(30)
    assert child.exitcode == -signal.SIGKILL
    with locked(target, timeout=20):
        pass
