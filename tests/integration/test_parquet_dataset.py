"""Parquet dataset output (issue 14): ``ParquetOutputAdapter(path, layout="dataset")`` commits
the shards' part files as one folder, published atomically with the run's other targets.

A dataset target is a symbolic link to its version folder ``<name>.v-<run id>/``; the commit
renames a new link over it. Proofs: a sharded run reads back (pyarrow.dataset) as one pipe's
rows in order; a failed shard leaves the previous dataset; a process killed at each step of
the commit leaves the old or the new dataset, never a mix, and all old or all new after
recovery; a concurrent reader never sees a partial dataset; the strategy conformance suite.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from _support import Trigger, User, read_jsonl, users, write_csv

from zoopipe_hpc import CSVInputAdapter, JSONOutputAdapter, ParquetOutputAdapter, Pipe, PipeManager
from zoopipe_hpc.adapters.base import BaseOutputAdapter
from zoopipe_hpc.commit import transaction
from zoopipe_hpc.errors import CommitError, ConfigurationError
from zoopipe_hpc.jobs.config import DataSpec
from zoopipe_hpc.testing import CommitStrategyConformance

REPO = Path(__file__).resolve().parents[2]


def _read(path: Path) -> list[dict[str, Any]] | None:
    """The dataset's rows through pyarrow.dataset, resolving the link once (None: no dataset)."""
    if not os.path.lexists(path):
        return None
    return ds.dataset(os.path.realpath(path), format="parquet").to_table().to_pylist()  # type: ignore[no-any-return]


def _versions(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.glob(f"{path.name}.v-*"))


def _staging_left(folder: Path) -> list[Path]:
    return sorted((folder / ".zoopipe-staging").glob("*.run-*"))


def test_a_sharded_dataset_reads_back_as_one_pipes_rows_in_order(tmp_path: Path) -> None:
    source = write_csv(tmp_path / "in.csv", users(400, bad_every=13))
    single = tmp_path / "single.parquet"
    assert Pipe(CSVInputAdapter(source), ParquetOutputAdapter(single), User).run()
    target = tmp_path / "users"
    pipe = Pipe(CSVInputAdapter(source), ParquetOutputAdapter(target, layout="dataset"), User)
    assert PipeManager.parallelize_pipe(pipe, workers=4).run(timeout=120)
    assert target.is_symlink() and os.readlink(target).startswith("users.v-")
    files = sorted(os.listdir(target))
    assert len(files) == 4 and all(f.startswith("part-0000") for f in files), files
    assert _read(target) == pq.read_table(single).to_pylist()
    assert ds.dataset(target).to_table().num_rows == len(_read(target) or [])  # by the link too
    assert not _staging_left(tmp_path)


def test_a_second_run_replaces_the_dataset_and_removes_the_old_version(tmp_path: Path) -> None:
    target = tmp_path / "users"
    for n in (50, 30):
        source = write_csv(tmp_path / "in.csv", users(n))
        pipe = Pipe(CSVInputAdapter(source), ParquetOutputAdapter(target, layout="dataset"), User)
        assert PipeManager.parallelize_pipe(pipe, workers=3).run(timeout=120)
        assert [r["id"] for r in _read(target) or []] == list(range(n))
        assert _versions(target) == [os.readlink(target)], "only the current version is kept"


def test_a_failed_shard_leaves_the_previous_dataset_intact(tmp_path: Path) -> None:
    target = tmp_path / "users"
    good = write_csv(tmp_path / "good.csv", [{"id": i, "name": f"n{i}"} for i in range(40)])
    first = Pipe(CSVInputAdapter(good), ParquetOutputAdapter(target, layout="dataset"), Trigger)
    assert PipeManager.parallelize_pipe(first, workers=2).run(timeout=120)
    before, version = _read(target), os.readlink(target)
    bad = write_csv(
        tmp_path / "bad.csv", [{"id": i, "name": "boom" if i == 35 else "x"} for i in range(40)]
    )
    second = Pipe(CSVInputAdapter(bad), ParquetOutputAdapter(target, layout="dataset"), Trigger)
    assert PipeManager.parallelize_pipe(second, workers=2).run(timeout=120) is False
    assert _read(target) == before and os.readlink(target) == version
    assert _versions(target) == [version]
    assert not _staging_left(tmp_path)


