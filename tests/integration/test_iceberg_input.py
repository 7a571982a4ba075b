"""Iceberg input: a pinned snapshot of a table written by IcebergOutputAdapter, read back whole,
through a Pipe and through parallelize_pipe, every record once and in the snapshot's file order."""

from __future__ import annotations

import pickle
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _support import User, read_jsonl, users, write_csv
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.table import DataScan, Table

from zoopipe_hpc import (
    CSVInputAdapter,
    IcebergInputAdapter,
    IcebergOutputAdapter,
    JSONOutputAdapter,
    Pipe,
    PipeManager,
)
from zoopipe_hpc.adapters import BaseInputAdapter
from zoopipe_hpc.errors import InputError
from zoopipe_hpc.testing import InputAdapterConformance

TABLE = "lake.users"
Record = dict[str, Any]


def _table(warehouse: Path) -> Table:
    catalog = SqlCatalog(
        "zoopipe", uri=f"sqlite:///{warehouse / 'catalog.db'}", warehouse=warehouse.as_uri()
    )
    return catalog.load_table(TABLE)


def _write_runs(
    tmp_path: Path, warehouse: Path, runs: Sequence[range], prefix: str = "run"
) -> None:
    """One append snapshot per run, each one data file."""
    for index, ids in enumerate(runs):
        rows = [row for row in users(ids.stop) if row["id"] in ids]
        source = write_csv(tmp_path / f"{prefix}{index}.csv", rows)
        output = IcebergOutputAdapter(TABLE, warehouse=warehouse, run_id=f"{prefix}-{index}")
        assert Pipe(CSVInputAdapter(source), output, User).run()


def _read(adapter: BaseInputAdapter) -> list[Record]:
    return [record for batch in adapter.batches() for record in batch.records]


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    warehouse = tmp_path / "wh"
    _write_runs(tmp_path, warehouse, [range(0, 40), range(40, 100), range(100, 130)])
    return warehouse


def test_reads_the_snapshot_in_file_order_in_bounded_arrow_batches(lake: Path) -> None:
    expected = _table(lake).scan().to_arrow().to_pylist()
    assert sorted(r["id"] for r in expected) == list(range(130))
    adapter = IcebergInputAdapter(TABLE, warehouse=lake, batch_size=16)
    batches = list(adapter.batches())
    assert all(isinstance(b.table, pa.Table) and 0 < len(b) <= 16 for b in batches)
    assert [r for b in batches for r in b.records] == expected
    assert adapter.source == str(lake / "lake.db" / "users")
    assert adapter.max_shards(10) == 3


def test_split_gives_whole_files_each_record_once_in_order(lake: Path) -> None:
    adapter = IcebergInputAdapter(TABLE, warehouse=lake)
    expected = _read(adapter)
    for n in (1, 2, 3, 5):
        shards = adapter.split(n)
        assert len(shards) == n
        restored = [pickle.loads(pickle.dumps(s)) for s in shards]
        assert [r for s in restored for r in _read(s)] == expected
    assert [len(_read(s)) for s in adapter.split(3)] == [30, 60, 40]  # newest file first


def test_pipe_and_parallelize_pipe_read_every_record_once(lake: Path, tmp_path: Path) -> None:
    expected = _read(IcebergInputAdapter(TABLE, warehouse=lake))
    single = tmp_path / "single.jsonl"
    assert Pipe(IcebergInputAdapter(TABLE, warehouse=lake), JSONOutputAdapter(single), User).run()
    assert read_jsonl(single) == expected
    parallel = tmp_path / "parallel.jsonl"
    pipe = Pipe(IcebergInputAdapter(TABLE, warehouse=lake), JSONOutputAdapter(parallel), User)
    assert PipeManager.parallelize_pipe(pipe, workers=3).run(timeout=120)
    assert read_jsonl(parallel) == expected


def test_a_pinned_snapshot_is_read_after_a_later_append(lake: Path, tmp_path: Path) -> None:
    adapter = IcebergInputAdapter(TABLE, warehouse=lake)
    shards = adapter.split(2)
    before = _read(adapter)
    pinned = adapter.snapshot_id
    _write_runs(tmp_path, lake, [range(130, 150)], prefix="later")
    assert _read(adapter) == before
    assert [r for s in shards for r in _read(s)] == before
    assert len(_read(IcebergInputAdapter(TABLE, warehouse=lake))) == 150
    again = IcebergInputAdapter(TABLE, warehouse=lake, snapshot_id=pinned)
    assert _read(again) == before


