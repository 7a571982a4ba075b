"""Where the records of a CSV byte range start: the range's stream and its line locator (private).

:class:`RangeStream` feeds pyarrow the header and one shard's byte range; :class:`LineLocator`
finds the physical line of a record pyarrow reported (an invalid or malformed one) without
parsing the range a second time, and the byte where a record starts, where the reader has to
start again (see :mod:`._csv_read`). Both serve
:class:`~zoopipe_hpc.adapters.csv.CSVInputAdapter`.
"""

from __future__ import annotations

import bisect
import io
import re
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from ..errors import ConfigurationError, InputError
from ._split import ByteRange, _find_record_end, _skip_quoted_then_find

__all__ = [
    "LOCATOR_CHUNK",
    "RECORD_LIMIT",
    "LineLocator",
    "OpenQuote",
    "RangeStream",
    "line_ends",
]


def line_ends(data: bytes) -> int:
    """Line ends (LF, CR LF, lone CR) in ``data``, as the csv module counts lines."""
    return data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n")


class RangeStream(io.RawIOBase):
    """A read-only stream of ``prefix`` followed by bytes ``[start, end)`` of a file."""

    def __init__(self, path: Path, prefix: bytes, start: int, end: int) -> None:
        super().__init__()
        self._file = open(path, "rb")  # noqa: SIM115 - closed in close()
        self._file.seek(start)
        self._prefix = prefix
        self._remaining = end - start

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._prefix:
            n = min(len(view), len(self._prefix))
            view[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        if self._remaining <= 0:
            return 0
        n = self._file.readinto(view[: min(len(view), self._remaining)])
        self._remaining -= n or 0
        return n or 0

    def close(self) -> None:
        self._file.close()
        super().close()


#: Bytes read at a time by the line locator.
LOCATOR_CHUNK = 1 << 20

#: The longest record read: a longer one is refused with an InputError naming its line.
RECORD_LIMIT = 64 << 20


@dataclass(frozen=True)
class _Chunk:
    """Whole records of the range, from byte ``offset`` on: ``count`` records, the first of
    them record number ``first``, starting at line ``line``; ``end_line`` is the line after."""

    offset: int
    size: int
    first: int
    count: int
    line: int
    end_line: int
    simple: bool  # one record a line: record ``first + k`` starts at line ``line + k``
    final: bool  # the chunk runs to the end of the range


@dataclass(frozen=True)
class _Detail:
    """Where each record of chunk ``index`` starts: its line (None in a simple chunk, where
    that is arithmetic) and its offset in ``block`` (the chunk's bytes); ``offsets`` has one
    entry more than the chunk has records, the end of the chunk."""

    index: int
    lines: list[int] | None
    offsets: list[int]
    block: bytes


class _Parsed(NamedTuple):
    starts: list[int]  # start line of each record
    offsets: list[int]  # start of each record in the block
    used: int  # bytes of whole records
    line: int  # the line after them
    opened: tuple[int, int] | None  # (line, position) of a quote the block ends inside


@dataclass(frozen=True)
class OpenQuote:
    """A quoted field that is still open where the range ends: record ``row`` holds it, its
    quote is at ``line`` (byte ``offset`` of the file) and the range's last line is
    ``last_line``."""

    row: int
    line: int
    offset: int
    last_line: int


class LineLocator:
    """Physical line numbers and byte offsets of the records of a byte range, found lazily.

    Records are counted as pyarrow (and the ``csv`` module) counts them: a line end (LF, CR LF
    or a lone CR) outside quotes ends a record, a quote opens a quoted field only at the start
    of a field, and empty lines are not records. The range is read forward in chunks of whole
    lines. A chunk in which no quoted field holds a line end and no line is empty (what almost
    every file is made of) holds one record a line: that is checked with a few ``bytes``
    searches and one regular expression run in C, and then a record's line is arithmetic. Only
    other chunks are parsed record by record. Nothing is read until a line is asked for (an
    invalid or malformed record), and nothing is read twice, except a chunk parsed record by
    record when a line in it is asked for after a later chunk was parsed, and a chunk whose
    byte offsets are asked for (:meth:`start_of`, :meth:`raw`).

    A record longer than :data:`RECORD_LIMIT` is not held in memory: reaching it raises an
    :class:`~zoopipe_hpc.errors.InputError` naming its line and length.
    """

    def __init__(self, path: Path, byte_range: ByteRange, delimiter: str, quote_char: str) -> None:
        self._path = path
        self._range = byte_range
        self._delimiter = delimiter.encode()
        self._quote = quote_char.encode()
        self._patterns: tuple[re.Pattern[bytes], re.Pattern[bytes]] | None = None
        self._file: BinaryIO | None = None
        self._chunks: list[_Chunk] = []
        self._firsts: list[int] = []  # first record of each chunk, for bisect
        self._offset = byte_range.start  # where the next chunk starts
        self._rest = b""  # bytes read past the last chunk
        self._read_to = byte_range.start  # where the next read starts
        self._detail: _Detail | None = None  # one chunk's record starts, kept for the next ask
        self._open: OpenQuote | None = None
        #: The reader asks from its thread, the pipe (the lines of error records) from its own
        #: when the input is read ahead: one at a time.
        self._lock = threading.RLock()

    # -- the two regular expressions ------------------------------------------------------------

    def _compiled(self) -> tuple[re.Pattern[bytes], re.Pattern[bytes]]:
        if self._patterns is None:
            if len(self._quote) != 1 or len(self._delimiter) != 1:
                raise ConfigurationError("delimiter and quote_char must be single ASCII characters")
            q = re.escape(self._quote)
            starts = re.escape(self._delimiter) + rb"\r\n"
            content = b"[^" + q + b"]*+(?:" + q + q + b"[^" + q + b"]*+)*+"
            closed = b"(?<![^" + starts + b"])" + q + content + q
            stray = b"(?<=[^" + starts + b"])" + q
            #: One record's fields, up to its line end (or to a quoted field that stays open).
            record = re.compile(b"(?:[^" + q + rb"\r\n]++|" + closed + b"|" + stray + b")*+")
            #: A quote at a field start followed by a line end before any closing quote. Every
            #: quoted field holding a line end is found (a search may also stop at a quote inside
            #: a quoted field: the chunk is then just parsed record by record).
            inside = b"[^" + q + rb"\r\n]*+"  # quoted text up to a quote or a line end
            opener = q + b"(?<![^" + starts + b"]" + q + b")"  # a quote at a field start
            multiline = re.compile(opener + inside + b"(?:" + q + q + inside + rb")*+[\r\n]")
            self._patterns = (record, multiline)
        return self._patterns

    # -- reading chunks -------------------------------------------------------------------------

    def _read(self, size: int) -> bytes:
        remaining = self._range.end - self._read_to
        if remaining <= 0:
            return b""
        if self._file is None:
            self._file = open(self._path, "rb")  # noqa: SIM115 - closed in close()
            self._file.seek(self._read_to)
        data = self._file.read(min(size, remaining))
        self._read_to += len(data)
        return data

    def _next_chunk(self) -> _Chunk | None:
        """Read and index the next chunk of whole records; None at the end of the range."""
        data = self._rest
        last = self._chunks[-1] if self._chunks else None
        first = last.first + last.count if last else 0
        line = last.end_line if last else self._range.line
        while True:
            # A record longer than a chunk: read twice as much each time (not quadratically),
            # up to the limit of a record.
            size = max(LOCATOR_CHUNK, min(len(data), RECORD_LIMIT + 1 - len(data)))
            more = self._read(size)
            data += more
            final = self._read_to >= self._range.end or not more
            if not data:
                return None
            cut = len(data) if final else data.rfind(b"\n") + 1
            if cut == 0:
                if len(data) > RECORD_LIMIT:
                    raise self._refuse(data, line)
                continue  # no line end yet: a longer line
            block = data[:cut]
            index = len(self._chunks)
            if (final and not block.endswith(b"\n")) or not self._simple(block):
                parsed = self._parse(block, line, final)
                used = parsed.used
                if not used:
                    if len(data) > RECORD_LIMIT:
                        raise self._refuse(data, line)
                    continue  # a quoted field runs on past what was read
                count = len(parsed.starts)
                offsets = [*parsed.offsets, used]
                chunk = _Chunk(self._offset, used, first, count, line, parsed.line, False, final)
                first_size = offsets[1] - offsets[0] if count else 0
                self._detail = _Detail(index, parsed.starts, offsets, block[:used])
                if parsed.opened is not None:
                    quote_line, position = parsed.opened
                    self._open = OpenQuote(
                        first + count - 1, quote_line, self._offset + position, parsed.line - 1
                    )
            else:
                used = cut
                count = block.count(b"\n")
                chunk = _Chunk(self._offset, used, first, count, line, line + count, True, final)
                first_size = block.find(b"\n") + 1
            if first_size > RECORD_LIMIT:
                raise self._refuse(data, line)  # the end of the range ends a long record
            self._chunks.append(chunk)
            self._firsts.append(first)
            self._offset += used
            self._rest = data[used:]
            return chunk

    def _simple(self, block: bytes) -> bool:
        """True when ``block`` (whole lines, from a record start) holds one record a line."""
        if block.startswith(b"\n") or b"\n\n" in block:
            return False  # an empty line
        if b"\r" in block and (
            block.count(b"\r") != block.count(b"\r\n")  # a lone CR ends a line too
            or block.startswith(b"\r\n")
            or b"\n\r\n" in block
        ):
            return False
        return self._quote not in block or self._compiled()[1].search(block) is None

    def _parse(self, block: bytes, line: int, final: bool) -> _Parsed:
        """Where each record of ``block`` starts, record by record (see :class:`_Parsed`)."""
        record = self._compiled()[0]
        starts: list[int] = []
        offsets: list[int] = []
        opened: tuple[int, int] | None = None
        pos = 0
        size = len(block)
        while pos < size:
            fields = record.match(block, pos)  # matches, if only the empty string
            end = fields.end() if fields is not None else pos
            if end < size and block[end : end + 1] == self._quote:
                if not final:
                    break  # the quoted field opened here closes in bytes not read yet
                opened = (line + line_ends(block[pos:end]), end)
                end = size  # open up to the end of the range: the rest is one record
            if end > pos:
                starts.append(line)
                offsets.append(pos)
            line += line_ends(block[pos:end])
            if end < size:
                end += 2 if block.startswith(b"\r\n", end) else 1
                line += 1
            elif end > pos and not block.endswith((b"\n", b"\r")):
                line += 1  # a last line without a line end is a line still
            pos = end
        return _Parsed(starts, offsets, pos, line, opened)

    # -- a record too long to hold ----------------------------------------------------------------

    def _refuse(self, data: bytes, line: int) -> InputError:
        """The error for the record ``data`` starts with, longer than :data:`RECORD_LIMIT`
        (``line``: where ``data`` starts). Its end is found reading on, in bounded memory."""
        blank = len(data) - len(data.lstrip(b"\r\n"))  # empty lines before the record
        line += line_ends(data[:blank])
        start = self._offset + blank
        fields = self._compiled()[0].match(data, blank)
        end = fields.end() if fields is not None else blank
        limit = _mib(RECORD_LIMIT, 0)
        with open(self._path, "rb") as f:
            if data[end : end + 1] == self._quote:
                quote = self._offset + end  # a quoted field still open where ``data`` ends
                if not _closes(f, quote, self._range.end, self._quote):
                    return InputError(
                        f"a quoted field opened at line {line + line_ends(data[blank:end])} "
                        f"(byte {quote}) is never closed: it runs to the end of the input "
                        f"({_mib(self._range.end - start)}), more than the {limit} a record may "
                        "hold; is a closing quote missing?",
                        path=str(self._path),
                        line=line,
                    )
                stop = _skip_quoted_then_find(f, quote + 1, self._range.end, self._quote)
            elif end < len(data):
                stop = self._offset + end + (2 if data.startswith(b"\r\n", end) else 1)
            else:
                stop = _find_record_end(f, self._offset + len(data), self._range.end, self._quote)
        return InputError(
            f"a record of {_mib(stop - start)} starts here (bytes {start}-{stop}); records "
            f"longer than {limit} are refused",
            path=str(self._path),
            line=line,
        )

    # -- lines and offsets ------------------------------------------------------------------------

    def _chunk_of(self, row: int) -> int | None:
        """Index of the chunk holding record ``row`` (read up to it); None past the last."""
        while not self._chunks or row >= self._chunks[-1].first + self._chunks[-1].count:
            if self._chunks and self._chunks[-1].final:
                return None
            if self._next_chunk() is None:
                return None
        return bisect.bisect_right(self._firsts, row) - 1

    def _details(self, index: int) -> _Detail:
        if self._detail is None or self._detail.index != index:
            chunk = self._chunks[index]
            with open(self._path, "rb") as f:
                f.seek(chunk.offset)
                block = f.read(chunk.size)
            if chunk.simple:
                offsets = [0, *(m.end() for m in re.finditer(b"\n", block))]
                self._detail = _Detail(index, None, offsets, block)
            else:
                parsed = self._parse(block, chunk.line, chunk.final)
                self._detail = _Detail(index, parsed.starts, [*parsed.offsets, parsed.used], block)
        return self._detail

    def line_of(self, row: int) -> int:
        """Line where record number ``row`` (0-based within the range) starts; past the last
        record, the line after the range."""
        with self._lock:
            index = self._chunk_of(row)
            if index is None:
                return self._chunks[-1].end_line if self._chunks else self._range.line
            chunk = self._chunks[index]
            if chunk.simple:
                return chunk.line + row - chunk.first
            lines = self._details(index).lines
            if lines is None:  # pragma: no cover - a parsed chunk has its lines
                raise ConfigurationError("internal: a parsed chunk without lines")
            return lines[row - chunk.first]

    def start_of(self, row: int) -> int:
        """Offset in the file where record ``row`` starts; past the last, the range's end."""
        with self._lock:
            index = self._chunk_of(row)
            if index is None:
                return self._range.end
            chunk = self._chunks[index]
            return chunk.offset + self._details(index).offsets[row - chunk.first]

    def raw(self, row: int) -> bytes:
        """The bytes of record ``row``, its line end included (and the empty lines after it
        that the locator read with it)."""
        with self._lock:
            index = self._chunk_of(row)
            if index is None:
                return b""
            detail = self._details(index)
            k = row - self._chunks[index].first
            return detail.block[detail.offsets[k] : detail.offsets[k + 1]]

    def open_quote(self) -> OpenQuote | None:
        """The quoted field still open where the range ends, if any (reads to the end)."""
        with self._lock:
            self._chunk_of(sys.maxsize)
            return self._open

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def _closes(f: BinaryIO, quote: int, stop: int, char: bytes) -> bool:
    """True when the quoted field opened at byte ``quote`` closes before ``stop``."""
    f.seek(quote + 1)
    position = quote + 1
    while position < stop:
        chunk = f.read(min(LOCATOR_CHUNK, stop - position))
        if not chunk:
            return False
        if char in chunk:
            return True
        position += len(chunk)
    return False


def _mib(size: int, digits: int = 1) -> str:
    return f"{size / 2**20:.{digits}f} MiB"
