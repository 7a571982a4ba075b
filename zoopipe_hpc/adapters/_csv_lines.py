"""Where the records of a CSV byte range start: the range's stream and its line locator (private).

:class:`RangeStream` feeds pyarrow the header and one shard's byte range; :class:`LineLocator`
finds the physical line of a record pyarrow reported (an invalid or malformed one) without
parsing the range a second time. Both serve :class:`~zoopipe_hpc.adapters.csv.CSVInputAdapter`.
"""

from __future__ import annotations

import bisect
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import ConfigurationError
from ._split import ByteRange

__all__ = ["LOCATOR_CHUNK", "LineLocator", "RangeStream", "line_ends"]


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


class LineLocator:
    """Physical line numbers of the records of a byte range, found lazily, as needed.

    Records are counted as pyarrow (and the ``csv`` module) counts them: a line end (LF, CR LF
    or a lone CR) outside quotes ends a record, a quote opens a quoted field only at the start
    of a field, and empty lines are not records. The range is read forward in chunks of whole
    lines. A chunk in which no quoted field holds a line end and no line is empty (what almost
    every file is made of) holds one record a line: that is checked with a few ``bytes``
    searches and one regular expression run in C, and then a record's line is arithmetic. Only
    other chunks are parsed record by record. Nothing is read until a line is asked for (an
    invalid or malformed record), and nothing is read twice, except a chunk parsed record by
    record when a line in it is asked for after a later chunk was parsed.
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
        self._starts: tuple[int, list[int]] | None = None  # a parsed chunk's record lines

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
            more = self._read(LOCATOR_CHUNK)
            data += more
            final = self._read_to >= self._range.end or not more
            if not data:
                return None
            cut = len(data) if final else data.rfind(b"\n") + 1
            if cut == 0:
                continue  # no line end yet: a longer line
            block = data[:cut]
            if (final and not block.endswith(b"\n")) or not self._simple(block):
                starts, used, end_line = self._parse(block, line, final)
                if not used:
                    continue  # a quoted field runs on past what was read
                chunk = _Chunk(self._offset, used, first, len(starts), line, end_line, False, final)
                self._starts = (len(self._chunks), starts)
            else:
                used = cut
                count = block.count(b"\n")
                chunk = _Chunk(self._offset, used, first, count, line, line + count, True, final)
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

    def _parse(self, block: bytes, line: int, final: bool) -> tuple[list[int], int, int]:
        """(start line of each record, bytes of whole records, the line after them) of
        ``block``, record by record."""
        record = self._compiled()[0]
        starts: list[int] = []
        pos = 0
        size = len(block)
        while pos < size:
            fields = record.match(block, pos)  # matches, if only the empty string
            end = fields.end() if fields is not None else pos
            if end < size and block[end : end + 1] == self._quote:
                if not final:
                    break  # the quoted field opened here closes in bytes not read yet
                end = size  # open up to the end of the range: the rest is one record
            if end > pos:
                starts.append(line)
            line += line_ends(block[pos:end])
            if end < size:
                end += 2 if block.startswith(b"\r\n", end) else 1
                line += 1
            elif end > pos and not block.endswith((b"\n", b"\r")):
                line += 1  # a last line without a line end is a line still
            pos = end
        return starts, pos, line

    # -- lines ------------------------------------------------------------------------------------

    def line_of(self, row: int) -> int:
        """Line where record number ``row`` (0-based within the range) starts; past the last
        record, the line after the range."""
        while not self._chunks or row >= self._chunks[-1].first + self._chunks[-1].count:
            if self._chunks and self._chunks[-1].final:
                return self._chunks[-1].end_line
            if self._next_chunk() is None:
                return self._chunks[-1].end_line if self._chunks else self._range.line
        index = bisect.bisect_right(self._firsts, row) - 1
        chunk = self._chunks[index]
        if chunk.simple:
            return chunk.line + row - chunk.first
        if self._starts is None or self._starts[0] != index:
            with open(self._path, "rb") as f:
                f.seek(chunk.offset)
                block = f.read(chunk.size)
            self._starts = (index, self._parse(block, chunk.line, chunk.final)[0])
        return self._starts[1][row - chunk.first]

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
