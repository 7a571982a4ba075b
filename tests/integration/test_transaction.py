"""One run, one transaction: every target of a run is committed together, or none is.

Proofs of issue 10: a failing pipe leaves every previous target byte-identical; a process killed
between any two steps of the commit leaves, after recovery, all targets old or all new (never a
mix, never a partial file); a full disk during the parts or the merge fails the run cleanly; a
corrupt progress record does not fail a run whose shards succeeded.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from _support import Trigger, User, read_jsonl, users, write_csv

from zoopipe_hpc import CSVInputAdapter, CSVOutputAdapter, JSONOutputAdapter, Pipe, PipeManager
from zoopipe_hpc.commit import transaction
from zoopipe_hpc.errors import CommitError, ConfigurationError
from zoopipe_hpc.report import PipeStatus

REPO = Path(__file__).resolve().parents[2]


def _three_targets(tmp_path: Path, source: Path) -> list[Pipe]:
    """Two pipes: one with an output and an error output, one with an output (3 targets)."""
    return [
        Pipe(
            CSVInputAdapter(source),
            JSONOutputAdapter(tmp_path / "a.jsonl"),
            User,
            JSONOutputAdapter(tmp_path / "a.errors.jsonl"),
        ),
        Pipe(CSVInputAdapter(source), CSVOutputAdapter(tmp_path / "b.csv"), User),
    ]


def _targets(tmp_path: Path) -> list[Path]:
    return [tmp_path / "a.jsonl", tmp_path / "a.errors.jsonl", tmp_path / "b.csv"]


def _old(tmp_path: Path) -> dict[Path, bytes]:
    old = {path: f"old {path.name}\n".encode() for path in _targets(tmp_path)}
    for path, data in old.items():
        path.write_bytes(data)
    return old


def _state(tmp_path: Path) -> dict[Path, bytes | None]:
    return {p: p.read_bytes() if p.exists() else None for p in _targets(tmp_path)}


def _staging_left(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / ".zoopipe-staging").glob("*.run-*"))


def test_a_failing_pipe_leaves_every_target_of_the_run_untouched(tmp_path: Path):
    good = write_csv(tmp_path / "good.csv", [{"id": i, "name": f"n{i}"} for i in range(20)])
    bad = write_csv(
        tmp_path / "bad.csv", [{"id": i, "name": "sigkill" if i == 5 else "x"} for i in range(9)]
    )
    (tmp_path / "a.jsonl").write_text("old a\n")
    (tmp_path / "b.jsonl").write_text("old b\n")
    manager = PipeManager(
        [
            Pipe(CSVInputAdapter(good), JSONOutputAdapter(tmp_path / "a.jsonl"), Trigger),
            Pipe(CSVInputAdapter(bad), JSONOutputAdapter(tmp_path / "b.jsonl"), Trigger),
        ]
    )
    assert manager.run(timeout=60) is False
    assert (tmp_path / "a.jsonl").read_text() == "old a\n"
    assert (tmp_path / "b.jsonl").read_text() == "old b\n"
    assert manager.error is not None and "nothing was committed" in str(manager.error)
    assert manager.pipe_reports[0].status is PipeStatus.COMPLETED
    assert not _staging_left(tmp_path)


def test_two_pipes_commit_together(tmp_path: Path):
    source = write_csv(tmp_path / "in.csv", users(50, bad_every=7))
    old = _old(tmp_path)
    assert PipeManager(_three_targets(tmp_path, source)).run(timeout=60)
    new = _state(tmp_path)
    assert all(new[p] not in (None, old[p]) for p in old)
    assert (
        len(read_jsonl(tmp_path / "a.jsonl")) + len(read_jsonl(tmp_path / "a.errors.jsonl")) == 50
    )
    assert not _staging_left(tmp_path)


def test_two_outputs_on_one_file_are_refused_before_anything_runs(tmp_path: Path):
    source = write_csv(tmp_path / "in.csv", users(5))
    same = tmp_path / "out.jsonl"
    with pytest.raises(ConfigurationError, match="same file"):
        PipeManager(
            [
                Pipe(CSVInputAdapter(source), JSONOutputAdapter(same), User),
                Pipe(
                    CSVInputAdapter(source), JSONOutputAdapter(tmp_path / "." / "out.jsonl"), User
                ),
            ]
        )
    with pytest.raises(ConfigurationError, match="same file"):
        Pipe(CSVInputAdapter(source), JSONOutputAdapter(same), User, JSONOutputAdapter(same)).run()
    assert not same.exists()


# -- crashes between every two steps of the commit ---------------------------------------------

#: Every named point of the commit (``transaction._step``) where a process can die.
STEPS = [
    "prepared",
    "locked",
    "recorded-prepared",
    "recorded",
    "published:0",
    "published:1",
    "published:2",
    "cleaning",
]

_CHILD = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, {tests!r})
    from pathlib import Path
    from _support import User
    from zoopipe_hpc import CSVInputAdapter, CSVOutputAdapter, JSONOutputAdapter, Pipe, PipeManager
    from zoopipe_hpc.commit import transaction

    def die_at(name):
        if name == {step!r}:
            os.kill(os.getpid(), 9)

    transaction._step = die_at
    folder, source = Path({folder!r}), Path({source!r})
    pipes = [
        Pipe(CSVInputAdapter(source), JSONOutputAdapter(folder / "a.jsonl"), User,
             JSONOutputAdapter(folder / "a.errors.jsonl")),
        Pipe(CSVInputAdapter(source), CSVOutputAdapter(folder / "b.csv"), User),
    ]
    PipeManager(pipes).run(timeout=60)
    sys.exit(3)  # the step was never reached
    """
)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[Path, bytes]]]:
    """The input and what a run that commits writes (keyed by file name)."""
    folder = tmp_path_factory.mktemp("reference")
    source = write_csv(folder / "in.csv", users(120, bad_every=9))
    assert PipeManager(_three_targets(folder, source)).run(timeout=60)
    yield source, {p: p.read_bytes() for p in _targets(folder)}


