"""Iceberg output: one atomic, idempotent snapshot per run, on a real pyiceberg SQL catalog.

Row order: pyiceberg scans the data files of a snapshot in manifest order, which is the order
``add_files`` was given (the shard order); a whole-table scan lists the newest snapshot's files
first. Comparisons of order are therefore made within a run's snapshot.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _support import Trigger, User, read_jsonl, users, write_csv
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.table import Table, Transaction

from zoopipe_hpc import (
    CSVInputAdapter,
    IcebergOutputAdapter,
    JSONOutputAdapter,
    ParquetOutputAdapter,
    Pipe,
    PipeManager,
)
from zoopipe_hpc.adapters.iceberg import RUN_ID_PROPERTY
from zoopipe_hpc.commit import transaction
from zoopipe_hpc.coordinators import BaseCoordinator, FileMergeCoordinator, IcebergCoordinator
from zoopipe_hpc.engines import MultiProcessEngine
from zoopipe_hpc.errors import CommitError, ShardFailedError

TABLE = "lake.users"


def _adapter(warehouse: Path, **options: Any) -> IcebergOutputAdapter:
    return IcebergOutputAdapter(TABLE, warehouse=warehouse, **options)


def _pipe(source: Path, output: Any, errors: Path | None = None, model: Any = User) -> Pipe:
    return Pipe(
        CSVInputAdapter(source),
        output,
        model,
        error_output_adapter=JSONOutputAdapter(errors) if errors is not None else None,
    )


def _table(warehouse: Path, name: str = TABLE) -> Table:
    """The table as a separate reader sees it (a catalog connection of its own)."""
    catalog = SqlCatalog(
        "zoopipe", uri=f"sqlite:///{warehouse / 'catalog.db'}", warehouse=warehouse.as_uri()
    )
    return catalog.load_table(name)


def _runs(table: Table) -> list[str]:
    return [
        s.summary.additional_properties.get(RUN_ID_PROPERTY, "")
        for s in table.snapshots()
        if s.summary is not None
    ]


def _snapshot_rows(table: Table, run_id: str) -> list[dict[str, Any]]:
    """The rows appended by one run, in the order of its snapshot's files."""
    snapshot = next(
        s
        for s in table.snapshots()
        if s.summary is not None and s.summary.additional_properties.get(RUN_ID_PROPERTY) == run_id
    )
    rows: list[dict[str, Any]] = []
    for manifest in snapshot.manifests(table.io):
        if manifest.added_snapshot_id != snapshot.snapshot_id:
            continue
        for entry in manifest.fetch_manifest_entry(table.io):
            rows.extend(
                pq.read_table(entry.data_file.file_path.removeprefix("file://")).to_pylist()
            )
    return rows


def _referenced(table: Table) -> set[str]:
    return {row["file_path"].removeprefix("file://") for row in table.inspect.files().to_pylist()}


def _data_files(warehouse: Path) -> set[str]:
    return {str(p) for p in (warehouse / "lake.db" / "users" / "data").glob("*.parquet")}


def _staging(warehouse: Path) -> list[Path]:
    return list((warehouse / "lake.db" / "users" / ".zoopipe-staging").glob("data.run-*"))


def _reference(tmp_path: Path, source: Path) -> tuple[list[dict[str, Any]], list[Any]]:
    """Valid rows and error records of a plain single-pipe run to Parquet."""
    out, err = tmp_path / "reference.parquet", tmp_path / "reference_errors.jsonl"
    _pipe(source, ParquetOutputAdapter(out), err).run()
    return pq.read_table(out).to_pylist(), read_jsonl(err)


# -- single pipe -------------------------------------------------------------------------------


def test_single_pipe_creates_the_table_and_commits_one_snapshot(tmp_path: Path):
    source = write_csv(tmp_path / "in.csv", users(120, bad_every=7))
    warehouse = tmp_path / "wh"
    valid, invalid = _reference(tmp_path, source)
    report = _pipe(source, _adapter(warehouse, run_id="single-1"), tmp_path / "err.jsonl").run()
    assert report.success_count == len(valid) == 120 - len(range(0, 120, 7))
    assert report.error_count == len(invalid)
    assert read_jsonl(tmp_path / "err.jsonl") == invalid
    table = _table(warehouse)
    assert _runs(table) == ["single-1"]
    assert table.scan().to_arrow().to_pylist() == valid
    assert _data_files(warehouse) == _referenced(table)
    assert not _staging(warehouse)
    # A rerun with the same run id does not append again.
    _pipe(source, _adapter(warehouse, run_id="single-1"), tmp_path / "err.jsonl").run()
    assert _runs(_table(warehouse)) == ["single-1"]
    assert _table(warehouse).scan().to_arrow().num_rows == len(valid)