def test_a_snapshot_with_delete_files_is_refused(
    lake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pyiceberg writes no delete files (its deletes are copy-on-write): planned tasks are
    given one, as a table written by Spark or Flink with merge-on-read would have."""
    plan = DataScan.plan_files

    def with_deletes(self: DataScan) -> list[Any]:
        return [SimpleNamespace(file=t.file, delete_files={"pos.parquet"}) for t in plan(self)]

    adapter = IcebergInputAdapter(TABLE, warehouse=lake)
    monkeypatch.setattr(DataScan, "plan_files", with_deletes)
    for attempt in (adapter.check, lambda: adapter.split(2), lambda: list(adapter.batches())):
        with pytest.raises(InputError, match="lake.users.*delete files") as caught:
            attempt()
        assert getattr(caught.value, "path", None) == adapter.source


def test_a_missing_table_is_an_input_error_naming_it(tmp_path: Path) -> None:
    adapter = IcebergInputAdapter("lake.nothing", warehouse=tmp_path / "wh")
    for attempt in (adapter.check, lambda: adapter.split(2), lambda: list(adapter.batches())):
        with pytest.raises(InputError, match="lake.nothing"):
            attempt()


class TestIcebergInput(InputAdapterConformance):
    """Each sample file is a table of its own, placed at the sample's path."""

    @staticmethod
    def _name(path: Path) -> str:
        return f"conformance.{path.name.replace('.', '_')}"

    @staticmethod
    def _warehouse(path: Path) -> Path:
        return path.parent / "wh"

    def write_records(self, path: Path, records: Sequence[Record], fields: Sequence[str]) -> None:
        warehouse = self._warehouse(path)
        warehouse.mkdir(exist_ok=True)
        catalog = SqlCatalog(
            "zoopipe", uri=f"sqlite:///{warehouse / 'catalog.db'}", warehouse=warehouse.as_uri()
        )
        catalog.create_namespace_if_not_exists("conformance")
        schema = pa.schema([("id", pa.int64()), ("name", pa.string()), ("score", pa.float64())])
        schema = pa.schema([schema.field(name) for name in fields])
        table = catalog.create_table(self._name(path), schema=schema, location=path.as_uri())
        # Several data files in one snapshot, planned in the order they are added.
        (path / "data").mkdir(parents=True)
        uris = []
        for start in range(0, len(records), 450):
            part = path / "data" / f"part-{start:06d}.parquet"
            pq.write_table(pa.Table.from_pylist(list(records[start : start + 450]), schema), part)
            uris.append(part.as_uri())
        if uris:
            table.add_files(uris)

    def make_adapter(self, path: Path, *, batch_size: int | None = None) -> BaseInputAdapter:
        warehouse = self._warehouse(path)
        if batch_size is None:
            return IcebergInputAdapter(self._name(path), warehouse=warehouse)
        return IcebergInputAdapter(self._name(path), warehouse=warehouse, batch_size=batch_size)

    def test_missing_file_raises_input_error_naming_the_path(self, tmp_path: Path) -> None:
        """A table that is not in the catalog has no path: the error names the table."""
        adapter = self.make_adapter(tmp_path / "missing")
        for attempt in (adapter.check, lambda: adapter.split(2), lambda: list(adapter.batches())):
            with pytest.raises(InputError, match="conformance.missing"):
                attempt()


def test_an_unknown_snapshot_is_an_input_error_naming_the_table(lake: Path) -> None:
    with pytest.raises(InputError, match="lake.users.*no snapshot 12345"):
        IcebergInputAdapter(TABLE, warehouse=lake, snapshot_id=12345)


def test_a_table_created_after_the_adapter_is_pinned_on_first_use(tmp_path: Path) -> None:
    warehouse = tmp_path / "wh"
    adapter = IcebergInputAdapter(TABLE, warehouse=warehouse)
    _write_runs(tmp_path, warehouse, [range(0, 10)])
    assert [r["id"] for r in _read(adapter)] == list(range(10))
    assert adapter.snapshot_id is not None and adapter.source.endswith("users")


def test_importing_the_input_adapter_does_not_import_pyiceberg() -> None:
    code = (
        "import sys, zoopipe_hpc, zoopipe_hpc.adapters.iceberg_input;"
        "zoopipe_hpc.IcebergInputAdapter; print('pyiceberg' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
