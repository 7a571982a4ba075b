"""The header line of a CSV file: found in bounded memory, checked, parsed (private).

A CSV input must be UTF-8: a file that starts with a UTF-16 or UTF-32 byte order mark, or
whose header holds NUL bytes or bytes that are not UTF-8, is refused before any record is
read, with an :class:`~zoopipe_hpc.errors.InputError` naming the file and what was found.
At most :data:`HEADER_LIMIT` bytes are read to find where the header ends, and a header
naming a column twice is refused (pyarrow would let the last of them win).
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from ..errors import InputError
from ._split import file_size, header_end

__all__ = ["HEADER_LIMIT", "column_names", "header_of", "read_header", "skip_lines"]

#: The longest header line read; a longer one is refused.
HEADER_LIMIT = 4 << 20

_UTF8_BOM = b"\xef\xbb\xbf"

#: Byte order marks of encodings this reader cannot read, longest first (UTF-32 LE starts
#: with the UTF-16 LE mark).
_FOREIGN_BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32 (little-endian)"),
    (b"\x00\x00\xfe\xff", "UTF-32 (big-endian)"),
    (b"\xff\xfe", "UTF-16 (little-endian)"),
    (b"\xfe\xff", "UTF-16 (big-endian)"),
)

_NEEDS_UTF8 = (
    "this reader needs UTF-8 unless told the encoding: give encoding= (e.g. "
    'CSVInputAdapter(path, encoding="utf-16"), or "latin-1", "cp1252"), or convert the file, '
    "e.g. with iconv -f {encoding} -t UTF-8"
)


def check_encoding(path: Path, source: str) -> None:
    """Refuse a file that starts with the byte order mark of UTF-16 or UTF-32."""
    with open(path, "rb") as f:
        start = f.read(4)
    for mark, encoding in _FOREIGN_BOMS:
        if start.startswith(mark):
            raise InputError(
                f"the file is {encoding} with a byte order mark (BOM); "
                + _NEEDS_UTF8.format(encoding=encoding.split()[0]),
                path=source,
                line=1,
            )


def skip_lines(path: Path, count: int) -> int:
    """The offset just past the first ``count`` lines of the file (LF, CR LF and lone CR end
    a line, as :func:`~._csv_lines.line_ends` counts them), or its size if it has fewer."""
    if count <= 0:
        return 0
    offset, seen = 0, 0
    with open(path, "rb") as f:
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                return offset
            if chunk.endswith(b"\r"):
                chunk += f.read(1)  # a CR LF cut between the chunks is one line end
            for end in _LINE_END.finditer(chunk):
                seen += 1
                if seen == count:
                    return offset + end.end()
            offset += len(chunk)


_LINE_END = re.compile(rb"\r\n|\r|\n")


def header_of(fieldnames: list[str], delimiter: str, quote_char: str) -> bytes:
    """A header line naming ``fieldnames``, for a file that has none (pyarrow reads it first)."""
    text = io.StringIO()
    csv.writer(text, delimiter=delimiter, quotechar=quote_char, lineterminator="\n").writerow(
        fieldnames
    )
    return text.getvalue().encode("utf-8")


def read_header(
    path: Path,
    source: str,
    quote: bytes,
    delimiter: bytes,
    start: int = 0,
    line: int = 1,
    encoding: str = "utf-8",
) -> tuple[bytes, int]:
    """(the bytes of the header line that starts at ``start``, which is line ``line``; the
    file's size), refusing what cannot be a header in ``encoding`` (UTF-8 or a single-byte
    encoding that keeps ASCII)."""
    size = file_size(path)
    if encoding == "utf-8":
        check_encoding(path, source)
    with open(path, "rb") as f:
        limit = min(size, start + HEADER_LIMIT)
        end = header_end(f, limit, quote, delimiter, start)
        f.seek(start)
        header = f.read(end - start)
    if end < size and not header.endswith(b"\n"):
        if b"\r" in header:
            raise _lone_cr(source, line)
        raise InputError(
            f"the header line is longer than {HEADER_LIMIT >> 20} MiB (no line end in its first "
            f"{HEADER_LIMIT:,} bytes): is this a CSV file?",
            path=source,
            line=line,
        )
    if encoding != "utf-8":
        try:
            header.decode(encoding)
        except UnicodeDecodeError as exc:
            raise InputError(
                f"the header is not {encoding} (byte 0x{header[exc.start]:02x} at byte "
                f"{start + exc.start} of the file)",
                path=source,
                line=line,
                offset=start + exc.start,
            ) from None
        return header, size
    nul = header.find(b"\x00")
    if nul >= 0:
        raise InputError(
            f"the header holds NUL bytes (the first at byte {nul}): the file looks like UTF-16 "
            "or UTF-32 without a byte order mark; " + _NEEDS_UTF8.format(encoding="UTF-16LE"),
            path=source,
            line=line,
        )
    try:
        header.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"the header is not UTF-8 (byte 0x{header[exc.start]:02x} at byte "
            f"{start + exc.start} of the file); " + _NEEDS_UTF8.format(encoding="<its encoding>"),
            path=source,
            line=line,
        ) from None
    return header, size


def column_names(
    header: bytes,
    source: str,
    delimiter: str,
    quote_char: str,
    line: int = 1,
    encoding: str = "utf-8",
) -> list[str]:
    """The column names of a header read by :func:`read_header`, each one once."""
    if encoding == "utf-8":
        text = header.removeprefix(_UTF8_BOM).decode("utf-8")
    else:
        text = header.decode(encoding)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quotechar=quote_char)
    try:
        rows = list(reader)
    except csv.Error as exc:
        raise InputError(f"cannot parse the CSV header: {exc}", path=source, line=line) from exc
    if len(rows) > 1:
        raise _lone_cr(source, line)
    names = rows[0] if rows else []
    seen: dict[str, list[int]] = {}
    for number, name in enumerate(names, 1):
        seen.setdefault(name, []).append(number)
    twice = {name: numbers for name, numbers in seen.items() if len(numbers) > 1}
    if twice:
        listed = "; ".join(f"{name!r} (columns {_and(numbers)})" for name, numbers in twice.items())
        raise InputError(
            f"the header names a column more than once: {listed}; every column needs a name "
            "of its own (rename the duplicates)",
            path=source,
            line=line,
            columns=sorted(twice),
        )
    return names


def _and(numbers: list[int]) -> str:
    return ", ".join(map(str, numbers[:-1])) + f" and {numbers[-1]}"


def _lone_cr(source: str, line: int = 1) -> InputError:
    return InputError(
        "the header line does not end where a CSV record ends: the file seems to use lone CR "
        "line ends (classic Mac); convert it to LF or CR LF line ends",
        path=source,
        line=line,
    )