def test_merge_false_commits_one_snapshot_per_shard_each_idempotent(tmp_path: Path):
    source = write_csv(tmp_path / "in.csv", users(90))
    warehouse = tmp_path / "wh"

    def run() -> bool:
        pipe = _pipe(source, _adapter(warehouse, run_id="nightly"), None)
        return PipeManager.parallelize_pipe(pipe, workers=3, merge=False).run(timeout=60)

    assert run()
    expected = [f"nightly-part-{i:05d}" for i in range(3)]
    assert sorted(_runs(_table(warehouse))) == expected
    assert _table(warehouse).scan().to_arrow().num_rows == 90
    # Rerun with the same run id: every shard finds its own snapshot and appends nothing.
    assert run()
    assert sorted(_runs(_table(warehouse))) == expected
    assert _table(warehouse).scan().to_arrow().num_rows == 90


def test_a_table_that_does_not_fit_is_left_as_it_was(tmp_path: Path):
    warehouse = tmp_path / "wh"
    source = write_csv(tmp_path / "in.csv", users(30))
    catalog = _adapter(warehouse).catalog()
    catalog.create_namespace_if_not_exists("lake")
    catalog.create_table(TABLE, schema=pa.schema([("id", pa.string()), ("other", pa.int32())]))
    with pytest.raises(CommitError, match=r"lake\.users.*run r-bad.*shard 0"):
        _pipe(source, _adapter(warehouse, run_id="r-bad")).run()
    table = _table(warehouse)
    assert table.current_snapshot() is None
    assert not _data_files(warehouse) and not _staging(warehouse)


def test_create_false_needs_an_existing_table(tmp_path: Path):
    from zoopipe_hpc.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="does not exist"):
        _adapter(tmp_path / "wh", create=False)


# -- parallel runs -----------------------------------------------------------------------------


def test_parallel_run_is_one_snapshot_with_the_rows_of_one_pipe(tmp_path: Path):
    source = write_csv(tmp_path / "in.csv", users(3000, bad_every=13))
    warehouse = tmp_path / "wh"
    valid, invalid = _reference(tmp_path, source)
    _pipe(source, _adapter(warehouse), None).run()  # the table exists with one snapshot
    before = _table(warehouse)
    manager = PipeManager.parallelize_pipe(
        _pipe(source, _adapter(warehouse), tmp_path / "err.jsonl"),
        workers=3,
        engine=MultiProcessEngine(),
        run_id="par-1",
    )
    assert manager.run(timeout=120) is True
    assert isinstance(manager.coordinator.coordinators[-1], IcebergCoordinator)  # type: ignore[attr-defined]
    table = _table(warehouse)
    assert len(table.snapshots()) == len(before.snapshots()) + 1
    assert table.current_snapshot() is not None
    assert table.current_snapshot().parent_snapshot_id == before.current_snapshot().snapshot_id  # type: ignore[union-attr]
    assert _runs(table)[-1] == "par-1"
    assert _snapshot_rows(table, "par-1") == valid
    assert sorted(table.scan().to_arrow().column("id").to_pylist()) == sorted(
        [r["id"] for r in valid] * 2
    )
    assert read_jsonl(tmp_path / "err.jsonl") == invalid
    assert manager.report.success_count == len(valid)
    assert manager.report.error_count == len(invalid)
    names = sorted(Path(p).name for p in _referenced(table) if "par-1" in p)
    assert names == [f"zoopipe-par-1-{i:05d}.parquet" for i in range(3)]
    assert _data_files(warehouse) == _referenced(table)
    assert not _staging(warehouse)


