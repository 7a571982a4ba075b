"""Byte ranges of a line-oriented file cut at record boundaries.

For CSV a newline only ends a record outside a quoted field, so each cut needs to know whether
the byte it lands on is inside quotes. That is decided by one sequential pass from a known
record boundary, under one of two quoting rules:

* ``delimiter=None``: strict RFC 4180, where every quote outside a quoted field opens one and
  a quote inside is doubled. Whether a byte lies inside quotes is then the parity of the quote
  characters before it, counted in C with ``bytes.count``. This is exact for every file whose
  quotes appear only in quoted fields (what ``csv.writer`` and pyarrow write).
* ``delimiter`` given: the rule of pyarrow's CSV reader and of Python's ``csv`` module. A quote
  opens a quoted field only at the start of a field (after the delimiter, a line end, or at the
  start of a record); anywhere else (``5"``, ``ab"c``, after a closing quote) it is an ordinary
  character. The pass steps over whole quoted fields with a regular expression run in C over a
  memory map of the file. It is exact for every file those readers accept, stray quotes
  included; when most fields are quoted it is a few times slower than the parity count.

Line numbers of CSV ranges count ``\\r\\n``, ``\\r`` and ``\\n`` as one line end each, as the
``csv`` module reading a file opened with ``newline=""`` does. JSON Lines cannot hold a raw
newline inside a value, so every ``\\n`` is a boundary and the only line end counted.
"""

from __future__ import annotations

import contextlib
import io
import mmap
import os
import re
from dataclasses import dataclass
from typing import BinaryIO

from ..errors import ConfigurationError

__all__: list[str] = []

CHUNK = 1 << 20

_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class ByteRange:
    """Bytes ``[start, end)`` of a file; ``line`` is the 1-based line number at ``start``."""

    start: int
    end: int
    line: int

    @property
    def empty(self) -> bool:
        return self.end <= self.start


# -- strict RFC 4180 (quote parity) -------------------------------------------------------------


def _find_record_end(f: BinaryIO, pos: int, limit: int, quote: bytes | None) -> int:
    """Offset just past the first record terminator at or after ``pos`` (outside quotes).

    ``pos`` must lie outside quotes. Returns ``limit`` when no terminator is found before it.
    """
    inside = False
    f.seek(pos)
    offset = pos
    while offset < limit:
        chunk = f.read(min(CHUNK, limit - offset))
        if not chunk:
            return limit
        i = 0
        while True:
            if inside:
                q = chunk.find(quote, i) if quote else -1
                if q < 0:
                    break
                inside = False
                i = q + 1
                continue
            n = chunk.find(b"\n", i)
            q = chunk.find(quote, i) if quote else -1
            if n >= 0 and (q < 0 or n < q):
                return offset + n + 1
            if q < 0:
                break
            inside = True
            i = q + 1
        offset += len(chunk)
    return limit


def _scan(
    f: BinaryIO,
    start: int,
    end: int,
    quote: bytes | None,
    universal: bool,
    cr_before: bool = False,
) -> tuple[bool, int, bool]:
    """(odd number of quotes, number of line ends, ends with CR) of bytes ``[start, end)``.

    Line ends are LF, or with ``universal`` also CR LF (counted once) and a lone CR.
    ``cr_before``: the byte before ``start`` is a CR, so an LF at ``start`` ends no new line.
    """
    odd = False
    lines = 0
    f.seek(start)
    remaining = end - start
    while remaining > 0:
        chunk = f.read(min(CHUNK, remaining))
        if not chunk:
            break
        remaining -= len(chunk)
        if quote and chunk.count(quote) % 2:
            odd = not odd
        lines += chunk.count(b"\n")
        if universal:
            returns = chunk.count(b"\r")
            if returns:
                lines += returns - chunk.count(b"\r\n")
            if cr_before and chunk.startswith(b"\n"):
                lines -= 1  # a CR LF cut in two by the chunking is one line end
            cr_before = chunk.endswith(b"\r")
    return odd, lines, cr_before


