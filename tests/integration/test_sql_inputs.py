"""DuckDB and SQL inputs (issue 14): tables and queries read in bounded batches, split by key
ranges into shards that hold every row exactly once, in key order.

NULL keys are read first, by the first shard; rows with equal keys stay in one shard.
"""

from __future__ import annotations

import pickle
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from _support import read_jsonl
from pydantic import BaseModel

from zoopipe_hpc import (
    DuckDBInputAdapter,
    JSONOutputAdapter,
    Pipe,
    PipeManager,
    SQLInputAdapter,
)
from zoopipe_hpc.adapters._key_ranges import KeyRangeInputAdapter
from zoopipe_hpc.adapters.base import BaseInputAdapter
from zoopipe_hpc.errors import ConfigurationError, InputError
from zoopipe_hpc.testing import InputAdapterConformance

duckdb = pytest.importorskip("duckdb")
pytest.importorskip("sqlalchemy")

Row = dict[str, Any]


class Item(BaseModel):
    id: int | None
    name: str
    score: float


def _write_duckdb(path: Path, rows: Sequence[Row], table: str = "items") -> None:
    with duckdb.connect(str(path)) as connection:
        connection.execute(f"CREATE TABLE {table} (id BIGINT, name VARCHAR, score DOUBLE)")
        if rows:
            connection.executemany(
                f"INSERT INTO {table} VALUES (?, ?, ?)",
                [(r["id"], r["name"], r["score"]) for r in rows],
            )


def _write_sqlite(path: Path, rows: Sequence[Row], table: str = "items") -> None:
    with sqlite3.connect(path) as connection:
        connection.execute(f"CREATE TABLE {table} (id INTEGER, name TEXT, score REAL)")
        connection.executemany(
            f"INSERT INTO {table} VALUES (?, ?, ?)",
            [(r["id"], r["name"], r["score"]) for r in rows],
        )
    connection.close()


def _rows(ids: Sequence[int | None]) -> list[Row]:
    return [{"id": k, "name": f"row {n}", "score": n / 4} for n, k in enumerate(ids)]


def _adapter(
    kind: str, tmp_path: Path, rows: Sequence[Row], **options: Any
) -> KeyRangeInputAdapter:
    tmp_path.mkdir(parents=True, exist_ok=True)
    if kind == "duckdb":
        path = tmp_path / "in.duckdb"
        _write_duckdb(path, rows)
        return DuckDBInputAdapter(path, **options)
    path = tmp_path / "in.sqlite"
    _write_sqlite(path, rows)
    return SQLInputAdapter(path, **options)


def _read(adapter: BaseInputAdapter) -> list[Row]:
    return [record for batch in adapter.batches() for record in batch.records]


KINDS = pytest.mark.parametrize("kind", ["duckdb", "sqlite"])


@KINDS
def test_a_table_through_a_pipe_and_three_shards(kind: str, tmp_path: Path) -> None:
    rows = _rows(list(range(300, 0, -1)))  # stored out of key order
    adapter = _adapter(kind, tmp_path, rows, table_name="items", key="id", batch_size=50)
    expected = sorted(rows, key=lambda r: r["id"])
    out = tmp_path / "one.jsonl"
    assert Pipe(adapter, JSONOutputAdapter(out), Item).run(timeout=120)
    assert read_jsonl(out) == expected
    out3 = tmp_path / "three.jsonl"
    pipe = Pipe(adapter, JSONOutputAdapter(out3), Item)
    assert PipeManager.parallelize_pipe(pipe, workers=3).run(timeout=120)
    assert read_jsonl(out3) == expected


@KINDS
def test_skewed_keys_are_shared_out_by_quantiles(kind: str, tmp_path: Path) -> None:
    ids = [*range(900), *(10**9 + i for i in range(3)), *range(10**12, 10**12 + 97)]
    adapter = _adapter(kind, tmp_path, _rows(ids), table_name="items", key="id")
    shards = adapter.split(4)
    parts = [_read(s) for s in shards]
    assert [r["id"] for part in parts for r in part] == sorted(ids)
    assert all(200 <= len(part) <= 300 for part in parts), [len(p) for p in parts]


@KINDS
def test_null_keys_come_first_in_the_first_shard_and_duplicates_once(
    kind: str, tmp_path: Path
) -> None:
    ids: list[int | None] = [5, None, 1, 5, 5, None, 3, 5, 2, 5, 5, 4]
    adapter = _adapter(kind, tmp_path, _rows(ids), table_name="items", key="id", batch_size=2)
    whole = [r["id"] for r in _read(adapter)]
    assert whole == [None, None, 1, 2, 3, 4, 5, 5, 5, 5, 5, 5]
    for n in (2, 3, 5, 20):
        parts = [[r["id"] for r in _read(s)] for s in adapter.split(n)]
        assert [k for part in parts for k in part] == whole, (n, parts)
        assert parts[0][:2] == [None, None]
        holding_five = [i for i, part in enumerate(parts) if 5 in part]
        assert len(holding_five) == 1, parts  # equal keys are never split up
    names = sorted(r["name"] for s in adapter.split(3) for r in _read(s))
    assert names == sorted(r["name"] for r in _rows(ids))


