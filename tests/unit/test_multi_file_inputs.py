"""Many input files (issue 14): lists, directories, globs and compressed streams."""

from __future__ import annotations

import bz2
import csv
import gzip
import json
import lzma
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import zstandard
from _support import read_jsonl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from zoopipe_hpc import CSVInputAdapter, JSONInputAdapter, JSONOutputAdapter, Pipe, PipeManager
from zoopipe_hpc.adapters import BaseInputAdapter
from zoopipe_hpc.errors import ConfigurationError, InputError
from zoopipe_hpc.testing import InputAdapterConformance

Record = dict[str, Any]

_OPENERS: dict[str, Callable[[bytes], bytes]] = {
    "": lambda data: data,
    ".gz": gzip.compress,
    ".bz2": bz2.compress,
    ".xz": lzma.compress,
    ".zst": lambda data: zstandard.ZstdCompressor().compress(data),
}


class Row(BaseModel):
    id: int
    name: str


def _csv_text(ids: Sequence[int], final_newline: bool = True) -> bytes:
    lines = ["id,name", *(f"{i},n{i}" for i in ids)]
    text = "\n".join(lines) + ("\n" if final_newline else "")
    return text.encode()


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_OPENERS[path.suffix if path.suffix in _OPENERS else ""](data))
    return path


def _ids(adapter: BaseInputAdapter) -> list[int]:
    return [int(r["id"]) for batch in adapter.batches() for r in batch.records]


def _sharded_ids(adapter: BaseInputAdapter, n: int) -> list[int]:
    return [i for shard in adapter.split(n) for i in _ids(shard)]


@pytest.mark.parametrize("suffix", list(_OPENERS))
def test_glob_of_every_compression(tmp_path: Path, suffix: str) -> None:
    _write(tmp_path / f"raw/2024-02.csv{suffix}", _csv_text(range(10, 20), final_newline=False))
    _write(tmp_path / f"raw/2024-01.csv{suffix}", _csv_text(range(10)))
    _write(tmp_path / "raw/2023-12.csv", _csv_text(range(100, 103)))
    adapter = CSVInputAdapter(str(tmp_path / f"raw/2024-*.csv{suffix}"))
    assert adapter.paths == sorted((tmp_path / "raw").glob(f"2024-*.csv{suffix}"))
    assert _ids(adapter) == list(range(20))
    for n in (1, 2, 3, 7):
        assert _sharded_ids(adapter, n) == list(range(20))


def test_list_and_directory(tmp_path: Path) -> None:
    b = _write(tmp_path / "d/b.csv", _csv_text(range(5, 8)))
    a = _write(tmp_path / "d/a.csv.gz", _csv_text(range(5)))
    e = _write(tmp_path / "d/c.csv", b"")
    assert _ids(CSVInputAdapter([b, a, e])) == list(range(8))
    directory = CSVInputAdapter(tmp_path / "d")
    assert directory.paths == [a, b, e]
    assert _sharded_ids(directory, 4) == list(range(8))
    assert directory.max_shards(100) >= 2


def test_jsonl_files(tmp_path: Path) -> None:
    _write(tmp_path / "j/a.jsonl.gz", b'{"id": 1, "name": "a"}\n{"id": 2, "name": "b"}\n')
    _write(tmp_path / "j/b.jsonl", b'{"id": 3, "name": "c"}\nnot json\n{"id": 4, "name": "d"}')
    adapter = JSONInputAdapter(str(tmp_path / "j/*.jsonl*"))
    assert _ids(adapter) == [1, 2, 3, 4]
    assert _sharded_ids(adapter, 3) == [1, 2, 3, 4]
    bad = [m for batch in adapter.batches() for m in batch.malformed]
    assert [(m["source"], m["line"]) for m in bad] == [(str(tmp_path / "j/b.jsonl"), 2)]


def test_errors_name_their_file_and_line(tmp_path: Path) -> None:
    _write(tmp_path / "in/a.csv.gz", b"id,name\n1,a\nx,b\n")
    _write(tmp_path / "in/b.csv", b"id,name\n2,c\n3\nzz,d\n")
    out, err = tmp_path / "out.jsonl", tmp_path / "err.jsonl"
    pipe = Pipe(
        CSVInputAdapter(tmp_path / "in"),
        JSONOutputAdapter(out),
        Row,
        error_output_adapter=JSONOutputAdapter(err),
    )
    report = pipe.run()
    assert report.success_count == 2
    where = sorted((e["source"], e["line"]) for e in read_jsonl(err))
    a, b = str(tmp_path / "in/a.csv.gz"), str(tmp_path / "in/b.csv")
    assert where == sorted([(a, 3), (b, 3), (b, 4)])


def test_missing_file_and_empty_glob(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"2099-\*\.csv"):
        CSVInputAdapter(str(tmp_path / "2099-*.csv"))
    missing = tmp_path / "gone.csv"
    adapter = CSVInputAdapter([_write(tmp_path / "a.csv", _csv_text([1])), missing])
    with pytest.raises(InputError, match="gone.csv"):
        adapter.check()


