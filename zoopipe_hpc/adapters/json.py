"""JSON Lines and JSON array input and output."""

from __future__ import annotations

import json as _json
import os
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

from ..errors import ArgumentTypeError, ConfigurationError, InputError
from ..validation._arrow import to_json_bytes
from ._codecs import (
    CODECS,
    CompressedWriter,
    copy_from,
    empty_frame,
    open_decompressed,
    output_codec,
    output_level,
    plain_path,
)
from ._json_array import (
    MAX_DEPTH,
    TOO_DEEP,
    ArrayPosition,
    TooDeep,
    count_elements,
    element_positions,
    read_elements,
    too_deep,
)
from ._multi import MultiFileInput, expand_sources, one_path, refuse_hidden_compression
from ._split import ByteRange, file_size, split_ranges
from .base import BaseInputAdapter, BaseOutputAdapter, InputBatch, Record, _FileSink, check_workers

__all__ = ["JSONInputAdapter", "JSONOutputAdapter"]

JSONFormat = Literal["jsonl", "json"]
_LINE_SUFFIXES = (".jsonl", ".ndjson")
# A line this short cannot nest deeper than MAX_DEPTH (each level takes two characters): the
# depth test is not even called for it.
_SHALLOW = 2 * MAX_DEPTH


def _format_for(path: Path, format: str | None) -> JSONFormat:
    """The format ``format`` names (``"array"`` is ZooPipe's name for ``"json"``), or the one
    the suffix says: ``.json`` is an array, anything else JSON Lines."""
    if format is not None:
        if format not in ("jsonl", "json", "array"):
            raise ConfigurationError(
                f"{path}: JSON format must be 'jsonl', 'array' or 'json', got {format!r}"
            )
        return "jsonl" if format == "jsonl" else "json"
    return "json" if path.suffix.lower() == ".json" else "jsonl"