def test_nothing_is_visible_before_the_commit(tmp_path: Path):
    warehouse = tmp_path / "wh"
    names = [f"n{i}" if i % 10 else "sleep0.05" for i in range(300)]
    source = write_csv(tmp_path / "in.csv", [{"id": i, "name": n} for i, n in enumerate(names)])
    _pipe(
        write_csv(tmp_path / "seed.csv", [{"id": 0, "name": "x"}]),
        _adapter(warehouse),
        None,
        Trigger,
    ).run()
    snapshots = len(_table(warehouse).snapshots())
    manager = PipeManager.parallelize_pipe(
        _pipe(source, _adapter(warehouse), None, Trigger), workers=3, run_id="slow"
    )
    manager.start()
    seen = []
    while not manager.report.is_finished:
        table = _table(warehouse)
        seen.append((len(table.snapshots()), table.scan().to_arrow().num_rows))
        time.sleep(0.1)
    assert manager.run(timeout=120) is True
    assert len(seen) >= 3 and set(seen) == {(snapshots, 1)}
    assert len(_table(warehouse).snapshots()) == snapshots + 1
    assert _table(warehouse).scan().to_arrow().num_rows == 301


def test_a_failing_shard_leaves_the_table_unchanged_and_removes_the_parts(tmp_path: Path):
    warehouse = tmp_path / "wh"
    rows = [{"id": i, "name": "boom" if i == 250 else f"n{i}"} for i in range(300)]
    source = write_csv(tmp_path / "in.csv", rows)
    _pipe(write_csv(tmp_path / "seed.csv", rows[:5]), _adapter(warehouse), None, Trigger).run()
    before = _table(warehouse)
    files_before = _data_files(warehouse)
    manager = PipeManager.parallelize_pipe(
        _pipe(source, _adapter(warehouse), tmp_path / "err.jsonl", Trigger), workers=3
    )
    assert manager.run(timeout=120) is False
    assert isinstance(manager.error, ShardFailedError)
    assert list(manager.error.failures) == [2]  # type: ignore[attr-defined]
    assert "shard 2" in str(manager.error)
    after = _table(warehouse)
    assert after.current_snapshot() == before.current_snapshot()
    assert after.metadata_location == before.metadata_location
    assert _data_files(warehouse) == files_before
    assert not _staging(warehouse)
    assert not (tmp_path / "err.jsonl").exists()


def test_a_missing_part_fails_the_commit_naming_table_run_and_shard(tmp_path: Path):
    warehouse = tmp_path / "wh"
    source = write_csv(tmp_path / "in.csv", users(90))
    pipe = _pipe(source, _adapter(warehouse), None)

    class LoseAPart(BaseCoordinator):
        priority = 200  # before the commit (100)

        def on_finish(self, manager: Any, results: Any) -> None:
            for target in manager.plan.transaction.targets:
                for part in target.staging.path.glob("part-00001*"):
                    part.unlink()

    manager = PipeManager.parallelize_pipe(pipe, workers=3, run_id="gone", coordinator=LoseAPart())
    assert manager.run(timeout=120) is False
    assert isinstance(manager.error, CommitError)
    message = str(manager.error)
    assert "shard 1" in message and "lake.users" in message and "run gone" in message
    assert _table_or_none(warehouse) is None or _table(warehouse).current_snapshot() is None
    assert not _staging(warehouse) and not _data_files(warehouse)


def _table_or_none(warehouse: Path) -> Table | None:
    from pyiceberg.exceptions import NoSuchTableError

    try:
        return _table(warehouse)
    except NoSuchTableError:
        return None


def test_on_error_removes_the_parts_and_leaves_the_table(tmp_path: Path):
    warehouse = tmp_path / "wh"
    _pipe(write_csv(tmp_path / "seed.csv", users(5)), _adapter(warehouse), None).run()
    before = _table(warehouse).metadata_location
    pipe = _pipe(
        write_csv(tmp_path / "in.csv", users(5)), _adapter(warehouse), tmp_path / "e.jsonl"
    )
    plan = PipeManager.shard_layout(pipe, 2).plan("abandon")
    coordinator = IcebergCoordinator(plan.transaction)
    coordinator.on_start(None)
    parts = [p.output_adapter.path for p in plan.pipes]
    parts += [p.error_output_adapter.path for p in plan.pipes if p.error_output_adapter]
    for part in parts:
        part.write_bytes(b"partial")
    coordinator.on_error(None, RuntimeError("a shard failed"))
    assert not any(p.exists() for p in parts)
    assert not _staging(warehouse)
    assert not list((tmp_path / ".zoopipe-staging").glob("e.jsonl.run-*"))
    assert _table(warehouse).metadata_location == before


