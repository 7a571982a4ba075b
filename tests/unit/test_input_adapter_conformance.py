"""The input-adapter conformance suite (zoopipe_hpc.testing) on every built-in file input."""

from __future__ import annotations

import csv
import functools
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from zoopipe_hpc import (
    ArrowInputAdapter,
    CSVInputAdapter,
    JSONInputAdapter,
    ParquetInputAdapter,
    PyGeneratorInputAdapter,
)
from zoopipe_hpc.adapters import BaseInputAdapter
from zoopipe_hpc.testing import InputAdapterConformance

Record = dict[str, Any]


class TestCSVInput(InputAdapterConformance):
    suffix = ".csv"

    def write_records(self, path: Path, records: Sequence[Record], fields: Sequence[str]) -> None:
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(fields))
            writer.writeheader()
            writer.writerows(records)

    def write_malformed(self, path: Path, records: Sequence[Record], at: int) -> int | None:
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(self.fields)
            for index, record in enumerate(records):
                if index == at:
                    writer.writerow(["only", "two"])  # the wrong number of fields
                writer.writerow([record[name] for name in self.fields])
        return at + 2  # the header is line 1; the records have no line breaks

    def make_adapter(self, path: Path, *, batch_size: int | None = None) -> BaseInputAdapter:
        if batch_size is None:
            return CSVInputAdapter(path)
        return CSVInputAdapter(path, block_size=batch_size * 60)

    def as_read(self, record: Record) -> Record:
        return {key: str(value) for key, value in record.items()}


_PREAMBLE = '# exported 2026-02-01 by "the tool"\r\n\n# columns: see below\n'


class TestCSVInputWithZooPipeOptions(InputAdapterConformance):
    """``skip_rows`` (a preamble with stray quotes and CR LF), ``quotechar`` and ``delimiter``."""

    suffix = ".csv"

    def write_records(self, path: Path, records: Sequence[Record], fields: Sequence[str]) -> None:
        with open(path, "w", newline="", encoding="utf-8") as f:
            f.write(_PREAMBLE)
            writer = csv.DictWriter(f, fieldnames=list(fields), delimiter=";", quotechar="'")
            writer.writeheader()
            writer.writerows(records)

    def write_malformed(self, path: Path, records: Sequence[Record], at: int) -> int | None:
        with open(path, "w", newline="", encoding="utf-8") as f:
            f.write(_PREAMBLE)
            writer = csv.writer(f, delimiter=";", quotechar="'")
            writer.writerow(self.fields)
            for index, record in enumerate(records):
                if index == at:
                    writer.writerow(["only", "two"])
                writer.writerow([record[name] for name in self.fields])
        return at + 5  # three preamble lines, then the header

    def make_adapter(self, path: Path, *, batch_size: int | None = None) -> BaseInputAdapter:
        block = {} if batch_size is None else {"block_size": batch_size * 60}
        return CSVInputAdapter(path, delimiter=";", quotechar="'", skip_rows=3, **block)

    def as_read(self, record: Record) -> Record:
        return {key: str(value) for key, value in record.items()}


class TestHeaderlessCSVInput(InputAdapterConformance):
    """``fieldnames``: no header line, the first line is a record."""

    suffix = ".csv"

    def write_records(self, path: Path, records: Sequence[Record], fields: Sequence[str]) -> None:
        with open(path, "w", newline="", encoding="utf-8") as f:
            csv.DictWriter(f, fieldnames=list(fields)).writerows(records)

    def write_malformed(self, path: Path, records: Sequence[Record], at: int) -> int | None:
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            for index, record in enumerate(records):
                if index == at:
                    writer.writerow(["only", "two"])
                writer.writerow([record[name] for name in self.fields])
        return at + 1

    def make_adapter(self, path: Path, *, batch_size: int | None = None) -> BaseInputAdapter:
        block = {} if batch_size is None else {"block_size": batch_size * 60}
        return CSVInputAdapter(path, fieldnames=list(self.fields), **block)

    def as_read(self, record: Record) -> Record:
        return {key: str(value) for key, value in record.items()}