@pytest.mark.parametrize("step", STEPS)
def test_a_commit_killed_at_each_step_is_all_old_or_all_new_after_recovery(
    tmp_path: Path, step: str, reference: tuple[Path, dict[Path, bytes]]
):
    source, committed = reference
    new = {tmp_path / p.name: data for p, data in committed.items()}
    old = _old(tmp_path)
    code = _CHILD.format(
        tests=str(REPO / "tests"), step=step, folder=str(tmp_path), source=str(source)
    )
    child = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    after_crash = _state(tmp_path)
    for path, data in after_crash.items():
        assert data in (old[path], new[path]), f"{path.name} is neither old nor new after {step}"
    # Recovery: the next run on any one of the targets settles the dead run first (a crash
    # while cleaning up leaves only the primary folder, found by a run of its own target).
    settled_before = _settle_only(tmp_path / "b.csv")
    if step == "cleaning":
        settled_before = _settle_only(tmp_path / "a.errors.jsonl")
    recovered = _state(tmp_path)
    if step in ("prepared", "locked", "recorded-prepared"):
        assert recovered == old, f"after {step} the run was not decided: every target stays old"
    else:
        assert recovered == new, f"after {step} the run was decided: every target is new"
    assert settled_before, "recovery removed the dead run's staging folders"
    assert not _staging_left(tmp_path)


def _settle_only(target: Path) -> list[Path]:
    """What a next run on ``target`` does first (``Transaction.begin``): settle dead runs."""
    return transaction.clean_leftovers(target)


# -- full disk ----------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs (root only): writes past it fail with ENOSPC."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_while_writing_parts_fails_the_run_and_keeps_the_old_target(
    tmp_path: Path, small_disk: Path
):
    source = write_csv(tmp_path / "in.csv", users(40_000))  # about 3 MiB of JSON Lines out
    target = small_disk / "out.jsonl"
    target.write_text("old\n")
    manager = PipeManager.parallelize_pipe(
        Pipe(CSVInputAdapter(source), JSONOutputAdapter(target), User), workers=2
    )
    assert manager.run(timeout=120) is False
    assert manager.error is not None
    assert "No space left" in str(manager.error) or "ENOSPC" in str(manager.error)
    assert target.read_text() == "old\n"
    assert not list((small_disk / ".zoopipe-staging").glob("*.run-*"))


def test_a_full_disk_during_the_merge_is_a_commit_error_naming_the_target(
    tmp_path: Path, small_disk: Path
):
    # Parts of about 0.7 MiB each fit; merging them into a fourth copy does not.
    source = write_csv(tmp_path / "in.csv", users(18_000))
    target = small_disk / "out.jsonl"
    errors = small_disk / "errors.jsonl"
    target.write_text("old\n")
    errors.write_text("old errors\n")
    manager = PipeManager.parallelize_pipe(
        Pipe(CSVInputAdapter(source), JSONOutputAdapter(target), User, JSONOutputAdapter(errors)),
        workers=3,
    )
    assert manager.run(timeout=120) is False
    assert isinstance(manager.error, CommitError), manager.error
    assert str(target) in str(manager.error) and "merg" in str(manager.error)
    assert target.read_text() == "old\n" and errors.read_text() == "old errors\n"
    assert not list((small_disk / ".zoopipe-staging").glob("*.run-*"))


# -- the result file decides, not the progress record -------------------------------------------


def _corrupt_records_while_running(folder: str, stop: multiprocessing.synchronize.Event) -> None:
    while not stop.is_set():
        for record in Path(folder).glob("progress-*.rec"):
            try:
                with open(record, "r+b") as handle:
                    handle.write(os.urandom(64))
            except OSError:
                pass
        stop.wait(0.01)


def test_a_corrupt_progress_record_does_not_fail_a_run_whose_shards_succeeded(tmp_path: Path):
    from zoopipe_hpc.engines import MultiProcessEngine

    rows = [{"id": i, "name": "sleep0.002" if i % 50 == 0 else f"n{i}"} for i in range(600)]
    source = write_csv(tmp_path / "in.csv", rows)
    target = tmp_path / "out.jsonl"
    progress = tmp_path / "progress"
    progress.mkdir()
    engine = MultiProcessEngine(progress_dir=progress)
    manager = PipeManager.parallelize_pipe(
        Pipe(CSVInputAdapter(source), JSONOutputAdapter(target), Trigger), workers=3, engine=engine
    )
    stop = multiprocessing.get_context("fork").Event()
    vandal = multiprocessing.get_context("fork").Process(
        target=_corrupt_records_while_running, args=(str(progress), stop)
    )
    vandal.start()
    try:
        assert manager.run(timeout=120) is True, manager.error
    finally:
        stop.set()
        vandal.join(10)
    assert [r["id"] for r in read_jsonl(target)] == list(range(600))
    reports = manager.pipe_reports
    assert all(r.status is PipeStatus.COMPLETED for r in reports)
    assert manager.report.total_processed == 600
    named = [r.extra.get("progress_record", "") for r in reports]
    assert any("progress-" in text for text in named), named
