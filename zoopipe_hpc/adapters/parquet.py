"""Parquet input and output through pyarrow."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal, TypeVar

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from ..commit._atomic import fsync_path
from ..errors import ConfigurationError, InputError, OutputError, StateError
from ..validation._arrow import rows_to_table
from ._write_behind import WriteBehind
from .base import BaseInputAdapter, BaseOutputAdapter, InputBatch, Record, _FileSink, check_workers

__all__ = ["ParquetInputAdapter", "ParquetLayout", "ParquetOutputAdapter"]


_T = TypeVar("_T")

#: One piece of a dataset a shard reads: (file relative to the dataset folder, row group, rows).
_Piece = tuple[str, int, int]


def _hidden(name: str) -> bool:
    """Names pyarrow.dataset skips too: ``.staging``, ``_SUCCESS``, ``_metadata``."""
    return name.startswith((".", "_"))


class ParquetInputAdapter(BaseInputAdapter):
    """Reads Parquet in record batches; ``split(n)`` shares out its row groups.

    ``source`` is one Parquet file, or a folder of them: a flat folder, a hive-partitioned
    tree (``year=2024/month=01/part-0.parquet``: the partition values become fields, typed as
    pyarrow.dataset infers them), or a ``ParquetOutputAdapter(layout="dataset")`` target. A
    folder (or the link to one) is resolved once, here: this adapter and all its shards read
    that one version. Its files are read in sorted path order; ``split`` and ``max_shards``
    count the row groups of every file (see ``docs/parquet-layouts.md``).
    """

    read_ahead = True  # pyarrow decodes the row groups without the GIL

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
        #: The resolved folder of a dataset input (None: one file); fixed for every shard.
        self.root: Path | None = (
            Path(os.path.realpath(self.path)) if os.path.isdir(self.path) else None
        )
        #: A dataset shard's pieces (None: the whole dataset).
        self._pieces: list[_Piece] | None = None

    def describe(self) -> str:
        if self.root is not None:
            if self._pieces is None:
                return f"ParquetInputAdapter({self.source!r}, dataset {str(self.root)!r})"
            return (
                f"ParquetInputAdapter({self.source!r}, dataset {str(self.root)!r}, "
                f"{len(self._pieces)} row groups)"
            )
        if self.row_groups is None:
            return f"ParquetInputAdapter({self.source!r})"
        return f"ParquetInputAdapter({self.source!r}, row groups {self.row_groups})"

    # -- a dataset folder -----------------------------------------------------------------------

    def _files(self, root: Path) -> list[str]:
        """The dataset's Parquet files, relative to ``root``, in sorted path order."""
        found: list[str] = []
        try:
            for folder, dirs, names in os.walk(root, onerror=_raise):
                dirs[:] = [d for d in dirs if not _hidden(d)]
                base = Path(folder).relative_to(root)
                found.extend(
                    (base / n).as_posix()
                    for n in names
                    if n.endswith(".parquet") and not _hidden(n)
                )
        except OSError as exc:
            raise InputError(f"cannot list Parquet dataset: {exc}", path=str(root)) from exc
        if not found:
            raise InputError(
                "cannot read Parquet input: the folder holds no .parquet file", path=self.source
            )
        return sorted(found, key=lambda name: name.split("/"))

    @property
    def paths(self) -> list[Path]:
        """The files this input reads (one, or a dataset's files): the run checks that no
        output is one of them."""
        if self.root is None:
            return [self.path]
        try:
            return [self.root / name for name in self._files(self.root)]
        except InputError:
            return [self.path]

    def _dataset(self, root: Path, files: Sequence[str]) -> ds.FileSystemDataset:
        try:
            return ds.dataset(
                [str(root / name) for name in files],
                format="parquet",
                partitioning="hive",
                partition_base_dir=str(root),
            )
        except FileNotFoundError as exc:
            raise InputError(
                f"cannot read Parquet dataset {root}: a file is gone (was a new version "
                f"published and this one removed?): {exc}",
                path=self.source,
            ) from exc
        except (OSError, pa.ArrowException) as exc:
            raise InputError(
                f"cannot read Parquet dataset {root}: {exc}", path=self.source
            ) from exc

    def _all_pieces(self, root: Path) -> list[_Piece]:
        pieces: list[_Piece] = []
        for name in self._files(root):
            try:
                with pq.ParquetFile(root / name) as f:
                    meta = f.metadata
                    pieces.extend(
                        (name, g, meta.row_group(g).num_rows) for g in range(meta.num_row_groups)
                    )
            except (OSError, pa.ArrowException) as exc:
                raise InputError(
                    f"cannot read Parquet file (truncated or corrupt?): {exc}",
                    path=str(root / name),
                ) from exc
        return pieces

    def _pieces_now(self, root: Path) -> list[_Piece]:
        return self._pieces if self._pieces is not None else self._all_pieces(root)

    def _dataset_batches(self, root: Path) -> Iterator[InputBatch]:
        files = self._files(root)
        dataset = self._dataset(root, files)
        keys = {
            Path(fragment.path).relative_to(root).as_posix(): ds.get_partition_keys(
                fragment.partition_expression
            )
            for fragment in dataset.get_fragments()
        }
        schema = dataset.schema
        if self.columns is not None:
            schema = pa.schema([schema.field(c) for c in self.columns])
        pieces = self._pieces_now(root)
        groups: dict[str, list[int]] = {}
        for name, group, _ in pieces:
            groups.setdefault(name, []).append(group)
        # Open every file first: a version removed once reading started stays readable.
        opened: list[tuple[str, pq.ParquetFile]] = []
        try:
            for name in groups:
                try:
                    opened.append((name, pq.ParquetFile(root / name)))
                except (OSError, pa.ArrowException) as exc:
                    raise InputError(
                        f"cannot read Parquet file of dataset {root}: {exc}",
                        path=str(root / name),
                    ) from exc
            for name, f in opened:
                yield from self._file_batches(root / name, f, groups[name], schema, keys[name])
        finally:
            for _, f in opened:
                f.close()

    def _file_batches(
        self,
        path: Path,
        f: pq.ParquetFile,
        row_groups: list[int],
        schema: pa.Schema,
        keys: dict[str, object],
    ) -> Iterator[InputBatch]:
        present = set(f.schema_arrow.names)
        wanted = [n for n in schema.names if n in present]
        batches = f.iter_batches(batch_size=self.batch_size, row_groups=row_groups, columns=wanted)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except (OSError, pa.ArrowException) as exc:
                raise InputError(
                    f"cannot read Parquet data (truncated or corrupt?): {exc}", path=str(path)
                ) from exc
            rows = batch.num_rows
            arrays: list[pa.Array] = []
            try:
                for field in schema:
                    if field.name in present:
                        arrays.append(batch.column(field.name).cast(field.type))
                    elif field.name in keys:
                        value = pa.scalar(keys[field.name], type=field.type)
                        arrays.append(pa.repeat(value, rows))
                    else:
                        arrays.append(pa.nulls(rows, type=field.type))
                table = pa.Table.from_arrays(arrays, schema=schema)
            except pa.ArrowException as exc:
                raise InputError(
                    f"Parquet file does not fit the dataset's schema (from its first file and "
                    f"partition folders): {exc}",
                    path=str(path),
                ) from exc
            yield InputBatch(source=self.source, table=table)

    # -- either -----------------------------------------------------------------------------

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
        if self.root is not None:
            self._dataset(self.root, self._files(self.root))
            return
        self._open().close()

    def max_shards(self, wanted: int) -> int:
        """One shard per row group at most (a row group is never cut); read from the footers."""
        groups: int
        if self.root is not None:
            groups = len(self._pieces_now(self.root))
        elif self.row_groups is not None:
            groups = len(self.row_groups)
        else:
            with self._open() as f:
                groups = f.metadata.num_row_groups
        return max(1, min(wanted, groups))

    def split(self, workers: int) -> list[BaseInputAdapter]:
        check_workers(workers)
        if self.root is not None:
            pieces = self._pieces_now(self.root)
            parts = _balance(pieces, [p[2] for p in pieces], workers)
            shards: list[BaseInputAdapter] = []
            for part in parts:
                shard = ParquetInputAdapter(
                    self.path, batch_size=self.batch_size, columns=self.columns
                )
                shard.root = self.root
                shard._pieces = part
                shards.append(shard)
            return shards
        with self._open() as f:
            groups = (
                self.row_groups
                if self.row_groups is not None
                else list(range(f.metadata.num_row_groups))
            )
            sizes = [f.metadata.row_group(g).num_rows for g in groups]
        return [
            ParquetInputAdapter(
                self.path, batch_size=self.batch_size, columns=self.columns, row_groups=shard
            )
            for shard in _balance(groups, sizes, workers)
        ]

    def batches(self) -> Iterator[InputBatch]:
        if self.root is not None:
            if self._pieces == []:
                return
            yield from self._dataset_batches(self.root)
            return
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