def test_files_are_merged_by_file_merge_coordinator(tmp_path: Path):
    source = write_csv(tmp_path / "in.csv", users(10))
    manager = PipeManager.parallelize_pipe(
        _pipe(source, JSONOutputAdapter(tmp_path / "out.jsonl")), workers=2
    )
    assert manager.run(timeout=120)
    coordinator = manager.coordinator.coordinators[-1]  # type: ignore[attr-defined]
    assert type(coordinator) is FileMergeCoordinator


# -- crashes -----------------------------------------------------------------------------------

#: Where a commit is interrupted: (class, method, whether the original runs before the crash),
#: or a step of the run's transaction (``transaction._step`` names).
STEPS: dict[str, tuple[type, str, bool] | str] = {
    "after-prepare": "prepared",
    "after-record": "recorded",
    "before-moving-parts": (IcebergOutputAdapter, "_publish_files", False),
    "before-add-files": (IcebergOutputAdapter, "_append", False),
    "after-catalog-commit": (IcebergOutputAdapter, "_append", True),
    "during-cleanup": "cleaning",
}
#: The steps after which the table already has the run when the process dies.
LANDED = ("after-catalog-commit", "after-record", "during-cleanup")


def _crashing(step: str, crash: Callable[[], None]) -> None:
    where = STEPS[step]
    if isinstance(where, str):

        def at_step(name: str) -> None:
            if name == where:
                crash()

        transaction._step = at_step
        return
    cls, name, run_first = where
    original = getattr(cls, name)

    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if run_first:
            original(self, *args, **kwargs)
        crash()
        return original(self, *args, **kwargs)

    setattr(cls, name, wrapper)


def _die() -> None:
    os._exit(17)


def _run_and_die(source: str, warehouse: str, errors: str, step: str) -> None:
    _crashing(step, _die)
    pipe = _pipe(Path(source), _adapter(Path(warehouse)), Path(errors))
    PipeManager.parallelize_pipe(pipe, workers=3, run_id="crashy").run(timeout=120)
    os._exit(0)


class _Injected(RuntimeError):
    pass


def _raise() -> None:
    raise _Injected("injected failure")


def _check_exactly_once(tmp_path: Path, warehouse: Path, source: Path) -> None:
    valid, invalid = _reference(tmp_path, source)
    pipe = _pipe(source, _adapter(warehouse), tmp_path / "err.jsonl")
    manager = PipeManager.parallelize_pipe(pipe, workers=3, run_id="crashy")
    assert manager.run(timeout=120) is True, manager.error
    table = _table(warehouse)
    assert _runs(table) == ["crashy"]
    assert table.scan().to_arrow().to_pylist() == valid
    assert read_jsonl(tmp_path / "err.jsonl") == invalid
    assert _data_files(warehouse) == _referenced(table)
    assert not _staging(warehouse)


@pytest.mark.parametrize("step", list(STEPS))
def test_a_process_killed_at_each_step_then_rerun_commits_exactly_once(tmp_path: Path, step: str):
    warehouse = tmp_path / "wh"
    source = write_csv(tmp_path / "in.csv", users(900, bad_every=11))
    errors = tmp_path / "err.jsonl"
    child = multiprocessing.get_context("fork").Process(
        target=_run_and_die, args=(str(source), str(warehouse), str(errors), step)
    )
    child.start()
    child.join(120)
    assert child.exitcode == 17
    committed = _table_or_none(warehouse)
    runs = _runs(committed) if committed is not None else []
    assert runs == (["crashy"] if step in LANDED else [])
    _check_exactly_once(tmp_path, warehouse, source)