class JSONInputAdapter(BaseInputAdapter):
    """Reads JSON Lines (one object a line; blank lines are skipped) or a JSON array.

    Values are read with the standard JSON parser, so types are exactly what the JSON says. A
    line or element nested more than ``MAX_DEPTH`` (200) arrays and objects deep is an error
    record (``json_invalid``, "JSON nested too deeply") holding its text, like a line that is
    not JSON; the rest of the file is read on.
    JSON Lines files split into byte ranges at line ends. A ``.json`` array is streamed element
    by element (it must be UTF-8) and splits into equal runs of elements, each shard starting
    at the byte of its first element (``record_range`` plus ``byte_range``).

    ``source`` may also be a list of paths, a directory or a glob (``"raw/2024-*.csv.gz"``),
    expanded once here and sorted by path; ``.gz``, ``.bz2``, ``.xz`` and ``.zst`` files are
    read as streams, one shard each, since a compressed stream cannot be cut. ``paths`` lists
    the files (None for one plain path, read exactly as before); see ``docs/guide.md``, "Many
    input files and compressed inputs".
    """

    def __init__(
        self,
        source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        *,
        format: str | None = None,
        batch_size: int = 10_000,
        byte_range: tuple[int, int, int] | None = None,
        record_range: tuple[int, int] | None = None,
    ) -> None:
        expanded = expand_sources(source)
        super().__init__(expanded[0] if expanded is not None else one_path(source))
        self.format = _format_for(self.path, format)
        self.batch_size = batch_size
        self.byte_range = ByteRange(*byte_range) if byte_range is not None else None
        self.record_range = record_range
        #: A list, directory, glob or compressed file: the files, read one after another,
        #: each in the format its own suffix (or ``format``) says.
        self._multi: MultiFileInput | None = None
        #: Every file read, for a run's collision check (None for one plain file).
        self.paths: list[Path] | None = None
        if expanded is not None:
            one = partial(JSONInputAdapter, format=format, batch_size=batch_size)
            self._multi = MultiFileInput.of_files(expanded[0], expanded[1], one)
            self.paths = list(expanded[1])

    def describe(self) -> str:
        if self._multi is not None:
            return f"JSONInputAdapter({self.source!r}, {len(self.paths or ())} files)"
        if self.byte_range is not None:
            r = self.byte_range
            return f"JSONInputAdapter({self.source!r}, bytes {r.start}-{r.end}, from line {r.line})"
        return f"JSONInputAdapter({self.source!r})"

    def max_shards(self, wanted: int) -> int:
        if self._multi is not None:
            return self._multi.max_shards(wanted)
        return super().max_shards(wanted)

    def check(self) -> None:
        if self._multi is not None:
            self._multi.check()
            return
        try:
            with open(self.path, "rb") as f:
                f.read(1)
        except OSError as exc:
            raise InputError(f"cannot read JSON input: {exc.strerror}", path=self.source) from exc
        refuse_hidden_compression(self.path, self.source)

    def _options(self) -> dict[str, Any]:
        return {"format": self.format, "batch_size": self.batch_size}

    def split(self, workers: int) -> list[BaseInputAdapter]:
        check_workers(workers)
        if self._multi is not None:
            return self._multi.split(workers)
        self.check()
        if self.format == "json":
            return self._split_array(workers)
        r = self.byte_range or ByteRange(0, file_size(self.path), 1)
        with open(self.path, "rb") as f:
            ranges = split_ranges(f, r.start, r.end, workers, r.line, None)
        return [
            JSONInputAdapter(self.path, **self._options(), byte_range=(x.start, x.end, x.line))
            for x in ranges
        ]

    def _split_array(self, workers: int) -> list[BaseInputAdapter]:
        """Equal runs of elements; each shard seeks to the byte where its first element starts.

        Two streaming passes over the file: one counts the elements, one finds where the cuts
        fall. Nothing but the positions of the cuts is kept.
        """
        lo, hi = self.record_range or (0, count_elements(self.path, self.source))
        cuts = [lo + (hi - lo) * k // workers for k in range(workers + 1)]
        starts = element_positions(self.path, self.source, [c for c in cuts[:-1] if c < hi])
        size = file_size(self.path)
        shards: list[BaseInputAdapter] = []
        for k in range(workers):
            first, after = starts.get(cuts[k]), starts.get(cuts[k + 1])
            byte_range = None
            if first is not None:
                end = after.offset if after is not None else size
                byte_range = (first.offset, end, first.line)
            shards.append(
                JSONInputAdapter(
                    self.path,
                    **self._options(),
                    byte_range=byte_range,
                    record_range=(cuts[k], cuts[k + 1]),
                )
            )
        return shards

    def batches(self) -> Iterator[InputBatch]:
        if self._multi is not None:
            yield from self._multi.batches()
            return
        self.check()
        if self.format == "json":
            yield from self._array_batches()
        else:
            yield from self._line_batches()

    def _array_batches(self) -> Iterator[InputBatch]:
        lo, hi = self.record_range or (0, None)
        start = None
        if self.byte_range is not None and self.record_range is not None:
            r = self.byte_range
            start = ArrayPosition(index=lo, offset=r.start, line=r.line)
        records: list[Record] = []
        lines: list[int] = []
        malformed: list[Record] = []
        for element in read_elements(self.path, self.source, start=start, stop=hi):
            if element.index < lo:
                continue  # a record_range without its start position: skip to it
            if isinstance(element.value, dict):
                records.append(element.value)
                lines.append(element.line)
            elif isinstance(element.value, TooDeep):
                malformed.append(self._too_deep(element.value.text, element.line, [element.index]))
            else:
                malformed.append(self._not_an_object(element.value, element.line, element.index))
            if len(records) + len(malformed) >= self.batch_size:
                yield self._emit(records, lines, malformed)
                records, lines, malformed = [], [], []
        if records or malformed:
            yield self._emit(records, lines, malformed)

    def _not_an_object(self, item: Any, line: int | None, index: int) -> Record:
        return {
            "source": self.source,
            "line": line,
            "record": {"__raw__": item},
            "errors": [
                {
                    "type": "json_not_object",
                    "loc": [index] if self.format == "json" else [],
                    "msg": f"expected a JSON object, got {type(item).__name__}",
                }
            ],
        }

    def _line_batches(self) -> Iterator[InputBatch]:
        r = self.byte_range or ByteRange(0, file_size(self.path), 1)
        if r.empty:
            return
        records: list[Record] = []
        lines: list[int] = []
        malformed: list[Record] = []
        line_no = r.line
        with open(self.path, "rb") as f:
            f.seek(r.start)
            remaining = r.end - r.start
            while remaining > 0:
                raw = f.readline(remaining)
                if not raw:
                    break
                remaining -= len(raw)
                text = raw.strip()
                if text and len(text) > _SHALLOW and too_deep(text):
                    # Told from the text, before the parser raises RecursionError (or, under a
                    # raised recursion limit, overflows the stack).
                    malformed.append(self._deep_line(raw, line_no))
                elif text:
                    try:
                        item = _json.loads(text)
                    except ValueError as exc:
                        malformed.append(self._bad_line(raw, line_no, exc))
                    except RecursionError:
                        malformed.append(self._deep_line(raw, line_no))
                    else:
                        if isinstance(item, dict):
                            records.append(item)
                            lines.append(line_no)
                        else:
                            malformed.append(self._not_an_object(item, line_no, 0))
                line_no += 1
                if len(records) + len(malformed) >= self.batch_size:
                    yield self._emit(records, lines, malformed)
                    records, lines, malformed = [], [], []
        if records or malformed:
            yield self._emit(records, lines, malformed)

    def _deep_line(self, raw: bytes, line: int) -> Record:
        text = raw.decode("utf-8", "backslashreplace").rstrip("\r\n")
        return self._too_deep(text, line, [])

    def _too_deep(self, text: str, line: int, loc: list[int]) -> Record:
        """The error record of a value nested too deeply: its text, not the value."""
        return {
            "source": self.source,
            "line": line,
            "record": {"__raw__": text},
            "errors": [{"type": "json_invalid", "loc": loc, "msg": TOO_DEEP}],
        }

    def _bad_line(self, raw: bytes, line: int, exc: ValueError) -> Record:
        message = exc.msg if isinstance(exc, _json.JSONDecodeError) else str(exc)
        return {
            "source": self.source,
            "line": line,
            "record": {"__raw__": raw.decode("utf-8", "backslashreplace").rstrip("\r\n")},
            "errors": [{"type": "json_invalid", "loc": [], "msg": f"not valid JSON: {message}"}],
        }

    def _emit(self, records: list[Record], lines: list[int], malformed: list[Record]) -> InputBatch:
        return InputBatch(
            records=records, source=self.source, malformed=malformed, locate=lines.__getitem__
        )


_WRITE_BUFFER = 1 << 20


class _JSONSink(_FileSink):
    """Writes rows as UTF-8 JSON, one object a line, or as an array.

    A JSON Lines sink (``raw_lines``) also takes ready-made text among the rows: a bytes-like
    item holds whole lines, newlines included (what the columnar fast path serialized column by
    column), and is written as it is, in its place among the rows.
    """

    def __init__(
        self,
        path: Path,
        array: bool,
        indent: int | None = None,
        codec: str | None = None,
        level: int | None = None,
    ) -> None:
        self._file = CompressedWriter(path, codec, _WRITE_BUFFER, level)
        self._array = array
        self._indent = indent
        self._first = True
        self.raw_lines = not array
        if array:
            self._file.write(b"[")

    def write(self, rows: Sequence[Record | bytes | memoryview]) -> None:
        out = self._file
        if self._array:
            for row in rows:
                if not isinstance(row, dict):
                    raise ArgumentTypeError("a JSON array sink takes rows, not serialized lines")
                out.write(b"\n" if self._first else b",\n")
                out.write(_element(to_json_bytes(row), self._indent))
                self._first = False
            return
        run: list[Record] = []  # rows waiting to be serialized, between ready-made lines
        for item in rows:
            if isinstance(item, dict):
                run.append(item)
                continue
            if run:
                out.write(_lines(run))
                run = []
            if not isinstance(item, bytes | bytearray | memoryview):
                raise ArgumentTypeError(f"cannot write {type(item).__name__} as JSON Lines")
            out.write(item)
        if run:
            out.write(_lines(run))

    def close(self) -> None:
        if self._file.closed:
            return
        if self._array:
            self._file.write(b"\n]\n" if not self._first else b"]\n")
        self._file.close()


def _element(line: bytes, indent: int | None) -> bytes:
    """One array element: the compact JSON ``line`` as it is, or pretty-printed with ``indent``
    spaces a level, itself one level deep."""
    if indent is None:
        return line
    text = _json.dumps(_json.loads(line), indent=indent, ensure_ascii=False)
    pad = " " * indent
    return "\n".join(pad + part for part in text.split("\n")).encode("utf-8")


def _lines(rows: Sequence[Record]) -> bytes:
    """``rows`` as JSON Lines, a newline after each."""
    return b"\n".join([to_json_bytes(row) for row in rows]) + b"\n"


class JSONOutputAdapter(BaseOutputAdapter):
    """Writes ``.jsonl``/``.ndjson`` as one object a line and ``.json`` as an array.

    ``format`` overrides the choice made from the suffix: ``"jsonl"`` (JSON Lines), or
    ``"array"`` (ZooPipe's name; ``"json"`` is the same). ``indent`` pretty-prints an array
    with that many spaces a level; JSON Lines cannot be indented (one object a line), so
    ``indent`` with ``"jsonl"`` is refused.

    ``compression``: ``"infer"`` (the default) compresses as the suffix says, as ZooPipe does
    (``.gz``, ``.bz2``, ``.xz``, ``.zst``; the format is then chosen from the suffix before it:
    ``x.json.gz`` is a compressed array); ``"gzip"``, ``"bz2"``, ``"xz"`` or ``"zstd"``
    compress a file of any other name; None writes plain text. A choice the suffix
    contradicts is refused; ``compression_level`` as for ``CSVOutputAdapter``. JSON Lines
    parts are merged by concatenating their compressed frames; an array's parts are
    decompressed and written again as one array.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        output: str | os.PathLike[str] | None = None,
        format: str | None = None,
        indent: int | None = None,
        compression: str | None = "infer",
        compression_level: int | None = None,
    ) -> None:
        super().__init__(path, output=output)
        #: The codec written (``"gzip"``, ``"bz2"``, ``"xz"``, ``"zstd"``) or None.
        self.compression = output_codec(self.path, compression)
        self.compression_level = output_level(self.path, self.compression, compression_level)
        self.format = _format_for(plain_path(self.path), format)
        if indent is not None:
            if not isinstance(indent, int) or isinstance(indent, bool) or indent < 0:
                raise ConfigurationError(
                    f"{self.path}: indent must be a number of spaces (0 or more), got {indent!r}"
                )
            if self.format == "jsonl":
                raise ConfigurationError(
                    f"{self.path}: indent needs format='array': JSON Lines holds one object a "
                    "line and cannot be indented"
                )
        self.indent = indent

    @property
    def part_suffix(self) -> str:
        codec = self.compression
        return ".jsonl" + (CODECS[codec] if codec is not None else "")

    def _clone(self) -> JSONOutputAdapter:
        return JSONOutputAdapter(
            self.path,
            format=self.format,
            indent=self.indent,
            compression=self.compression,
            compression_level=self.compression_level,
        )

    def _open_file(self, path: Path, schema: pa.Schema | None) -> _FileSink:
        # Parts of an array output are JSON Lines; merge() turns them into one array.
        array = self.format == "json" and self.writes_final_format
        return _JSONSink(
            path, array, self.indent, codec=self.compression, level=self.compression_level
        )

    def merge(self, parts: Sequence[Path], destination: Path) -> None:
        """JSON Lines: the parts' bytes one after another (compressed parts are whole frames,
        so their concatenation is one valid compressed file). An array: every part's lines as
        the elements of one array (written through the codec again)."""
        codec = self.compression
        if self.format == "jsonl":
            with open(destination, "wb") as out:
                copied = 0
                for part in parts:
                    with open(part, "rb") as f:
                        copied += copy_from(f, out)
                if codec is not None and copied == 0:
                    out.write(empty_frame(codec))
                out.flush()
                os.fsync(out.fileno())
            return
        with CompressedWriter(destination, codec, _WRITE_BUFFER, self.compression_level) as out:
            first = True
            out.write(b"[")
            for part in parts:
                with open_decompressed(part, codec) if codec else open(part, "rb") as f:
                    for line in f:
                        line = line.rstrip(b"\n")
                        if line:
                            out.write(b"\n" if first else b",\n")
                            out.write(_element(line, self.indent))
                            first = False
            out.write(b"]\n" if first else b"\n]\n")
