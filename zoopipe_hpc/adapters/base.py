"""Adapter interfaces: where records come from and where they go."""

from __future__ import annotations

import abc
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..commit._staging import StagingArea
from ..errors import ConfigurationError, OutputError
from ..validation._arrow import joined_lines, json_rows, rows_to_table, without_zones
from ._codecs import plain_path

__all__ = [
    "InputBatch",
    "BaseInputAdapter",
    "BaseOutputAdapter",
    "OutputWriter",
]

Record = dict[str, Any]


#: Output formats whose sinks take a pyarrow table in place of rows (see ``rows_to_table``).
_TABLE_FORMATS = ("parquet", "csv", "arrow")


def _no_line(index: int) -> int | None:
    return None


class InputBatch:
    """A bounded slice of an input: its records in order, plus what could not be parsed.

    ``malformed`` holds error records (``source``, ``line``, ``record``, ``errors``) for input
    that is not a record at all (a CSV row with the wrong number of fields, a line that is not
    JSON); ``locate(i)`` gives the 1-based line of ``records[i]`` in the source, where the format
    has lines.

    Adapters that read through pyarrow may give the batch as ``table`` instead: ``records`` is
    then made from it on first use only (the columnar fast path works on the table itself).
    """

    def __init__(
        self,
        records: list[Record] | None = None,
        source: str = "",
        malformed: list[Record] | None = None,
        locate: Callable[[int], int | None] = _no_line,
        table: pa.Table | None = None,
    ) -> None:
        self._records = records
        self.source = source
        self.malformed: list[Record] = malformed if malformed is not None else []
        self.locate = locate
        self.table = table

    @property
    def records(self) -> list[Record]:
        if self._records is None:
            rows: list[Record] = self.table.to_pylist() if self.table is not None else []
            self._records = rows
        return self._records

    @records.setter
    def records(self, value: list[Record]) -> None:
        self._records = value

    def __len__(self) -> int:
        if self._records is None and self.table is not None:
            return int(self.table.num_rows)
        return len(self.records)

    def __repr__(self) -> str:
        return (
            f"InputBatch({len(self)} records from {self.source!r}, {len(self.malformed)} malformed)"
        )


class BaseInputAdapter(abc.ABC):
    """Reads records from a source in bounded batches; can be split into disjoint shards."""

    #: Whether a pipe may run :meth:`batches` on a thread of its own, one batch ahead of the
    #: validation (see ``docs/columnar.md``, "Reading ahead"): set by the adapters whose reading
    #: runs mostly without the GIL (pyarrow's parsers, decompression) and calls no user code nor
    #: a connection bound to a thread. Off for any other adapter.
    read_ahead: bool = False

    def __init__(self, source: str | os.PathLike[str]) -> None:
        self.path = Path(source)

    @property
    def source(self) -> str:
        return str(self.path)

    @abc.abstractmethod
    def batches(self) -> Iterator[InputBatch]:
        """Stream the records, in input order, in batches of bounded size."""

    @abc.abstractmethod
    def split(self, workers: int) -> list[BaseInputAdapter]:
        """Shards that together hold every record exactly once, in order."""

    def max_shards(self, wanted: int) -> int:
        """How many of ``wanted`` shards this input can fill: ``wanted``, or fewer (at least 1)
        when it cannot hold a record for each.

        A manager asks for this before it splits the input, and splits it into that many
        shards: a small file asked for a million workers makes a few shards, not a million
        empty ones. Counting may stop once ``wanted`` is reached, and must stay cheap (no pass
        over the data). The default bounds a regular file by its size in bytes, since every
        record of a text or binary format takes at least one byte; an input that is not a
        regular file is not bounded. Override it where a tighter bound is known (row groups),
        or where a record can take less than a byte (a compressed format).
        """
        try:
            info = os.stat(self.path)
        except (OSError, ValueError):
            return wanted
        if not stat.S_ISREG(info.st_mode):
            return wanted
        return max(1, min(wanted, info.st_size))

    def check(self) -> None:
        """Raise :class:`~zoopipe_hpc.errors.InputError` if the source cannot be read."""

    def check_travel(self, where: str) -> None:
        """Raise :class:`~zoopipe_hpc.errors.ConfigurationError` if this adapter cannot be sent
        to ``where`` (another process, an engine's workers); file adapters always can."""

    def describe(self) -> str:
        return f"{type(self).__name__}({self.source!r})"

    def __repr__(self) -> str:
        return self.describe()


def check_workers(workers: int) -> int:
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ConfigurationError(f"workers must be a positive integer, got {workers!r}")
    return workers


