"""Byte ranges of a line-oriented file cut at record boundaries.

For CSV a newline only ends a record outside a quoted field. With RFC 4180 quoting (a quote
inside a quoted field is doubled), whether a byte lies inside quotes is the parity of the quote
characters before it, so one sequential pass that counts quotes (in C, with ``bytes.count``)
finds every boundary exactly, however many newlines, commas or quotes the fields hold.
JSON Lines cannot hold a raw newline inside a value, so every newline is a boundary.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import BinaryIO

__all__: list[str] = []

CHUNK = 1 << 20


@dataclass(frozen=True)
class ByteRange:
    """Bytes ``[start, end)`` of a file; ``line`` is the 1-based line number at ``start``."""

    start: int
    end: int
    line: int

    @property
    def empty(self) -> bool:
        return self.end <= self.start


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


def _quote_parity(f: BinaryIO, start: int, end: int, quote: bytes | None) -> tuple[bool, int]:
    """(odd number of quotes in [start, end), number of newlines in [start, end))."""
    odd = False
    newlines = 0
    f.seek(start)
    remaining = end - start
    while remaining > 0:
        chunk = f.read(min(CHUNK, remaining))
        if not chunk:
            break
        if quote and chunk.count(quote) % 2:
            odd = not odd
        newlines += chunk.count(b"\n")
        remaining -= len(chunk)
    return odd, newlines


def split_ranges(
    f: BinaryIO, start: int, end: int, parts: int, first_line: int, quote: bytes | None
) -> list[ByteRange]:
    """Cut ``[start, end)`` (which begins at a record boundary) into ``parts`` ranges.

    The ranges are contiguous, cover every byte once and begin at record boundaries; some may
    be empty when the file has fewer records than ``parts``.
    """
    cuts = [start]
    line = first_line
    lines = [first_line]
    position = start
    for k in range(1, parts):
        target = start + (end - start) * k // parts
        if target <= position:
            cuts.append(position)
            lines.append(line)
            continue
        odd, newlines = _quote_parity(f, position, target, quote)
        if odd:
            # ``target`` is inside a quoted field: the field's closing quote comes first.
            f.seek(target)
            boundary = _skip_quoted_then_find(f, target, end, quote)
        else:
            boundary = _find_record_end(f, target, end, quote) if target > start else start
        _, more = _quote_parity(f, target, boundary, None)
        line += newlines + more
        position = boundary
        cuts.append(boundary)
        lines.append(line)
    cuts.append(end)
    return [ByteRange(cuts[i], cuts[i + 1], lines[i]) for i in range(parts)]


def _skip_quoted_then_find(f: BinaryIO, pos: int, limit: int, quote: bytes | None) -> int:
    """From inside a quoted field, find the end of the record that contains ``pos``."""
    if not quote:
        return _find_record_end(f, pos, limit, quote)
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


def header_end(f: BinaryIO, size: int, quote: bytes | None) -> int:
    """Offset just past the first record (the header line)."""
    return _find_record_end(f, 0, size, quote)


def file_size(path: str | os.PathLike[str]) -> int:
    return os.stat(path).st_size