def _raise(error: OSError) -> None:
    raise error


def _balance(items: Sequence[_T], sizes: Sequence[int], workers: int) -> list[list[_T]]:
    """Contiguous runs of ``items`` with about the same total size each, in order."""
    total = sum(sizes)
    shards: list[list[_T]] = [[] for _ in range(workers)]
    seen = 0
    for item, size in zip(items, sizes, strict=True):
        index = min(workers - 1, (seen * workers) // total) if total else 0
        shards[index].append(item)
        seen += size
    return shards


class _ParquetSink(_FileSink):
    """One Parquet file; each table is encoded on a background thread (``_write_behind``) while
    the pipe goes on with the next batch. Rows are converted to a table in the caller's
    thread, so a value that does not fit its column still fails the write that brought it."""

    def __init__(self, path: Path, schema: pa.Schema | None, compression: str) -> None:
        self._path = path
        self._schema = schema
        self._compression = compression
        self._writer: pq.ParquetWriter | None = None
        self._behind: WriteBehind[pa.Table] | None = None
        self._failed = False

    def _start(self, schema: pa.Schema) -> pq.ParquetWriter:
        self._schema = schema
        self._writer = pq.ParquetWriter(self._path, schema, compression=self._compression)
        return self._writer

    def _encode(self, table: pa.Table) -> None:
        writer = self._writer
        if writer is None:  # pragma: no cover - started before the first table is handed over
            raise StateError(f"{self._path}: no Parquet writer")
        try:
            writer.write_table(table)
        except (pa.ArrowException, ValueError) as exc:
            raise OutputError(
                f"{self._path}: cannot write rows: {exc}", path=str(self._path)
            ) from exc

    def write(self, rows: Sequence[Record]) -> None:
        table = rows_to_table(rows, self._schema)
        if self._writer is None:
            self._start(table.schema)
        if self._behind is None:
            self._behind = WriteBehind(self._encode, name=f"zoopipe-parquet-{self._path.name}")
        self._behind.put(table)

    def close(self) -> None:
        if self._failed:
            return  # closed after its failure was raised: the part is thrown away
        behind, self._behind = self._behind, None
        if behind is not None:
            try:
                behind.drain()  # every table written, or the first failure raised
            except BaseException:
                self._discard()
                raise
        writer = (
            self._writer if self._writer is not None else self._start(self._schema or pa.schema([]))
        )
        writer.close()
        self._writer = None
        fsync_path(self._path)

    def _discard(self) -> None:
        """Close the file after a failed write: it is thrown away, the failure is raised."""
        writer, self._writer = self._writer, None
        self._schema = None
        self._failed = True
        if writer is not None:
            try:
                writer.close()
            except Exception:  # noqa: BLE001 - the write's own failure is what is raised
                pass


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
