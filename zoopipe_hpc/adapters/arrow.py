"""Arrow IPC (Feather v2) file input and output through pyarrow."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow as pa

from ..commit._atomic import fsync_path
from ..errors import InputError, OutputError
from ..validation._arrow import rows_to_table
from .base import BaseInputAdapter, BaseOutputAdapter, InputBatch, Record, _FileSink, check_workers

__all__ = ["ArrowInputAdapter", "ArrowOutputAdapter"]


class ArrowInputAdapter(BaseInputAdapter):
    """Reads an Arrow IPC file (``.arrow``, ``.feather`` v2) record batch by record batch.

    ``split(n)`` shares out the file's record batches: contiguous runs holding about the same
    number of rows each, a record batch never cut. Values keep their Arrow types. A batch
    larger than ``batch_size`` rows is handed out in slices of that size. ``generate_ids`` is
    ZooPipe's option, accepted and kept (no per-entry id is made; see ``docs/guide.md``).
    """

    read_ahead = True  # pyarrow reads the IPC batches without the GIL

    def __init__(
        self,
        source: str | os.PathLike[str],
        *,
        generate_ids: bool = True,
        batch_size: int = 65_536,
        record_batches: Sequence[int] | None = None,
    ) -> None:
        super().__init__(source)
        self.generate_ids = bool(generate_ids)
        self.batch_size = batch_size
        self.record_batches = list(record_batches) if record_batches is not None else None

    def describe(self) -> str:
        if self.record_batches is None:
            return f"ArrowInputAdapter({self.source!r})"
        return f"ArrowInputAdapter({self.source!r}, record batches {self.record_batches})"

    def _open(self) -> pa.ipc.RecordBatchFileReader:
        try:
            return pa.ipc.open_file(pa.memory_map(str(self.path), "r"))
        except FileNotFoundError as exc:
            raise InputError("cannot read Arrow input: no such file", path=self.source) from exc
        except pa.ArrowException as exc:
            raise InputError(
                f"not a valid Arrow IPC file (truncated, corrupt, or an IPC stream?): {exc}",
                path=self.source,
            ) from exc
        except OSError as exc:
            raise InputError(f"cannot read Arrow input: {exc}", path=self.source) from exc

    def _batches_of(self, reader: pa.ipc.RecordBatchFileReader) -> list[int]:
        if self.record_batches is not None:
            return self.record_batches
        return list(range(reader.num_record_batches))

    def check(self) -> None:
        self._open()

    def max_shards(self, wanted: int) -> int:
        """One shard per record batch at most (a batch is never cut)."""
        return max(1, min(wanted, len(self._batches_of(self._open()))))

    def split(self, workers: int) -> list[BaseInputAdapter]:
        check_workers(workers)
        reader = self._open()
        indices = self._batches_of(reader)
        sizes = [reader.get_batch(i).num_rows for i in indices]
        total = sum(sizes)
        shards: list[list[int]] = [[] for _ in range(workers)]
        seen = 0
        for index, size in zip(indices, sizes, strict=True):
            shards[min(workers - 1, (seen * workers) // total) if total else 0].append(index)
            seen += size
        return [
            ArrowInputAdapter(
                self.path,
                generate_ids=self.generate_ids,
                batch_size=self.batch_size,
                record_batches=shard,
            )
            for shard in shards
        ]

    def batches(self) -> Iterator[InputBatch]:
        reader = self._open()
        step = max(1, self.batch_size)
        for index in self._batches_of(reader):
            try:
                batch = reader.get_batch(index)
            except (OSError, pa.ArrowException) as exc:
                raise InputError(
                    f"cannot read record batch {index} (truncated or corrupt?): {exc}",
                    path=self.source,
                ) from exc
            for start in range(0, batch.num_rows, step):
                part = batch.slice(start, step)
                yield InputBatch(source=self.source, table=pa.Table.from_batches([part]))


class _ArrowSink(_FileSink):
    def __init__(self, path: Path, schema: pa.Schema | None) -> None:
        self._path = path
        self._schema = schema
        self._file = pa.OSFile(str(path), "wb")
        self._writer: pa.ipc.RecordBatchFileWriter | None = None

    def _start(self, schema: pa.Schema) -> pa.ipc.RecordBatchFileWriter:
        self._schema = schema
        self._writer = pa.ipc.new_file(self._file, schema)
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
        if self._file.closed:
            return
        writer = (
            self._writer if self._writer is not None else self._start(self._schema or pa.schema([]))
        )
        writer.close()
        self._writer = None
        self._file.close()
        fsync_path(self._path)


class ArrowOutputAdapter(BaseOutputAdapter):
    """Writes one Arrow IPC file (readable with ``pyarrow.ipc.open_file`` or as Feather v2);
    the parts of a run are merged into one valid file, record batches in shard order."""

    format = "arrow"

    def _clone(self) -> ArrowOutputAdapter:
        return ArrowOutputAdapter(self.path)

    def _open_file(self, path: Path, schema: pa.Schema | None) -> _FileSink:
        return _ArrowSink(path, schema)

    def merge(self, parts: Sequence[Path], destination: Path) -> None:
        readers = [pa.ipc.open_file(pa.memory_map(str(p), "r")) for p in parts]
        schemas = [r.schema for r in readers if any(_rows(r))]
        schema = schemas[0] if schemas else (readers[0].schema if readers else pa.schema([]))
        with pa.OSFile(str(destination), "wb") as out, pa.ipc.new_file(out, schema) as writer:
            for reader in readers:
                for index in range(reader.num_record_batches):
                    batch = reader.get_batch(index)
                    if batch.num_rows:
                        writer.write_batch(batch.cast(schema))
        fsync_path(destination)


def _rows(reader: pa.ipc.RecordBatchFileReader) -> Iterator[int]:
    for index in range(reader.num_record_batches):
        rows = reader.get_batch(index).num_rows
        if rows:
            yield rows