def test_the_file_layout_is_the_default_and_a_bad_layout_is_refused(tmp_path: Path) -> None:
    assert ParquetOutputAdapter(tmp_path / "x.parquet").commit_strategy == "file"
    with pytest.raises(ConfigurationError, match="layout"):
        ParquetOutputAdapter(tmp_path / "x", layout="folder")  # type: ignore[arg-type]


def test_a_plain_folder_at_the_target_is_refused_before_any_work(tmp_path: Path) -> None:
    target = tmp_path / "users"
    target.mkdir()
    (target / "mine.txt").write_text("keep me")
    source = write_csv(tmp_path / "in.csv", users(10))
    pipe = Pipe(CSVInputAdapter(source), ParquetOutputAdapter(target, layout="dataset"), User)
    with pytest.raises(CommitError, match="not a dataset version link"):
        PipeManager.parallelize_pipe(pipe, workers=2).run(timeout=120)
    assert (target / "mine.txt").read_text() == "keep me"


# -- a crash at each step of the commit ------------------------------------------------------------

#: Targets (in path order): a.errors.jsonl, users (the dataset) -> published:0, published:1.
STEPS = [
    "prepared",
    "locked",
    "recorded-prepared",
    "recorded",
    "published:0",
    "published:1",
    "cleaning",
]