class TestJSONLinesInput(InputAdapterConformance):
    suffix = ".jsonl"

    def write_records(self, path: Path, records: Sequence[Record], fields: Sequence[str]) -> None:
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")

    def write_malformed(self, path: Path, records: Sequence[Record], at: int) -> int | None:
        lines = [json.dumps(r) for r in records]
        lines.insert(at, '{"id": 1, "name": not json')
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return at + 1

    def make_adapter(self, path: Path, *, batch_size: int | None = None) -> BaseInputAdapter:
        return JSONInputAdapter(path, batch_size=batch_size or 10_000)


class TestJSONArrayInput(InputAdapterConformance):
    suffix = ".json"

    def write_records(self, path: Path, records: Sequence[Record], fields: Sequence[str]) -> None:
        self._write_array(path, [json.dumps(r) for r in records])

    @staticmethod
    def _write_array(path: Path, elements: list[str]) -> None:
        body = ",\n".join(elements)
        path.write_text(f"[\n{body}\n]\n" if elements else "[]\n", encoding="utf-8")

    def write_malformed(self, path: Path, records: Sequence[Record], at: int) -> int | None:
        elements = [json.dumps(r) for r in records]
        elements.insert(at, "42")  # an element that is not an object
        self._write_array(path, elements)
        return at + 2  # "[" is line 1, then one element a line

    def make_adapter(self, path: Path, *, batch_size: int | None = None) -> BaseInputAdapter:
        return JSONInputAdapter(path, batch_size=batch_size or 10_000)


class TestParquetInput(InputAdapterConformance):
    """Parquet cannot hold a malformed record: that test is skipped."""

    suffix = ".parquet"
    schema = pa.schema([("id", pa.int64()), ("name", pa.string()), ("score", pa.float64())])

    def write_records(self, path: Path, records: Sequence[Record], fields: Sequence[str]) -> None:
        table = pa.Table.from_pylist(list(records), schema=self.schema)
        pq.write_table(table, path, row_group_size=7)  # row groups are what split shares out

    def make_adapter(self, path: Path, *, batch_size: int | None = None) -> BaseInputAdapter:
        return ParquetInputAdapter(path, batch_size=batch_size or 65_536)


class TestArrowInput(InputAdapterConformance):
    """An Arrow IPC file cannot hold a malformed record: that test is skipped."""

    suffix = ".arrow"
    schema = pa.schema([("id", pa.int64()), ("name", pa.string()), ("score", pa.float64())])

    def write_records(self, path: Path, records: Sequence[Record], fields: Sequence[str]) -> None:
        table = pa.Table.from_pylist(list(records), schema=self.schema)
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, self.schema) as writer:
            writer.write_table(table, max_chunksize=7)  # record batches are what split shares

    def make_adapter(self, path: Path, *, batch_size: int | None = None) -> BaseInputAdapter:
        return ArrowInputAdapter(path, batch_size=batch_size or 65_536)


# -- the suites ship in the package without making it depend on pytest -----------------------


def test_importing_the_package_loads_neither_pytest_nor_the_suites() -> None:
    code = (
        "import sys, zoopipe_hpc, zoopipe_hpc.adapters, zoopipe_hpc.engines\n"
        "print(sorted(m for m in ('pytest', 'zoopipe_hpc.testing') if m in sys.modules))\n"
        "import zoopipe_hpc.testing.data\n"  # what worker processes import
        "print('pytest' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["[]", "False"]


def _jsonl_items(path: Path) -> list[Any]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


class TestPyGeneratorInputFromAFactory(InputAdapterConformance):
    """A factory (here: reading a JSON Lines file) that pickles; items that are not mappings
    are the malformed input. A Python iterable has no file to be missing: that test is
    replaced by one for a factory that fails."""

    suffix = ".jsonl"

    def write_records(self, path: Path, records: Sequence[Record], fields: Sequence[str]) -> None:
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")

    def write_malformed(self, path: Path, records: Sequence[Record], at: int) -> int | None:
        lines = [json.dumps(r) for r in records]
        lines.insert(at, "42")
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return at + 1

    def make_adapter(self, path: Path, *, batch_size: int | None = None) -> BaseInputAdapter:
        return PyGeneratorInputAdapter(
            functools.partial(_jsonl_items, path), batch_size=batch_size or 10_000, name=str(path)
        )

    def test_missing_file_raises_input_error_naming_the_path(self, tmp_path: Path) -> None:
        adapter = self.make_adapter(tmp_path / "missing.jsonl")
        with pytest.raises(FileNotFoundError):
            list(adapter.batches())
