"""Streaming reader of a JSON array file: one element at a time, in bounded memory.

The standard parser needs the whole document; this reader decodes the file in chunks and hands
each element of the top-level array to :meth:`json.JSONDecoder.raw_decode` on its own, so memory
holds one chunk plus the element being parsed. It knows the line each element starts on and,
when asked, its byte offset, which is where a shard made by ``split`` starts reading.

A value that ends near the end of what has been decoded so far may continue (``1`` of ``1.5``
parses as a whole number), and a parse error near the end of the buffer may be a cut element, so
in both cases the reader decodes more and parses again; only at the end of the file is an error
final.

An element nested more than :data:`MAX_DEPTH` arrays and objects deep is not parsed into a value
(the standard parser raises ``RecursionError`` near 1,000 levels, and pydantic-core writes no
more than 255): the reader hands it on as :class:`TooDeep`, its text, and goes on with the next
element, so it becomes one error record. :func:`too_deep` is the same test for a JSON Lines line.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Container, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AnyStr, BinaryIO

from ..errors import InputError

__all__ = [
    "MAX_DEPTH",
    "TOO_DEEP",
    "ArrayPosition",
    "Element",
    "TooDeep",
    "count_elements",
    "element_positions",
    "read_elements",
    "too_deep",
]

#: Bytes read from the file at a time.
CHUNK_BYTES = 1 << 20
#: The largest element (in characters) the reader buffers before calling the input broken.
MAX_ELEMENT_CHARS = 256 << 20
# A parse error this close to the end of the buffer may be an element cut by the chunking.
_LOOKAHEAD = 16
_BLANKS = re.compile(r"[ \t\n\r]*")
_SEPARATOR = re.compile(r"[ \t\n\r]*([,\]])")
_NOT_AN_ARRAY = "a .json input must hold an array of objects"

#: The deepest nesting of arrays and objects a record may have (the record's own object is the
#: first level). pydantic-core writes JSON up to 255 levels; the margin leaves room for an error
#: record, which holds the record (and pydantic's errors their input) a few levels further down.
MAX_DEPTH = 200
#: The message of the error record of a record nested deeper than that.
TOO_DEEP = f"JSON nested too deeply: more than {MAX_DEPTH} levels of arrays and objects"
# Text this short cannot nest deeper than MAX_DEPTH: every level takes two characters.
_SHALLOW = 2 * MAX_DEPTH
# What is not an array or object bracket (strings whole, with the brackets in them).
_NOISE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[^"\[\]{}]+')
_NOISE_BYTES = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[^"\[\]{}]+')
_PAIRS = re.compile(r"\[\]|\{\}")
_PAIRS_BYTES = re.compile(rb"\[\]|\{\}")
# The brackets and whole strings of a value, to find where a value too deep to parse ends;
# a lone quote is a string that does not end in the text.
_STRUCTURE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|"|[\[\]{}]')


def too_deep(text: str | bytes, start: int = 0, end: int | None = None) -> bool:
    """True if the JSON ``text[start:end]`` nests arrays and objects more than :data:`MAX_DEPTH`
    levels deep.

    Text of up to ``2 * MAX_DEPTH`` characters, or with at most ``MAX_DEPTH`` opening brackets,
    is answered from its length and two counts in C. Otherwise the strings and everything else
    but brackets are dropped and innermost pairs removed level by level, in C. Brackets that do
    not pair up are left for the parser to report: False.
    """
    stop = len(text) if end is None else end
    if stop - start <= _SHALLOW:
        return False
    if isinstance(text, bytes):
        if text.count(b"[", start, stop) + text.count(b"{", start, stop) <= MAX_DEPTH:
            return False
        return _deeper(_NOISE_BYTES.sub(b"", text[start:stop]), _PAIRS_BYTES)
    if text.count("[", start, stop) + text.count("{", start, stop) <= MAX_DEPTH:
        return False
    return _deeper(_NOISE.sub("", text[start:stop]), _PAIRS)


def _deeper(brackets: AnyStr, pairs: re.Pattern[AnyStr]) -> bool:
    """True if ``brackets`` (nothing but ``[]{}``) nests more than MAX_DEPTH levels."""
    for _ in range(MAX_DEPTH):
        inner_removed = pairs.sub(brackets[:0], brackets)
        if not inner_removed or len(inner_removed) == len(brackets):
            return False  # all levels removed, or brackets that do not pair up
        brackets = inner_removed
    return True


def _value_end(text: str, start: int) -> int | None:
    """Where the array or object opening at ``text[start]`` ends; None if not within ``text``."""
    depth = 0
    for token in _STRUCTURE.finditer(text, start):
        char = text[token.start()]
        if char == '"':
            if token.end() - token.start() == 1:
                return None  # a string that goes on past the text
            continue
        depth += 1 if char in "[{" else -1
        if depth == 0:
            return token.end()
    return None


class TooDeep:
    """An element nested more than :data:`MAX_DEPTH` levels deep: its JSON ``text``, unparsed."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


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
            except (json.JSONDecodeError, RecursionError):
                pass  # the careful path below says whether it is cut, broken or too deep
            else:
                if end <= len(buf) - _LOOKAHEAD:
                    if end - start > _SHALLOW and too_deep(buf, start, end):
                        value = TooDeep(buf[start:end])
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
            except RecursionError:
                return self._too_deep()
            if end > len(self._buf) - _LOOKAHEAD and self._grow():
                continue  # a number may go on in the next chunk: `1` of `1.5`, `2` of `2e9`
            self.line_at(self._pos)
            if end - self._pos > _SHALLOW and too_deep(self._buf, self._pos, end):
                value = TooDeep(self._buf[self._pos : end])
            self._pos = end
            return value

    def _too_deep(self) -> TooDeep:
        """The element at the cursor, too deep for the parser, as text: it is skipped whole."""
        while True:
            end = _value_end(self._buf, self._pos)
            if end is not None:
                break
            if not self._grow():
                raise self.error(
                    f"not valid JSON: an element nested more than {MAX_DEPTH} levels deep "
                    "does not end"
                )
        self.line_at(self._pos)
        text = self._buf[self._pos : end]
        self._pos = end
        return TooDeep(text)

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