class OutputWriter(abc.ABC):
    """An open output: takes rows, then is committed or aborted exactly once."""

    @abc.abstractmethod
    def write(self, rows: Sequence[Record]) -> None: ...

    def write_table(
        self, table: pa.Table, rows: Sequence[Record] = (), order: pa.Array | None = None
    ) -> None:
        """Write the rows of ``table`` (of the output's schema), merged with ``rows``.

        With ``rows``, row ``i`` written is row ``order[i]`` of the table's rows followed by
        ``rows``; ``rows`` keep their Python values until the sink converts them, exactly as
        :meth:`write` would.
        """
        merged = table.to_pylist() if table.num_rows else []
        if rows:
            merged.extend(rows)
            if order is not None:
                merged = [merged[i] for i in order.to_pylist()]
        if merged:
            self.write(merged)

    @abc.abstractmethod
    def commit(self) -> Path:
        """Make the output complete and durable; returns the path written."""

    @abc.abstractmethod
    def abort(self) -> None:
        """Drop everything written; the target stays as it was."""


class BaseOutputAdapter(abc.ABC):
    """Writes rows to a target through the run's staging folder.

    An adapter given to a :class:`~zoopipe_hpc.Pipe` names the target. When a run is planned,
    every output becomes a *part* of its target (:meth:`as_part`): a file in the target's
    staging folder that the worker writes and closes, and that only the run's transaction
    publishes (see :mod:`zoopipe_hpc.commit`). ``commit_strategy`` names how the parts become
    the target (``"file"``: merged into one file; ``"dataset"``: one folder of the parts;
    ``"iceberg"``: one table snapshot).
    """

    #: File format name: ``csv``, ``jsonl``, ``json``, ``parquet`` or ``arrow``.
    format: str = ""
    #: How a run's transaction commits this adapter's parts (a registered strategy name); an
    #: adapter may choose it per instance (``ParquetOutputAdapter(layout="dataset")``).
    commit_strategy: str = "file"

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        output: str | os.PathLike[str] | None = None,
    ) -> None:
        # ``output=`` is ZooPipe's name of the file for its CSV, JSON and Arrow outputs.
        given = [p for p in (path, output) if p is not None]
        if len(given) != 1:
            raise ConfigurationError(
                f"{type(self).__name__} takes its file as path (or as ZooPipe's output=): "
                f"exactly one of them, got path={path!r}, output={output!r}"
            )
        self.path = Path(given[0])
        self._part_of: StagingArea | None = None
        self._part_index: int | None = None
        self._sole = False

    @property
    def is_part(self) -> bool:
        return self._part_of is not None

    @property
    def part_suffix(self) -> str:
        """Suffix of a part file of this output (parts of a ``.json`` array are JSON Lines)."""
        return "".join(self.path.suffixes[-1:]) or f".{self.format}"

    @property
    def sole_part_is_final(self) -> bool:
        """True when the only part of a target is written in the target's own format, so the
        commit renames it instead of merging it."""
        return True

    @property
    def writes_final_format(self) -> bool:
        """True for a target's only part (or an unstaged adapter): it writes the final file."""
        return self._part_of is None or self._sole

    def split(self, workers: int, staging: StagingArea) -> list[BaseOutputAdapter]:
        """One part adapter per shard, each writing ``part-NNNNN`` into ``staging``, for
        :meth:`merge` to join."""
        return [self.as_part(staging, index) for index in range(check_workers(workers))]

    def as_part(
        self, staging: StagingArea, index: int, attempt_id: str = "", *, sole: bool = False
    ) -> BaseOutputAdapter:
        """This output as part ``index`` of its target, staged in ``staging``.

        ``sole``: the target has no other part, so the part is written in the target's final
        format and published without a merge.
        """
        part = self._clone()
        suffix = "".join(self.path.suffixes[-1:]) if sole else self.part_suffix
        part.path = staging.part_path(index, suffix or self.part_suffix, attempt_id)
        part._part_of = staging
        part._part_index = index
        part._sole = sole
        return part

    def for_attempt(self, attempt_id: str) -> BaseOutputAdapter:
        """The adapter one attempt of a shard writes through.

        A part gets a file of its own per attempt, so that a retried or requeued shard never
        mixes its rows with those of an earlier attempt that may still be writing; the commit
        publishes only the attempt that succeeded. Other adapters are returned as is.
        """
        if self._part_of is None or self._part_index is None:
            return self
        return self.as_part(self._part_of, self._part_index, attempt_id, sole=self._sole)

    @abc.abstractmethod
    def _clone(self) -> BaseOutputAdapter:
        """A copy with the same options."""

    @abc.abstractmethod
    def _open_file(self, path: Path, schema: pa.Schema | None) -> _FileSink: ...

    @abc.abstractmethod
    def merge(self, parts: Sequence[Path], destination: Path) -> None:
        """Concatenate part files (written by this adapter's parts) into one valid file."""

    def open(self, schema: pa.Schema | None) -> OutputWriter:
        """Start writing this part. ``schema`` is the Arrow schema of the rows, when known.

        Only a part can be opened: what an unstaged adapter names is a target, which only a
        run's transaction writes (``Pipe.run()`` plans one by itself).
        """
        staging = self._part_of
        if staging is None:
            raise ConfigurationError(
                f"{self.describe()} names a target, which only a run's transaction writes: "
                "run it through a Pipe, or open adapter.as_part(staging, index)"
            )
        if not staging.path.is_dir():
            raise OutputError(
                f"the staging folder {staging.path} of {staging.target} is gone (the run was "
                "rolled back or its folder removed); nothing is written",
                path=str(self.path),
            )
        try:
            temp = staging.temp_path(self.path.name)
            sink = self._open_file(temp, schema)
        except OSError as exc:
            raise OutputError(
                f"cannot open {self.path} for writing: {exc}", path=str(self.path)
            ) from exc
        return _StagedWriter(self, sink, temp)

    def check_travel(self, where: str) -> None:
        """Raise :class:`~zoopipe_hpc.errors.ConfigurationError` if this output cannot be
        written from ``where`` (another process, an engine's workers); files always can."""

    def numbered(self, index: int) -> BaseOutputAdapter:
        """The output shard ``index`` commits by itself (``parallelize_pipe(merge=False)``):
        ``<stem>.part-NNNNN<suffix>`` next to the target; a compressed target keeps both
        suffixes (``x.csv.gz``: ``x.part-00000.csv.gz``)."""
        clone = self._clone()
        plain = plain_path(self.path)
        suffix = "".join(self.path.suffixes[-2:]) if plain != self.path else self.path.suffix
        stem = self.path.name[: len(self.path.name) - len(suffix)] if suffix else self.path.name
        clone.path = self.path.with_name(f"{stem}.part-{index:05d}{suffix}")
        return clone

    def describe(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    def __repr__(self) -> str:
        return self.describe()


class _FileSink(abc.ABC):
    """A format-specific writer of one file."""

    #: True when ``write`` also takes ready-made JSON Lines text (bytes-like items, whole
    #: lines) among the rows: the columnar fast path then serializes column by column.
    raw_lines: bool = False

    @abc.abstractmethod
    def write(self, rows: Sequence[Record]) -> None: ...

    @abc.abstractmethod
    def close(self) -> None: ...


class _StagedWriter(OutputWriter):
    """Writes one part into a temporary file of its staging folder; ``commit`` closes it and
    gives it its part name (still invisible to readers of the target)."""

    def __init__(self, adapter: BaseOutputAdapter, sink: _FileSink, temp: Path) -> None:
        self._adapter = adapter
        self._sink = sink
        self._temp = temp
        self._done = False

    def write(self, rows: Sequence[Record]) -> None:
        if rows:
            self._sink.write(rows)

    def write_table(
        self, table: pa.Table, rows: Sequence[Record] = (), order: pa.Array | None = None
    ) -> None:
        if self._adapter.format not in _TABLE_FORMATS:
            # A JSON Lines sink takes the fast rows' text as ready-made UTF-8 lines.
            if self._sink.raw_lines:
                texts = json_rows(table, "\n")
                if texts is not None:
                    self.write(_jsonl_items(texts, rows, order))
                    return
            super().write_table(table, rows, order)
            return
        # These sinks turn rows into a table first (rows_to_table), which passes a table on.
        table = without_zones(table)
        if rows:
            table = pa.concat_tables([table, rows_to_table(rows, table.schema)])
            if order is not None:
                table = table.take(order)
        if table.num_rows:
            self._sink.write(table)

    def commit(self) -> Path:
        """Close the part durably and give it its name; returns the part's path."""
        if self._done:
            raise ConfigurationError(f"{self._adapter.path}: output already committed or aborted")
        self._done = True
        target = self._adapter.path
        try:
            self._sink.close()
            os.replace(self._temp, target)
        except OSError as exc:
            self._temp.unlink(missing_ok=True)
            raise OutputError(f"cannot finish writing {target}: {exc}", path=str(target)) from exc
        return target

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        try:
            self._sink.close()
        except Exception:  # noqa: BLE001 - the sink is being thrown away; the cause is raised elsewhere
            pass
        self._temp.unlink(missing_ok=True)


def _jsonl_items(texts: pa.Array, rows: Sequence[Record], order: pa.Array | None) -> list[Any]:
    """What a JSON Lines sink writes, in output order: each run of fast rows as one buffer of
    their lines (``texts``, newlines included), each row from pydantic as it is.

    Row ``i`` written is row ``order[i]`` of the fast rows followed by ``rows`` (both keep
    their own order); only the positions of ``rows`` are looked at in Python.
    """
    import pyarrow.compute as pc

    n = len(texts)
    if not rows:
        return [joined_lines(texts, 0, n)] if n else []
    if order is None:
        order = pa.array(range(n + len(rows)), pa.uint64())
    slow = pc.indices_nonzero(pc.greater_equal(order, n)).to_pylist()
    picks = order.take(pa.array(slow, pa.uint64())).to_pylist() if slow else []
    items: list[Any] = []
    start = 0  # fast rows before ``start`` are written
    for before, (position, pick) in enumerate(zip(slow, picks, strict=True)):
        stop = position - before  # fast rows written before output row ``position``
        if stop > start:
            items.append(joined_lines(texts, start, stop))
            start = stop
        items.append(rows[pick - n])
    if n > start:
        items.append(joined_lines(texts, start, n))
    return items