def test_single_path_is_unchanged(tmp_path: Path) -> None:
    path = _write(tmp_path / "one.csv", _csv_text(range(3)))
    adapter = CSVInputAdapter(path)
    assert adapter.paths is None and adapter.path == path
    assert repr(adapter) == f"CSVInputAdapter({str(path)!r})"


@pytest.mark.parametrize("workers", [1, 3])
def test_sharded_run_equals_one_pipe(tmp_path: Path, workers: int) -> None:
    for index, suffix in enumerate(["", ".gz", "", ".xz", ""]):
        start = index * 400
        _write(tmp_path / f"in/p{index}.csv{suffix}", _csv_text(range(start, start + 400)))
    out = tmp_path / "out.jsonl"
    pipe = Pipe(CSVInputAdapter(str(tmp_path / "in/p*")), JSONOutputAdapter(out), Row)
    if workers == 1:
        assert pipe.run().success_count == 2000
    else:
        manager = PipeManager.parallelize_pipe(pipe, workers=workers)
        assert manager.run(timeout=120), manager.error
    assert [r["id"] for r in read_jsonl(out)] == list(range(2000))


_FILES = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=60),
        st.sampled_from(list(_OPENERS)),
        st.booleans(),
    ),
    min_size=1,
    max_size=6,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(files=_FILES, workers=st.integers(min_value=1, max_value=6))
def test_every_record_once_in_order(
    tmp_path_factory: pytest.TempPathFactory, files: list[tuple[int, str, bool]], workers: int
) -> None:
    folder = tmp_path_factory.mktemp("prop")
    expected: list[int] = []
    start = 0
    for index, (count, suffix, newline) in enumerate(files):
        ids = list(range(start, start + count))
        path = _write(folder / f"f{index:02d}.csv{suffix}", _csv_text(ids, newline or not ids))
        assert _ids(CSVInputAdapter([path])) == ids
        expected += ids
        start += count
    adapter = CSVInputAdapter(folder, block_size=64)
    assert _ids(adapter) == expected
    assert _sharded_ids(adapter, workers) == expected


class TestMultiFileCSVInput(InputAdapterConformance):
    """A directory of three CSV files (one gzip) behind one adapter."""

    suffix = ".d"

    def _parts(self, path: Path, records: Sequence[Record]) -> list[Sequence[Record]]:
        path.mkdir(parents=True, exist_ok=True)
        third = max(1, len(records) // 3)
        return [records[:third], records[third : 2 * third], records[2 * third :]]

    def _one(self, path: Path, rows: list[list[Any]]) -> None:
        with open(path, "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows(rows)

    def write_records(self, path: Path, records: Sequence[Record], fields: Sequence[str]) -> None:
        for index, part in enumerate(self._parts(path, records)):
            rows = [list(fields), *([r[name] for name in fields] for r in part)]
            self._one(path / f"part-{index}.csv", rows)

    def write_malformed(self, path: Path, records: Sequence[Record], at: int) -> int | None:
        rows = [list(self.fields), *([r[name] for name in self.fields] for r in records)]
        rows.insert(at + 1, ["only", "two"])
        path.mkdir(parents=True, exist_ok=True)
        self._one(path / "part-0.csv", rows)
        return at + 2

    def make_adapter(self, path: Path, *, batch_size: int | None = None) -> BaseInputAdapter:
        if batch_size is None:
            return CSVInputAdapter(path)
        return CSVInputAdapter(path, block_size=batch_size * 60)

    def as_read(self, record: Record) -> Record:
        return {key: str(value) for key, value in record.items()}


def test_output_over_any_input_file_is_refused(tmp_path: Path) -> None:
    _write(tmp_path / "in/a.csv", _csv_text([1]))
    b = _write(tmp_path / "in/b.csv.gz", _csv_text([2]))
    pipe = Pipe(CSVInputAdapter(str(tmp_path / "in/*.csv*")), JSONOutputAdapter(b), Row)
    with pytest.raises(ConfigurationError, match="overwrite"):
        PipeManager([pipe]).run(timeout=60)


class TestMultiFileJSONLinesInput(InputAdapterConformance):
    """A directory of three JSON Lines files (one bzip2) behind one adapter."""

    suffix = ".d"

    def write_records(self, path: Path, records: Sequence[Record], fields: Sequence[str]) -> None:
        path.mkdir(parents=True, exist_ok=True)
        third = max(1, len(records) // 3)
        parts = [records[:third], records[third : 2 * third], records[2 * third :]]
        for index, part in enumerate(parts):
            text = "".join(json.dumps({k: r[k] for k in fields}) + "\n" for r in part)
            name = f"part-{index}.jsonl" + (".bz2" if index == 1 else "")
            _write(path / name, text.encode())

    def write_malformed(self, path: Path, records: Sequence[Record], at: int) -> int | None:
        lines = [json.dumps(r) for r in records]
        lines.insert(at, "{not json")
        path.mkdir(parents=True, exist_ok=True)
        _write(path / "part-0.jsonl", ("\n".join(lines) + "\n").encode())
        return at + 1

    def make_adapter(self, path: Path, *, batch_size: int | None = None) -> BaseInputAdapter:
        if batch_size is None:
            return JSONInputAdapter(path)
        return JSONInputAdapter(path, batch_size=batch_size)