@pytest.mark.parametrize("step", [s for s in STEPS if s != "during-cleanup"])
def test_an_exception_at_each_step_then_rerun_commits_exactly_once(
    tmp_path: Path, step: str, monkeypatch: pytest.MonkeyPatch
):
    warehouse = tmp_path / "wh"
    source = write_csv(tmp_path / "in.csv", users(600, bad_every=11))
    where = STEPS[step]
    with monkeypatch.context() as patch:
        if isinstance(where, str):
            patch.setattr(transaction, "_step", transaction._step)  # restored on exit
        else:
            patch.setattr(where[0], where[1], getattr(where[0], where[1]))
        _crashing(step, _raise)
        pipe = _pipe(source, _adapter(warehouse), tmp_path / "err.jsonl")
        manager = PipeManager.parallelize_pipe(pipe, workers=3, run_id="crashy")
        ok = manager.run(timeout=120)
    # An exception is a failed commit: run() says so, and names it.
    assert ok is False
    assert manager.error is not None and "injected failure" in str(manager.error)
    table = _table_or_none(warehouse)
    if step == "after-prepare":
        assert table is None or table.current_snapshot() is None
        assert not _staging(warehouse)  # rolled back
    if step in ("before-moving-parts", "before-add-files"):
        assert table is None or table.current_snapshot() is None
        assert not _data_files(warehouse)  # moved parts of an unsuccessful commit are removed
    _check_exactly_once(tmp_path, warehouse, source)


# -- concurrency -------------------------------------------------------------------------------