def _skip_quoted_then_find(f: BinaryIO, pos: int, limit: int, quote: bytes) -> int:
    """From inside a quoted field, find the end of the record that contains ``pos``."""
    offset = pos
    f.seek(pos)
    while offset < limit:
        chunk = f.read(min(CHUNK, limit - offset))
        if not chunk:
            return limit
        q = chunk.find(quote)
        if q >= 0:
            return _find_record_end(f, offset + q + 1, limit, quote)
        offset += len(chunk)
    return limit


def _after_line_feed(f: BinaryIO, pos: int) -> bool:
    if pos <= 0:
        return False
    f.seek(pos - 1)
    return f.read(1) == b"\n"


def _parity_cut(
    f: BinaryIO, position: int, target: int, limit: int, quote: bytes | None, universal: bool
) -> tuple[int, int]:
    """(first record boundary at or after ``target``, line ends from ``position`` to it).

    ``position`` is a record boundary; one pass counts the quotes and the line ends up to
    ``target``, a second one the line ends from ``target`` to the boundary found.
    """
    odd, lines, cr_before = _scan(f, position, target, quote, universal)
    if quote and odd:
        # ``target`` is inside a quoted field: the field's closing quote comes first.
        boundary = _skip_quoted_then_find(f, target, limit, quote)
    elif _after_line_feed(f, target):
        boundary = target  # ``target`` already starts a record: cut there, not one record on
    else:
        boundary = _find_record_end(f, target, limit, quote)
    _, more, _ = _scan(f, target, boundary, None, universal, cr_before)
    return boundary, lines + more


# -- lenient quoting, as pyarrow and the csv module read it ------------------------------------


class _LenientScanner:
    """Record ends of a CSV buffer where a quote opens a quoted field only at a field start."""

    def __init__(self, buf: bytes | mmap.mmap, quote: bytes, delimiter: bytes) -> None:
        if len(quote) != 1 or len(delimiter) != 1:
            raise ConfigurationError("quote and delimiter must be one byte each")
        self.buf = buf
        self.quote = quote
        q = re.escape(quote)
        starts = re.escape(delimiter) + b"\\r\\n"
        content = b"[^" + q + b"]*+(?:" + q + q + b"[^" + q + b"]*+)*+"
        at_start = b"(?<![^" + starts + b"])"
        closed = at_start + q + content + q  # a whole quoted field, closing quote included
        stray = b"(?<=[^" + starts + b"])" + q  # an ordinary character
        #: A quoted field from its opening quote, closed or running to the end of the buffer.
        self.field = re.compile(q + content + q + b"?")
        #: Everything up to the first opening quote whose field does not close in the buffer.
        self.run = re.compile(b"(?:[^" + q + b"]++|" + closed + b"|" + stray + b")*+")
        #: The same, stopping also at a line feed outside quotes.
        self.line = re.compile(b"(?:[^" + q + b"\\n]++|" + closed + b"|" + stray + b")*+")

    def boundary(self, position: int, target: int, limit: int) -> int:
        """First record boundary at or after ``target``, scanning from the boundary ``position``."""
        buf = self.buf
        # Cut before a run of quotes, so that a field cannot seem to close at ``target - 1``
        # when the quote there is the first of a doubled pair.
        while target > position and buf[target - 1 : target] == self.quote:
            target -= 1
        scanned = self.run.match(buf, position, target)
        if scanned is not None and scanned.end() < target:
            # ``target`` is inside the quoted field opened at ``scanned.end()``.
            field = self.field.match(buf, scanned.end(), limit)
            target = field.end() if field is not None else limit
        elif target > position and buf[target - 1 : target] == b"\n":
            return target  # outside quotes, just after a line feed: a record starts here
        return self.record_end(target, limit)

    def record_end(self, pos: int, limit: int, field_start: bool = False) -> int:
        """Offset just past the first line feed outside quotes at or after ``pos`` (or ``limit``).

        ``pos`` must lie outside quotes; with ``field_start`` a quote at ``pos`` opens a field
        whatever byte precedes it (a byte order mark, say).
        """
        buf = self.buf
        if field_start and buf[pos : pos + 1] == self.quote:
            field = self.field.match(buf, pos, limit)
            pos = field.end() if field is not None else limit
        if pos >= limit:
            return limit
        scanned = self.line.match(buf, pos, limit)
        end = scanned.end() if scanned is not None else pos
        if end < limit and buf[end : end + 1] == b"\n":
            return end + 1
        return limit  # no line end before ``limit``, or a quoted field open up to it


