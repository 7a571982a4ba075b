"""Parquet input and output through pyarrow."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.parquet as pq

from ..commit._atomic import fsync_path
from ..errors import ConfigurationError, InputError, OutputError
from ..validation._arrow import rows_to_table
from .base import BaseInputAdapter, BaseOutputAdapter, InputBatch, Record, _FileSink, check_workers

__all__ = ["ParquetInputAdapter", "ParquetLayout", "ParquetOutputAdapter"]


class ParquetInputAdapter(BaseInputAdapter):
    """Reads a Parquet file in record batches; ``split(n)`` shares out its row groups."""

    def __init__(
        self,
        source: str | os.PathLike[str],
        *,
        batch_size: int = 65_536,
        columns: Sequence[str] | None = None,
        row_groups: Sequence[int] | None = None,
    ) -> None:
        super().__init__(source)
        self.batch_size = batch_size
        self.columns = list(columns) if columns is not None else None
        self.row_groups = list(row_groups) if row_groups is not None else None

    def describe(self) -> str:
        if self.row_groups is None:
            return f"ParquetInputAdapter({self.source!r})"
        return f"ParquetInputAdapter({self.source!r}, row groups {self.row_groups})"

    def _open(self) -> pq.ParquetFile:
        try:
            return pq.ParquetFile(self.path)
        except FileNotFoundError as exc:
            raise InputError("cannot read Parquet input: no such file", path=self.source) from exc
        except OSError as exc:
            raise InputError(f"cannot read Parquet input: {exc}", path=self.source) from exc
        except pa.ArrowException as exc:
            raise InputError(
                f"not a valid Parquet file (truncated or corrupt?): {exc}", path=self.source
            ) from exc

    def check(self) -> None:
        self._open().close()

    def max_shards(self, wanted: int) -> int:
        """One shard per row group at most (a row group is never cut); read from the footer."""
        groups: int
        if self.row_groups is not None:
            groups = len(self.row_groups)
        else:
            with self._open() as f:
                groups = f.metadata.num_row_groups
        return max(1, min(wanted, groups))

    def split(self, workers: int) -> list[BaseInputAdapter]:
        check_workers(workers)
        with self._open() as f:
            groups = (
                self.row_groups
                if self.row_groups is not None
                else list(range(f.metadata.num_row_groups))
            )
            sizes = [f.metadata.row_group(g).num_rows for g in groups]
        # Contiguous runs of row groups with about the same number of rows each, in order.
        total = sum(sizes)
        shards: list[list[int]] = [[] for _ in range(workers)]
        seen = 0
        for group, size in zip(groups, sizes, strict=True):
            index = min(workers - 1, (seen * workers) // total) if total else 0
            shards[index].append(group)
            seen += size
        return [
            ParquetInputAdapter(
                self.path, batch_size=self.batch_size, columns=self.columns, row_groups=shard
            )
            for shard in shards
        ]

    def batches(self) -> Iterator[InputBatch]:
        f = self._open()
        try:
            if self.row_groups == []:
                return
            batches = f.iter_batches(
                batch_size=self.batch_size, row_groups=self.row_groups, columns=self.columns
            )
            while True:
                try:
                    batch = next(batches)
                except StopIteration:
                    break
                except (OSError, pa.ArrowException) as exc:
                    raise InputError(
                        f"cannot read Parquet data (truncated or corrupt?): {exc}", path=self.source
                    ) from exc
                yield InputBatch(source=self.source, table=pa.Table.from_batches([batch]))
        finally:
            f.close()


class _ParquetSink(_FileSink):
    def __init__(self, path: Path, schema: pa.Schema | None, compression: str) -> None:
        self._path = path
        self._schema = schema
        self._compression = compression
        self._writer: pq.ParquetWriter | None = None

    def _start(self, schema: pa.Schema) -> pq.ParquetWriter:
        self._schema = schema
        self._writer = pq.ParquetWriter(self._path, schema, compression=self._compression)
        return self._writer

    def write(self, rows: Sequence[Record]) -> None:
        table = rows_to_table(rows, self._schema)
        writer = self._writer if self._writer is not None else self._start(table.schema)
        try:
            writer.write_table(table)
        except (pa.ArrowException, ValueError) as exc:
            raise OutputError(
                f"{self._path}: cannot write rows: {exc}", path=str(self._path)
            ) from exc

    def close(self) -> None:
        writer = (
            self._writer if self._writer is not None else self._start(self._schema or pa.schema([]))
        )
        writer.close()
        self._writer = None
        fsync_path(self._path)


#: How a Parquet target is laid out: one file, or a folder of the shards' part files.
ParquetLayout = Literal["file", "dataset"]


class ParquetOutputAdapter(BaseOutputAdapter):
    """Writes Parquet: ``layout="file"`` (the default) makes one file, the shards' parts merged
    into one valid file, row groups in shard order; ``layout="dataset"`` makes ``path`` a
    folder holding each shard's part file as it was written (``part-NNNNN-<run id>.parquet``,
    in shard order), with no merge. A dataset is published atomically: ``path`` is a symbolic
    link to the run's version folder ``<name>.v-<run id>``, replaced by one ``rename`` (see
    ``docs/parquet-layouts.md``)."""

    format = "parquet"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        compression: str = "snappy",
        layout: ParquetLayout = "file",
    ) -> None:
        super().__init__(path)
        if layout not in ("file", "dataset"):
            raise ConfigurationError(
                f"ParquetOutputAdapter layout must be 'file' or 'dataset', got {layout!r}"
            )
        self.compression = compression
        self.layout: ParquetLayout = layout
        self.commit_strategy = layout

    def describe(self) -> str:
        if self.layout == "file":
            return super().describe()
        return f"{type(self).__name__}({str(self.path)!r}, layout='dataset')"

    def commit_key(self) -> str:
        """A dataset's path is a link to its current version: the target is the link itself
        (its folder resolved), so that every run of it takes the same lock."""
        if self.layout == "file":
            return os.path.realpath(self.path)
        return os.path.join(os.path.realpath(self.path.parent), self.path.name)

    @property
    def part_suffix(self) -> str:
        return ".parquet" if self.layout == "dataset" else super().part_suffix

    def _clone(self) -> ParquetOutputAdapter:
        return ParquetOutputAdapter(self.path, compression=self.compression, layout=self.layout)

    def _open_file(self, path: Path, schema: pa.Schema | None) -> _FileSink:
        return _ParquetSink(path, schema, self.compression)

    def merge(self, parts: Sequence[Path], destination: Path) -> None:
        files = [pq.ParquetFile(p) for p in parts]
        try:
            schemas = [f.schema_arrow for f in files if f.metadata.num_rows > 0]
            schema = schemas[0] if schemas else (files[0].schema_arrow if files else pa.schema([]))
            with pq.ParquetWriter(destination, schema, compression=self.compression) as writer:
                for f in files:
                    for group in range(f.metadata.num_row_groups):
                        table = f.read_row_group(group)
                        if table.num_rows:
                            writer.write_table(table.cast(schema))
        finally:
            for f in files:
                f.close()
        fsync_path(destination)