_CHILD = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, {tests!r})
    from pathlib import Path
    from _support import User
    from zoopipe_hpc import (
        CSVInputAdapter, JSONOutputAdapter, ParquetOutputAdapter, Pipe, PipeManager,
    )
    from zoopipe_hpc.commit import transaction

    def die_at(name):
        if name == {step!r}:
            os.kill(os.getpid(), 9)

    transaction._step = die_at
    folder = Path({folder!r})
    pipe = Pipe(CSVInputAdapter(Path({source!r})),
                ParquetOutputAdapter(folder / "users", layout="dataset"), User,
                JSONOutputAdapter(folder / "a.errors.jsonl"))
    PipeManager.parallelize_pipe(pipe, workers=3).run(timeout=60)
    sys.exit(3)  # the step was never reached
    """
)


def _run_dataset(folder: Path, source: Path) -> None:
    pipe = Pipe(
        CSVInputAdapter(source),
        ParquetOutputAdapter(folder / "users", layout="dataset"),
        User,
        JSONOutputAdapter(folder / "a.errors.jsonl"),
    )
    assert PipeManager.parallelize_pipe(pipe, workers=3).run(timeout=120)


def _state(folder: Path) -> tuple[list[dict[str, Any]] | None, list[dict[str, Any]] | None]:
    errors = folder / "a.errors.jsonl"
    return _read(folder / "users"), read_jsonl(errors) if errors.exists() else None


def _comparable(
    state: tuple[list[dict[str, Any]] | None, list[dict[str, Any]] | None],
) -> tuple[Any, Any]:
    rows, errors = state
    return rows, [(e.get("line"), e.get("record")) for e in errors or []]


@pytest.mark.parametrize("step", STEPS)
def test_a_commit_killed_at_each_step_leaves_old_or_new_and_recovery_settles_it(
    tmp_path: Path, step: str
) -> None:
    old_source = write_csv(tmp_path / "old.csv", users(30, bad_every=7))
    _run_dataset(tmp_path, old_source)
    old = _comparable(_state(tmp_path))
    new_source = write_csv(tmp_path / "new.csv", users(90, bad_every=11))
    reference = tmp_path / "reference"
    reference.mkdir()
    _run_dataset(reference, new_source)
    new = _comparable(_state(reference))
    code = _CHILD.format(
        tests=str(REPO / "tests"), step=step, folder=str(tmp_path), source=str(new_source)
    )
    child = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    rows, errors = _comparable(_state(tmp_path))
    assert rows in (old[0], new[0]), f"the dataset is a mix after {step}"
    assert errors in (old[1], new[1]), f"the error output is neither old nor new after {step}"
    settled = transaction.clean_leftovers(tmp_path / "users")  # what the next run does first
    if step == "cleaning":
        settled = transaction.clean_leftovers(tmp_path / "a.errors.jsonl")
    recovered = _comparable(_state(tmp_path))
    if step in ("prepared", "locked", "recorded-prepared"):
        assert recovered == old, f"after {step} the run was not decided: all old"
    else:
        assert recovered == new, f"after {step} the run was decided: all new"
    assert settled, "recovery removed the dead run's staging folders"
    assert not _staging_left(tmp_path)
    assert _versions(tmp_path / "users") == [os.readlink(tmp_path / "users")]


# -- a concurrent reader ---------------------------------------------------------------------------


def test_a_concurrent_reader_never_sees_a_partial_dataset(tmp_path: Path) -> None:
    """Runs of 40, 80, 120... rows replace the dataset while a thread reads it in a loop, both
    by resolving the link once and through the link itself: every read that succeeds is one
    whole run's rows (a read through the link that straddles a swap fails instead: the
    versions' files have names of their own)."""
    target = tmp_path / "users"
    sizes = [40 * k for k in range(1, 7)]
    expected = {n: list(range(n)) for n in sizes}
    seen: list[list[int]] = []
    failures: list[BaseException] = []
    done = threading.Event()

    def read_loop() -> None:
        while not done.is_set():
            for path in (os.path.realpath(target), str(target)):
                try:
                    table = ds.dataset(path, format="parquet").to_table(columns=["id"])
                except FileNotFoundError:
                    continue  # a read that straddled a swap: an error, never a mix
                except pa.ArrowInvalid as exc:
                    # The old version's folder listed while it was being emptied: no file at
                    # all, so no column; an error too, never a mix.
                    if "No match for FieldRef" not in str(exc):
                        failures.append(exc)
                        return
                    continue
                except BaseException as exc:  # noqa: BLE001 - reported by the test below
                    failures.append(exc)
                    return
                seen.append(table.column("id").to_pylist())

    first = write_csv(tmp_path / "in.csv", users(sizes[0]))
    pipe = Pipe(CSVInputAdapter(first), ParquetOutputAdapter(target, layout="dataset"), User)
    assert PipeManager.parallelize_pipe(pipe, workers=2).run(timeout=120)
    reader = threading.Thread(target=read_loop)
    reader.start()
    try:
        for n in sizes[1:]:
            source = write_csv(tmp_path / f"in{n}.csv", users(n))
            pipe = Pipe(
                CSVInputAdapter(source), ParquetOutputAdapter(target, layout="dataset"), User
            )
            assert PipeManager.parallelize_pipe(pipe, workers=3).run(timeout=120)
    finally:
        done.set()
        reader.join()
    assert not failures, f"the reader failed otherwise than 'no such file': {failures}"
    assert len({len(ids) for ids in seen}) >= 2, "the reader read across at least one swap"
    for ids in seen:
        assert ids in expected.values(), f"a partial or mixed dataset of {len(ids)} rows"


# -- the conformance suite -------------------------------------------------------------------------


class TestParquetDataset(CommitStrategyConformance):
    def make_adapter(self, tmp_path: Path) -> BaseOutputAdapter:
        return ParquetOutputAdapter(tmp_path / "out", layout="dataset")

    def read_target(self, adapter: BaseOutputAdapter) -> list[dict[str, Any]]:
        return _read(adapter.path) or []