class _Mapped:
    """The whole of ``f`` as a read-only memory map (or its bytes, when it cannot be mapped)."""

    def __init__(self, f: BinaryIO) -> None:
        self._map: mmap.mmap | None = None
        self.buf: bytes | mmap.mmap = b""
        try:
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            self.buf = self._map
        except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
            f.seek(0)
            self.buf = f.read()

    def __enter__(self) -> bytes | mmap.mmap:
        return self.buf

    def __exit__(self, *exc: object) -> None:
        if self._map is not None:
            self._map.close()


# -- both ----------------------------------------------------------------------------------------


def split_ranges(
    f: BinaryIO,
    start: int,
    end: int,
    parts: int,
    first_line: int,
    quote: bytes | None,
    *,
    delimiter: bytes | None = None,
    universal_newlines: bool | None = None,
) -> list[ByteRange]:
    """Cut ``[start, end)`` (which begins at a record boundary) into ``parts`` ranges.

    The ranges are contiguous, cover every byte once and begin at record boundaries; some may
    be empty when the file has fewer records than ``parts``. ``quote`` (None: no quoting, as in
    JSON Lines) and ``delimiter`` choose the quoting rule (see the module docstring).
    ``universal_newlines`` (default: True when ``quote`` is given) also counts CR and CR LF as
    line ends in the ``line`` of each range.
    """
    if universal_newlines is None:
        universal_newlines = bool(quote)
    cuts = [start]
    lines = [first_line]
    line = first_line
    position = start
    lenient = bool(quote) and delimiter is not None and parts > 1 and end > start
    with _Mapped(f) if lenient else contextlib.nullcontext(b"") as buf:
        scanner = (
            _LenientScanner(buf, quote, delimiter) if quote and delimiter and lenient else None
        )
        for k in range(1, parts):
            target = start + (end - start) * k // parts
            if target > position:
                if scanner is not None:
                    boundary = scanner.boundary(position, target, end)
                    ends = _scan(f, position, boundary, None, universal_newlines)[1]
                else:
                    boundary, ends = _parity_cut(
                        f, position, target, end, quote, universal_newlines
                    )
                line += ends
                position = boundary
            cuts.append(position)
            lines.append(line)
    cuts.append(end)
    return [ByteRange(cuts[i], cuts[i + 1], lines[i]) for i in range(parts)]


def header_end(
    f: BinaryIO, size: int, quote: bytes | None, delimiter: bytes | None = None, start: int = 0
) -> int:
    """Offset just past the first record (the header line) at or after ``start``.

    With ``delimiter`` (lenient quoting), a UTF-8 byte order mark before the header is skipped
    the way pyarrow skips it, so a quote right after it opens a field.
    """
    if not quote or delimiter is None or size <= start:
        return _find_record_end(f, start, size, quote)
    with _Mapped(f) as buf:
        first = start
        if start == 0 and buf[: len(_BOM)] == _BOM:
            first = len(_BOM)
        return _LenientScanner(buf, quote, delimiter).record_end(first, size, field_start=True)


def file_size(path: str | os.PathLike[str]) -> int:
    return os.stat(path).st_size