@KINDS
def test_only_null_keys_go_to_the_first_shard(kind: str, tmp_path: Path) -> None:
    adapter = _adapter(kind, tmp_path, _rows([None] * 5), table_name="items", key="id")
    assert [len(_read(s)) for s in adapter.split(3)] == [5, 0, 0]


@KINDS
def test_a_query_input(kind: str, tmp_path: Path) -> None:
    rows = _rows(list(range(100)))
    adapter = _adapter(
        kind,
        tmp_path,
        rows,
        query="SELECT id, name, score * 2 AS score FROM items WHERE id % 2 = 0",
        key="id",
        batch_size=7,
    )
    expected = [dict(r, score=r["score"] * 2) for r in rows if r["id"] % 2 == 0]
    assert _read(adapter) == expected
    assert [r for s in adapter.split(3) for r in _read(s)] == expected
    out = tmp_path / "q.jsonl"
    pipe = Pipe(adapter, JSONOutputAdapter(out), Item)
    assert PipeManager.parallelize_pipe(pipe, workers=3).run(timeout=120)
    assert read_jsonl(out) == expected


@KINDS
def test_without_a_key_one_shard_reads_everything(kind: str, tmp_path: Path) -> None:
    rows = _rows([3, 1, 2])
    adapter = _adapter(kind, tmp_path, rows, table_name="items")
    assert adapter.max_shards(8) == 1
    shards = adapter.split(3)
    assert [len(_read(s)) for s in shards] == [3, 0, 0]
    assert "empty shard" in shards[1].describe()


@KINDS
def test_identifiers_are_checked_and_bounds_are_parameters(kind: str, tmp_path: Path) -> None:
    for bad in ({"table_name": "items; DROP TABLE items"}, {"table_name": "items", "key": "id--"}):
        with pytest.raises(ConfigurationError):
            _adapter(kind, tmp_path / str(len(bad)), [], **bad)
    with pytest.raises(ConfigurationError):
        _adapter(kind, tmp_path, [], query="SELECT 1", table_name="items")
    text_keys = [
        {"id": 1, "name": name, "score": 0.0} for name in ("a'); DROP TABLE items; --", "b", "c")
    ]
    # Text keys holding quotes reach the database only as bound parameters.
    source = tmp_path / ("t.duckdb" if kind == "duckdb" else "t.sqlite")
    (_write_duckdb if kind == "duckdb" else _write_sqlite)(source, text_keys)
    cls = DuckDBInputAdapter if kind == "duckdb" else SQLInputAdapter
    by_name = cls(source, table_name="items", key="name")
    assert [r["name"] for s in by_name.split(3) for r in _read(s)] == sorted(
        r["name"] for r in text_keys
    )
    assert len(_read(by_name)) == 3


@KINDS
def test_errors_name_the_database_and_table_or_query(kind: str, tmp_path: Path) -> None:
    adapter = _adapter(kind, tmp_path, [], table_name="nowhere")
    with pytest.raises(InputError) as caught:
        adapter.check()
    assert adapter.source in str(caught.value) and "nowhere" in str(caught.value)
    query = _adapter(kind, tmp_path / "q", [], query="SELECT nothing FROM items")
    with pytest.raises(InputError) as caught:
        list(query.batches())
    assert "SELECT nothing" in str(caught.value)


def test_the_connections_are_read_only(tmp_path: Path) -> None:
    adapter = _adapter("sqlite", tmp_path, _rows([1]), query="SELECT * FROM items")
    adapter.query = "DELETE FROM items RETURNING *"
    with pytest.raises(InputError):
        list(adapter.batches())
    duck = _adapter("duckdb", tmp_path, _rows([1]), table_name="items")
    duck.query, duck.table_name = "INSERT INTO items VALUES (2, 'x', 0) RETURNING *", None
    with pytest.raises(InputError):
        list(duck.batches())
    assert (
        len(
            _read(
                pickle.loads(
                    pickle.dumps(_adapter("duckdb", tmp_path / "p", _rows([1]), table_name="items"))
                )
            )
        )
        == 1
    )


def test_importing_zoopipe_hpc_imports_no_database_driver() -> None:
    import subprocess
    import sys

    code = "import sys, zoopipe_hpc; print('duckdb' in sys.modules, 'sqlalchemy' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]


class TestDuckDBInputConformance(InputAdapterConformance):
    suffix = ".duckdb"

    def write_records(self, path: Path, records: Sequence[Row], fields: Sequence[str]) -> None:
        _write_duckdb(path, records)

    def make_adapter(self, path: Path, *, batch_size: int | None = None) -> BaseInputAdapter:
        return DuckDBInputAdapter(
            path, table_name="items", key="id", batch_size=batch_size or 10_000
        )


class TestSQLiteInputConformance(InputAdapterConformance):
    suffix = ".sqlite"

    def write_records(self, path: Path, records: Sequence[Row], fields: Sequence[str]) -> None:
        _write_sqlite(path, records)

    def make_adapter(self, path: Path, *, batch_size: int | None = None) -> BaseInputAdapter:
        return SQLInputAdapter(path, table_name="items", key="id", batch_size=batch_size or 10_000)