def test_duckdb_reads_the_dataset_through_its_link(tmp_path: Path) -> None:
    duckdb = pytest.importorskip("duckdb")
    source = write_csv(tmp_path / "in.csv", users(120))
    target = tmp_path / "users"
    pipe = Pipe(CSVInputAdapter(source), ParquetOutputAdapter(target, layout="dataset"), User)
    assert PipeManager.parallelize_pipe(pipe, workers=3).run(timeout=120)
    query = f"SELECT id FROM read_parquet('{target}/*.parquet') ORDER BY filename, file_row_number"
    ids = [row[0] for row in duckdb.connect().sql(query).fetchall()]
    assert ids == list(range(120))


def test_an_undone_commit_with_its_parts_kept_commits_again(tmp_path: Path) -> None:
    """A durable job whose commit died before its decision is undone with its staged parts
    kept (``recover(keep_undone=True)``) and commits again without rerunning its shards:
    prepare links the parts, so they are still there, and a second prepare starts afresh."""
    adapter = ParquetOutputAdapter(tmp_path / "out", layout="dataset")
    suite = TestParquetDataset()
    chunks = [suite.rows(0, 4), suite.rows(4, 3)]
    run, outcomes = suite._run(adapter, chunks, run_id="durable")
    target = run.targets[0]
    target.strategy.prepare(run.files_for(target, outcomes))  # then the process died
    assert _read(adapter.path) is None, "nothing visible"
    run.commit(outcomes)  # the job's next process commits the same outcomes
    assert _read(adapter.path) == chunks[0] + chunks[1]


def _commit_rows(target: Path, folder: Path, n: int, workers: int) -> None:
    source = write_csv(folder / f"in-{n}.csv", users(n))
    pipe = Pipe(CSVInputAdapter(source), ParquetOutputAdapter(target, layout="dataset"), User)
    assert PipeManager.parallelize_pipe(pipe, workers=workers).run(timeout=120)


def test_a_read_listed_before_a_swap_fails_instead_of_mixing(tmp_path: Path) -> None:
    """pyarrow lists the folder when a dataset is made and opens the files when it is read: a
    read planned on the old version and run after the swap fails with "no such file" (the new
    version's files have other names), and so does one bound to the old version's real path
    (removed by the swap). DuckDB expands its glob when the query runs: a relation made before
    the swap reads the new version, whole."""
    target = tmp_path / "users"
    _commit_rows(target, tmp_path, 60, 3)
    through_link = ds.dataset(target, format="parquet")
    resolved = ds.dataset(os.path.realpath(target), format="parquet")
    duckdb = pytest.importorskip("duckdb")
    connection = duckdb.connect()
    relation = connection.sql(f"SELECT count(*) FROM read_parquet('{target}/*.parquet')")
    _commit_rows(target, tmp_path, 90, 3)
    with pytest.raises(FileNotFoundError):
        through_link.to_table()
    with pytest.raises(FileNotFoundError):
        resolved.to_table()
    assert relation.fetchall() == [(90,)]
    assert ds.dataset(target, format="parquet").to_table().num_rows == 90  # planned anew


def test_a_file_at_the_target_is_replaced_by_the_dataset(tmp_path: Path) -> None:
    target = tmp_path / "users"
    source = write_csv(tmp_path / "in.csv", users(20))
    assert Pipe(CSVInputAdapter(source), ParquetOutputAdapter(target), User).run()
    assert target.is_file()
    _commit_rows(target, tmp_path, 30, 2)
    assert target.is_symlink() and [r["id"] for r in _read(target) or []] == list(range(30))


def test_a_job_file_asks_for_the_dataset_layout_through_its_options(tmp_path: Path) -> None:
    spec = DataSpec(format="parquet", path="out/users", options={"layout": "dataset"})
    adapter = spec.output_adapter(tmp_path)
    assert isinstance(adapter, ParquetOutputAdapter)
    assert (adapter.layout, adapter.commit_strategy) == ("dataset", "dataset")
