"""Parquet input of a dataset folder (issue 14): ``ParquetInputAdapter(folder)`` reads a flat
folder, a hive-partitioned tree (partition values become fields) or a
``ParquetOutputAdapter(layout="dataset")`` target, resolved once so that every shard reads one
version; files in sorted path order; shards spread row groups, balanced by rows."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _support import User, read_jsonl, users, write_csv
from pydantic import BaseModel

from zoopipe_hpc import (
    CSVInputAdapter,
    JSONOutputAdapter,
    ParquetInputAdapter,
    ParquetOutputAdapter,
    Pipe,
    PipeManager,
)
from zoopipe_hpc.adapters.base import BaseInputAdapter
from zoopipe_hpc.errors import ConfigurationError, InputError
from zoopipe_hpc.testing import InputAdapterConformance
from zoopipe_hpc.testing.data import Record


class Sale(BaseModel):
    id: int
    amount: float
    year: int
    month: int


def _records(adapter: BaseInputAdapter) -> list[dict[str, Any]]:
    return [r for batch in adapter.batches() for r in batch.records]


def _write(path: Path, rows: list[dict[str, Any]], row_group_size: int = 4) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=row_group_size)


def _hive(root: Path) -> list[dict[str, Any]]:
    """A hive tree of sales; the records as read, in sorted path order."""
    expected: list[dict[str, Any]] = []
    next_id = 0
    for year, month, count in ((2024, "02", 9), (2023, "12", 5), (2024, "01", 13)):
        rows = [{"id": next_id + i, "amount": (next_id + i) / 4} for i in range(count)]
        next_id += count
        _write(root / f"year={year}" / f"month={month}" / "part-0.parquet", rows)
    for year, month in ((2023, "12"), (2024, "01"), (2024, "02")):
        part = pq.read_table(root / f"year={year}" / f"month={month}" / "part-0.parquet")
        expected.extend({**r, "year": year, "month": int(month)} for r in part.to_pylist())
    return expected


def test_a_flat_folder_reads_its_files_in_sorted_order(tmp_path: Path) -> None:
    folder = tmp_path / "flat"
    for name, start in (("b.parquet", 10), ("a.parquet", 0), ("c.parquet", 20)):
        _write(folder / name, [{"id": i, "name": f"n{i}"} for i in range(start, start + 10)])
    (folder / "_SUCCESS").write_text("")
    (folder / "notes.txt").write_text("not parquet")
    adapter = ParquetInputAdapter(folder, batch_size=4)
    assert [r["id"] for r in _records(adapter)] == list(range(30))
    assert adapter.paths == [folder / n for n in ("a.parquet", "b.parquet", "c.parquet")]
    assert max(len(b) for b in adapter.batches()) <= 4
    assert adapter.max_shards(100) == 9  # 3 row groups in each file
    adapter.check()


def test_a_hive_tree_gives_partition_values_as_typed_fields(tmp_path: Path) -> None:
    root = tmp_path / "sales"
    expected = _hive(root)
    adapter = ParquetInputAdapter(root)
    records = _records(adapter)
    assert records == expected
    assert records[0]["month"] == 12 and isinstance(records[0]["year"], int)  # inferred, not "12"
    out = tmp_path / "out.jsonl"
    report = Pipe(adapter, JSONOutputAdapter(out), Sale).run()
    assert report.success_count == len(expected) and report.error_count == 0
    assert read_jsonl(out) == expected


def test_columns_may_name_partition_fields(tmp_path: Path) -> None:
    root = tmp_path / "sales"
    expected = _hive(root)
    adapter = ParquetInputAdapter(root, columns=["month", "id"])
    assert _records(adapter) == [{"month": r["month"], "id": r["id"]} for r in expected]


@pytest.mark.parametrize("workers", [2, 3, 7])
def test_shards_spread_row_groups_balanced_and_hold_every_record_once(
    tmp_path: Path, workers: int
) -> None:
    root = tmp_path / "sales"
    expected = _hive(root)
    shards = ParquetInputAdapter(root, batch_size=3).split(workers)
    assert len(shards) == workers
    parts = [_records(s) for s in shards]
    assert [r for part in parts for r in part] == expected
    assert all(s.source == str(root) for s in shards)
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 2 * 4  # rows of a row group or two, no more


def test_a_sharded_run_equals_one_pipe(tmp_path: Path) -> None:
    root = tmp_path / "sales"
    expected = _hive(root)
    single = tmp_path / "single.jsonl"
    assert Pipe(ParquetInputAdapter(root), JSONOutputAdapter(single), Sale).run()
    sharded = tmp_path / "sharded.jsonl"
    pipe = Pipe(ParquetInputAdapter(root, batch_size=5), JSONOutputAdapter(sharded), Sale)
    manager = PipeManager.parallelize_pipe(pipe, workers=3)
    assert manager.run(timeout=120), manager.error
    assert read_jsonl(sharded) == read_jsonl(single) == expected


def _dataset(tmp_path: Path, target: Path, rows: list[dict[str, Any]], name: str) -> None:
    source = write_csv(tmp_path / f"{name}.csv", rows)
    pipe = Pipe(CSVInputAdapter(source), ParquetOutputAdapter(target, layout="dataset"), User)
    manager = PipeManager.parallelize_pipe(pipe, workers=3)
    assert manager.run(timeout=120), manager.error


def test_a_dataset_output_reads_back_as_written(tmp_path: Path) -> None:
    target = tmp_path / "users"
    _dataset(tmp_path, target, users(300), "v1")
    expected = [User.model_validate(r).model_dump() for r in users(300)]
    adapter = ParquetInputAdapter(target, batch_size=50)
    assert _records(adapter) == expected
    assert adapter.root == Path(os.path.realpath(target))
    assert all(p.parent == adapter.root for p in adapter.paths)
    out = tmp_path / "out.jsonl"
    pipe = Pipe(ParquetInputAdapter(target, batch_size=50), JSONOutputAdapter(out), User)
    assert PipeManager.parallelize_pipe(pipe, workers=3).run(timeout=120)
    assert read_jsonl(out) == expected


def test_a_dataset_input_is_pinned_to_the_version_it_was_given(tmp_path: Path) -> None:
    target = tmp_path / "users"
    _dataset(tmp_path, target, users(200), "v1")
    old = [User.model_validate(r).model_dump() for r in users(200)]
    adapter = ParquetInputAdapter(target, batch_size=20)
    shards = adapter.split(3)
    pinned = adapter.root
    reading = adapter.batches()
    first = next(reading)  # every file of the version is open now
    _dataset(tmp_path, target, users(50), "v2")  # published mid-read; the old version removed
    assert os.path.realpath(target) != str(pinned)
    rest = [r for batch in reading for r in batch.records]
    assert first.records + rest == old, "the read finishes on the version it started on"
    assert all(s.root == pinned for s in shards)  # type: ignore[attr-defined]
    # A shard not yet started never reads the new version: its files are gone, it says so.
    with pytest.raises(InputError) as caught:
        _records(shards[1])
    assert str(pinned) in str(caught.value)
    assert len(_records(ParquetInputAdapter(target))) == 50


def test_an_empty_folder_is_an_input_error_naming_it(tmp_path: Path) -> None:
    folder = tmp_path / "empty"
    (folder / "sub").mkdir(parents=True)
    (folder / "_SUCCESS").write_text("")
    adapter = ParquetInputAdapter(folder)
    attempts = {
        "check": adapter.check,
        "split": lambda: adapter.split(2),
        "batches": lambda: _records(adapter),
        "max_shards": lambda: adapter.max_shards(4),
    }
    for call, attempt in attempts.items():
        with pytest.raises(InputError, match="no .parquet file") as caught:
            attempt()
        assert getattr(caught.value, "path", None) == str(folder), call
        assert str(folder) in str(caught.value), call
    with pytest.raises(InputError, match="no .parquet file"):
        Pipe(adapter, JSONOutputAdapter(tmp_path / "out.jsonl"), User).run()
    assert not (tmp_path / "out.jsonl").exists()


def test_the_run_refuses_an_output_that_is_one_of_the_folders_files(tmp_path: Path) -> None:
    folder = tmp_path / "flat"
    _write(folder / "a.parquet", [{"id": 1, "name": "a", "score": 1.0}])
    victim = folder / "b.parquet"
    _write(victim, [{"id": 2, "name": "b", "score": 2.0}])
    with pytest.raises(ConfigurationError, match="same file"):
        Pipe(ParquetInputAdapter(folder), ParquetOutputAdapter(victim), User).run()
    assert pq.read_table(victim).num_rows == 1


def test_a_single_file_is_read_as_before(tmp_path: Path) -> None:
    path = tmp_path / "in.parquet"
    _write(path, [{"id": i} for i in range(20)], row_group_size=5)
    adapter = ParquetInputAdapter(path)
    assert adapter.root is None and adapter.paths == [path]
    assert [s.row_groups for s in adapter.split(2)] == [[0, 1], [2, 3]]  # type: ignore[attr-defined]
    assert adapter.describe() == f"ParquetInputAdapter({str(path)!r})"


class TestParquetDatasetInput(InputAdapterConformance):
    """A folder of three part files with small row groups (what ``split`` shares out)."""

    schema = pa.schema([("id", pa.int64()), ("name", pa.string()), ("score", pa.float64())])

    def write_records(self, path: Path, records: Sequence[Record], fields: Sequence[str]) -> None:
        path.mkdir(parents=True)
        rows = list(records)
        third = (len(rows) + 2) // 3
        for index in range(3):
            part = rows[index * third : (index + 1) * third]
            table = pa.Table.from_pylist(part, schema=self.schema)
            pq.write_table(table, path / f"part-{index:05d}.parquet", row_group_size=7)

    def make_adapter(self, path: Path, *, batch_size: int | None = None) -> BaseInputAdapter:
        return ParquetInputAdapter(path, batch_size=batch_size or 65_536)


def test_a_file_that_does_not_fit_the_schema_is_an_input_error_naming_it(tmp_path: Path) -> None:
    folder = tmp_path / "flat"
    _write(folder / "a.parquet", [{"id": 1}])
    bad = folder / "b.parquet"
    _write(bad, [{"id": "not a number"}])
    with pytest.raises(InputError) as caught:
        _records(ParquetInputAdapter(folder))
    assert getattr(caught.value, "path", None) == str(bad)
