"""Streaming reader of a JSON array file: one element at a time, in bounded memory.

The standard parser needs the whole document; this reader decodes the file in chunks and hands
each element of the top-level array to :meth:`json.JSONDecoder.raw_decode` on its own, so memory
holds one chunk plus the element being parsed. It knows the line each element starts on and,
when asked, its byte offset, which is where a shard made by ``split`` starts reading.

A value that ends near the end of what has been decoded so far may continue (``1`` of ``1.5``
parses as a whole number), and a parse error near the end of the buffer may be a cut element, so
in both cases the reader decodes more and parses again; only at the end of the file is an error
final.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Container, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import InputError

__all__ = ["ArrayPosition", "Element", "count_elements", "element_positions", "read_elements"]

#: Bytes read from the file at a time.
CHUNK_BYTES = 1 << 20
#: The largest element (in characters) the reader buffers before calling the input broken.
MAX_ELEMENT_CHARS = 256 << 20
# A parse error this close to the end of the buffer may be an element cut by the chunking.
_LOOKAHEAD = 16
_BLANKS = re.compile(r"[ \t\n\r]*")
_SEPARATOR = re.compile(r"[ \t\n\r]*([,\]])")
_NOT_AN_ARRAY = "a .json input must hold an array of objects"


@dataclass(frozen=True)
class ArrayPosition:
    """Where element ``index`` of the array starts: byte ``offset``, 1-based ``line``."""

    index: int
    offset: int
    line: int


class Element:
    """One element of the array: its ``value``, ``index`` and the ``line`` it starts on."""

    __slots__ = ("index", "line", "value", "offset")

    def __init__(self, index: int, line: int, value: Any, offset: int | None = None) -> None:
        self.index = index
        self.line = line
        self.value = value
        self.offset = offset  # the byte it starts at, when asked for


class _Scanner:
    """Decoded text of a file, consumed from the front.

    Lines are counted lazily: ``_line`` is the line of buffer position ``_line_pos``, and
    :meth:`line_at` counts the newlines from there (positions asked for never go backwards).
    """

    def __init__(
        self, f: BinaryIO, source: str, start: ArrayPosition | None, chunk_bytes: int
    ) -> None:
        self._f = f
        self._source = source
        self._chunk_bytes = chunk_bytes
        self._decoder = codecs.getincrementaldecoder("utf-8-sig" if start is None else "utf-8")()
        self._read_to = start.offset if start is not None else 0  # file offset read up to
        self._buf = ""
        self._pos = 0
        self._line = start.line if start is not None else 1
        self._line_pos = 0
        self._eof = False
        self._decode = json.JSONDecoder().raw_decode

    def line_at(self, pos: int) -> int:
        """The line of buffer position ``pos`` (at or after the last one asked for)."""
        self._line += self._buf.count("\n", self._line_pos, pos)
        self._line_pos = pos
        return self._line

    def error(self, message: str, pos: int | None = None) -> InputError:
        """An :class:`InputError` at buffer position ``pos`` (default: the cursor)."""
        where = self._pos if pos is None else pos
        line = self._line + self._buf.count("\n", self._line_pos, where)
        return InputError(message, path=self._source, line=line)

    def _more(self) -> bool:
        """Decode another chunk (at least as much as is buffered); False at the end of file."""
        if self._eof:
            return False
        pending = len(self._decoder.getstate()[0])
        data = self._f.read(max(self._chunk_bytes, len(self._buf) - self._pos))
        try:
            text = self._decoder.decode(data, final=not data)
        except UnicodeDecodeError as exc:
            offset = self._read_to - pending + exc.start
            raise self.error(f"not valid UTF-8 at byte {offset}: {exc.reason}") from exc
        if not data:  # the buffer stays as it is: a caller may hold positions in it
            self._eof = True
            self._buf += text
            return False
        self._read_to += len(data)
        self.line_at(self._pos)  # the text before the cursor is dropped: count its lines
        self._buf = self._buf[self._pos :] + text
        self._pos = self._line_pos = 0
        return True

    def peek(self) -> str:
        """The next character that is not JSON whitespace (the cursor moves to it), or ``""``."""
        while True:
            self._pos = _BLANKS.match(self._buf, self._pos).end()  # type: ignore[union-attr]
            if self._pos < len(self._buf):
                return self._buf[self._pos]
            if not self._more():
                return ""

    def take(self, char: str, expected: str) -> None:
        """Consume ``char``, the next non-blank character, or fail saying what was expected."""
        found = self.peek()
        if found != char:
            what = repr(found) if found else "the end of the file"
            raise self.error(f"not valid JSON: expected {expected}, found {what}")
        self._pos += 1

    def separator(self) -> str:
        """Consume the ``,`` or ``]`` after an element and return it; else the next character."""
        found = _SEPARATOR.match(self._buf, self._pos)
        if found is not None:
            self._pos = found.end()
            return found.group(1)
        char = self.peek()
        if char in (",", "]") and char:
            self._pos += 1
        return char

    def offset(self) -> int:
        """The byte offset of the cursor in the file."""
        pending = len(self._decoder.getstate()[0])
        return self._read_to - pending - len(self._buf[self._pos :].encode("utf-8"))

    def element(self, want_offset: bool) -> tuple[int, Any, int | None]:
        """The line, value and (if wanted) byte offset of the element after the cursor."""
        buf = self._buf
        start = _BLANKS.match(buf, self._pos).end()  # type: ignore[union-attr]
        if not want_offset and start < len(buf):
            try:  # the common case: the element lies well inside the buffer
                value, end = self._decode(buf, start)
            except json.JSONDecodeError:
                pass  # the careful path below says whether it is cut or broken
            else:
                if end <= len(buf) - _LOOKAHEAD:
                    self._pos = end
                    return self.line_at(start), value, None
        self.peek()
        offset = self.offset() if want_offset else None
        value = self._value()
        return self._line, value, offset

    def _value(self) -> Any:
        """Parse the value at the cursor (on its first character), reading more as needed."""
        while True:
            try:
                value, end = self._decode(self._buf, self._pos)
            except json.JSONDecodeError as exc:
                maybe_cut = exc.msg.startswith("Unterminated string") or (
                    exc.pos >= len(self._buf) - _LOOKAHEAD
                )
                if maybe_cut and self._grow():
                    continue
                raise self.error(f"not valid JSON: {exc.msg}", exc.pos) from None
            if end > len(self._buf) - _LOOKAHEAD and self._grow():
                continue  # a number may go on in the next chunk: `1` of `1.5`, `2` of `2e9`
            self.line_at(self._pos)
            self._pos = end
            return value

    def _grow(self) -> bool:
        if len(self._buf) - self._pos > MAX_ELEMENT_CHARS:
            raise self.error(
                f"an array element longer than {MAX_ELEMENT_CHARS >> 20} Mi characters "
                "(an unterminated string?)"
            )
        return self._more()


def read_elements(
    path: Path,
    source: str,
    *,
    start: ArrayPosition | None = None,
    stop: int | None = None,
    offsets_of: Container[int] = (),
    chunk_bytes: int | None = None,
) -> Iterator[Element]:
    """The elements of the array in ``path``, in order, from ``start`` up to index ``stop``.

    ``start`` (from :func:`element_positions`) makes the reader seek to that element instead of
    reading from the ``[``. Reading the whole array checks that nothing but whitespace follows
    its ``]``. Elements whose index is in ``offsets_of`` carry their byte offset;
    ``chunk_bytes`` defaults to :data:`CHUNK_BYTES` (read when called). Raises
    :class:`InputError` naming the file and line of the first thing that is not valid JSON.
    """
    index = start.index if start is not None else 0
    if stop is not None and index >= stop:
        return
    try:
        f = open(path, "rb")  # closed by the `with` below
    except OSError as exc:
        raise InputError(f"cannot read JSON input: {exc.strerror}", path=source) from exc
    with f:
        if start is None:
            _check_encoding(f, source)
        else:
            f.seek(start.offset)
        scanner = _Scanner(f, source, start, chunk_bytes or CHUNK_BYTES)
        if start is None:
            if scanner.peek() != "[":
                raise scanner.error(_NOT_AN_ARRAY)
            scanner.take("[", "'['")
            if scanner.peek() == "]":
                scanner.take("]", "']'")
                _check_end(scanner)
                return
        while stop is None or index < stop:
            line, value, offset = scanner.element(index in offsets_of)
            yield Element(index, line, value, offset)
            index += 1
            following = scanner.separator()
            if following == ",":
                continue
            if following == "]" and (stop is None or index == stop):
                _check_end(scanner)
                return
            if following == "]":
                raise scanner.error(f"the array ended after {index} elements, {stop} expected")
            what = repr(following) if following else "the end of the file"
            raise scanner.error(
                f"not valid JSON: expected ',' or ']' after element {index - 1}, found {what}"
            )


def _check_encoding(f: BinaryIO, source: str) -> None:
    head = f.read(4)
    f.seek(0)
    encoding = json.detect_encoding(head)
    if encoding not in ("utf-8", "utf-8-sig"):
        raise InputError(f"a .json input must be UTF-8, not {encoding}", path=source)


def _check_end(scanner: _Scanner) -> None:
    if scanner.peek():
        raise scanner.error("not valid JSON: extra data after the array")


def count_elements(path: Path, source: str) -> int:
    """How many elements the array has (one streaming pass that checks the whole file)."""
    count = 0
    for _ in read_elements(path, source):
        count += 1
    return count


def element_positions(path: Path, source: str, indices: list[int]) -> dict[int, ArrayPosition]:
    """Where each element of ``indices`` (all below the array's length) starts."""
    wanted = set(indices)
    if not wanted:
        return {}
    positions: dict[int, ArrayPosition] = {}
    for element in read_elements(path, source, stop=max(wanted) + 1, offsets_of=wanted):
        if element.offset is not None:
            positions[element.index] = ArrayPosition(element.index, element.offset, element.line)
    return positions