def test_two_writers_at_once_both_land_exactly_once(tmp_path: Path):
    warehouse = tmp_path / "wh"
    _pipe(write_csv(tmp_path / "seed.csv", users(1)), _adapter(warehouse), None).run()
    sources = [
        write_csv(
            tmp_path / "a.csv", [{"id": i, "name": f"a{i}", "score": 1.0} for i in range(2000)]
        ),
        write_csv(
            tmp_path / "b.csv", [{"id": i, "name": f"b{i}", "score": 2.0} for i in range(1500)]
        ),
    ]
    outcomes: dict[str, bool] = {}

    def write(tag: str, source: Path) -> None:
        for round_ in range(3):
            run_id = f"{tag}-{round_}"
            manager = PipeManager.parallelize_pipe(
                _pipe(source, _adapter(warehouse), None), workers=2, run_id=run_id
            )
            outcomes[run_id] = manager.run(timeout=120)

    threads = [
        threading.Thread(target=write, args=(t, s)) for t, s in zip("ab", sources, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert outcomes and all(outcomes.values()), outcomes
    table = _table(warehouse)
    runs = _runs(table)
    assert sorted(runs[1:]) == sorted(outcomes) and len(runs) == 7
    names = table.scan().to_arrow().column("name").to_pylist()
    for tag, count in (("a", 2000), ("b", 1500)):
        mine = [n for n in names if n.startswith(tag)]
        assert len(mine) == 3 * count and len(set(mine)) == count
    for run_id in outcomes:
        assert len(_snapshot_rows(table, run_id)) == (2000 if run_id[0] == "a" else 1500)


def _create_at_once(warehouse: str, own_catalog: bool, barrier: Any, failures: Any) -> None:
    try:
        barrier.wait(30)
        if own_catalog:  # no lock of ours: the lost race must be tolerated
            catalog = SqlCatalog(
                "own", uri=f"sqlite:///{warehouse}/own.db", warehouse=Path(warehouse).as_uri()
            )
            adapter = IcebergOutputAdapter(TABLE, catalog=catalog)
        else:
            adapter = _adapter(Path(warehouse))  # opens the catalog: may create its SQL tables
        barrier.wait(30)
        adapter.load_table(pa.schema([("id", pa.int64()), ("name", pa.string())]))
    except BaseException as exc:  # reported to the test, which names it
        failures.put(f"{type(exc).__name__}: {exc}")
        raise


@pytest.mark.parametrize("own_catalog", [False, True], ids=["embedded", "own-catalog"])
def test_writers_creating_the_catalog_namespace_and_table_at_once_all_succeed(
    tmp_path: Path, own_catalog: bool
):
    """Shards of a first ``merge=False`` run all create the same catalog, namespace and table."""
    warehouse = tmp_path / "wh"
    warehouse.mkdir()
    if own_catalog:  # the user's catalog exists already; its namespace and table do not
        SqlCatalog("own", uri=f"sqlite:///{warehouse}/own.db", warehouse=warehouse.as_uri())
    context = multiprocessing.get_context("spawn")
    writers = 4
    barrier = context.Barrier(writers)
    failures = context.Queue()
    processes = [
        context.Process(
            target=_create_at_once, args=(str(warehouse), own_catalog, barrier, failures)
        )
        for _ in range(writers)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
    messages = []
    while not failures.empty():
        messages.append(failures.get())
    assert not messages, messages
    assert [p.exitcode for p in processes] == [0] * writers
    table = (
        SqlCatalog("own", uri=f"sqlite:///{warehouse}/own.db").load_table(TABLE)
        if own_catalog
        else _table(warehouse)
    )
    assert table.schema().column_names == ["id", "name"]
    assert table.current_snapshot() is None


def test_a_commit_that_loses_a_race_is_refreshed_and_retried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """Writer A loads the table, writer B commits, then A commits: a real catalog conflict."""
    warehouse = tmp_path / "wh"
    source = write_csv(tmp_path / "in.csv", users(200))
    _pipe(source, _adapter(warehouse), None).run()
    other = _adapter(warehouse, run_id="b")
    first = _adapter(warehouse, run_id="a")
    original = first._append

    def b_commits_in_between(table: Table, files: Any, run_id: str) -> int:
        _pipe(source, other).run()
        return original(table, files, run_id)

    first._append = b_commits_in_between  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING):
        _pipe(source, first).run()
    assert "concurrent" in caplog.text
    table = _table(warehouse)
    assert sorted(_runs(table)[1:]) == ["a", "b"]
    assert table.scan().to_arrow().num_rows == 600


def test_a_forced_commit_failure_is_refreshed_and_retried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
):
    warehouse = tmp_path / "wh"
    source = write_csv(tmp_path / "in.csv", users(300, bad_every=9))
    valid, _ = _reference(tmp_path, source)
    original = Transaction.commit_transaction
    calls = []

    def fail_once(self: Transaction) -> Table:
        calls.append(1)
        if len(calls) == 1:
            raise CommitFailedException("forced by the test")
        return original(self)

    monkeypatch.setattr(Transaction, "commit_transaction", fail_once)
    manager = PipeManager.parallelize_pipe(
        _pipe(source, _adapter(warehouse, retry_backoff=0.01), None), workers=3, run_id="retry"
    )
    with caplog.at_level(logging.WARNING, logger="zoopipe_hpc"):
        assert manager.run(timeout=120) is True
    assert "lost to a concurrent commit" in caplog.text and "refreshing and retrying" in caplog.text
    table = _table(warehouse)
    assert _runs(table) == ["retry"]
    assert table.scan().to_arrow().to_pylist() == valid


def test_a_commit_that_keeps_failing_is_rolled_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    warehouse = tmp_path / "wh"
    source = write_csv(tmp_path / "in.csv", users(60))
    _pipe(source, _adapter(warehouse), None).run()
    before = _table(warehouse).metadata_location
    files_before = _data_files(warehouse)

    def always_fail(self: Transaction) -> Table:
        raise CommitFailedException("forced by the test")

    monkeypatch.setattr(Transaction, "commit_transaction", always_fail)
    manager = PipeManager.parallelize_pipe(
        _pipe(source, _adapter(warehouse, commit_retries=2, retry_backoff=0.01), None),
        workers=2,
        run_id="doomed",
    )
    assert manager.run(timeout=120) is False
    assert isinstance(manager.error, CommitError)
    assert "lake.users" in str(manager.error) and "run doomed" in str(manager.error)
    assert "3 attempts" in str(manager.error)
    assert _table(warehouse).metadata_location == before
    assert _data_files(warehouse) == files_before
    assert not _staging(warehouse)


# -- packaging ---------------------------------------------------------------------------------


def test_importing_the_package_does_not_import_pyiceberg():
    code = (
        "import sys, zoopipe_hpc, zoopipe_hpc.adapters, zoopipe_hpc.coordinators;"
        "print('pyiceberg' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_adapter_travels_without_its_catalog_connection(tmp_path: Path):
    import pickle

    adapter = _adapter(tmp_path / "wh")
    adapter.catalog()
    clone = pickle.loads(pickle.dumps(adapter))
    assert clone._catalog is None and clone.location == adapter.location
    assert clone.catalog().name == "zoopipe"
