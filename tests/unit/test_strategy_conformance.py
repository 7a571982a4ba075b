"""The commit-strategy conformance suite on the built-in strategies: files of every format, and
an Iceberg table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from zoopipe_hpc import (
    CSVOutputAdapter,
    IcebergOutputAdapter,
    JSONOutputAdapter,
    ParquetOutputAdapter,
)
from zoopipe_hpc.adapters.base import BaseOutputAdapter
from zoopipe_hpc.testing import CommitStrategyConformance


class TestJSONLinesFile(CommitStrategyConformance):
    def make_adapter(self, tmp_path: Path) -> BaseOutputAdapter:
        return JSONOutputAdapter(tmp_path / "out.jsonl")

    def read_target(self, adapter: BaseOutputAdapter) -> list[dict[str, Any]]:
        if not adapter.path.exists():
            return []
        return [json.loads(line) for line in adapter.path.read_text().splitlines() if line]


class TestJSONArrayFile(CommitStrategyConformance):
    def make_adapter(self, tmp_path: Path) -> BaseOutputAdapter:
        return JSONOutputAdapter(tmp_path / "out.json")

    def read_target(self, adapter: BaseOutputAdapter) -> list[dict[str, Any]]:
        return json.loads(adapter.path.read_text()) if adapter.path.exists() else []


class TestCSVFile(CommitStrategyConformance):
    def make_adapter(self, tmp_path: Path) -> BaseOutputAdapter:
        return CSVOutputAdapter(tmp_path / "out.csv")

    def read_target(self, adapter: BaseOutputAdapter) -> list[dict[str, Any]]:
        if not adapter.path.exists():
            return []
        return pacsv.read_csv(adapter.path).to_pylist()  # type: ignore[no-any-return]


class TestParquetFile(CommitStrategyConformance):
    def make_adapter(self, tmp_path: Path) -> BaseOutputAdapter:
        return ParquetOutputAdapter(tmp_path / "out.parquet")

    def read_target(self, adapter: BaseOutputAdapter) -> list[dict[str, Any]]:
        if not adapter.path.exists():
            return []
        return pq.read_table(adapter.path).to_pylist()  # type: ignore[no-any-return]


class TestIcebergTable(CommitStrategyConformance):
    appends = True

    def make_adapter(self, tmp_path: Path) -> BaseOutputAdapter:
        pytest.importorskip("pyiceberg")
        return IcebergOutputAdapter("lake.rows", warehouse=tmp_path / "wh")

    def read_target(self, adapter: BaseOutputAdapter) -> list[dict[str, Any]]:
        from pyiceberg.exceptions import NoSuchTableError

        if not isinstance(adapter, IcebergOutputAdapter):
            raise TypeError(adapter)
        try:
            table = adapter.catalog().load_table(adapter.identifier)
        except NoSuchTableError:
            return []
        # A table scan has no order: by id, which is the order the suite writes.
        return sorted(table.scan().to_arrow().to_pylist(), key=lambda row: row["id"])
