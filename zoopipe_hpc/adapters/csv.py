"""CSV input and output through pyarrow."""

from __future__ import annotations

import bisect
import csv as _pycsv
import io
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.csv as pacsv

from ..errors import ConfigurationError, InputError
from ..validation._arrow import rows_to_table
from ._split import ByteRange, file_size, header_end, split_ranges
from .base import BaseInputAdapter, BaseOutputAdapter, InputBatch, Record, _FileSink, check_workers

__all__ = ["CSVInputAdapter", "CSVOutputAdapter"]

_BOM = b"\xef\xbb\xbf"


def _line_ends(data: bytes) -> int:
    """Line ends (LF, CR LF, lone CR) in ``data``, as the csv module counts lines."""
    return data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n")


class _RangeStream(io.RawIOBase):
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
_LOCATOR_CHUNK = 1 << 20


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


class _LineLocator:
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
            more = self._read(_LOCATOR_CHUNK)
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
            line += _line_ends(block[pos:end])
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


class CSVInputAdapter(BaseInputAdapter):
    """Reads a CSV file with a header line. Every value is read as text; the schema converts it.

    ``split(n)`` cuts the file into byte ranges at record boundaries (quoted fields may hold
    delimiters, quotes and newlines), so every record lands in exactly one shard.
    """

    def __init__(
        self,
        source: str | os.PathLike[str],
        *,
        delimiter: str = ",",
        quote_char: str = '"',
        block_size: int = 1 << 20,
        byte_range: tuple[int, int, int] | None = None,
    ) -> None:
        super().__init__(source)
        if len(delimiter) != 1 or len(quote_char) != 1:
            raise ConfigurationError("delimiter and quote_char must be single characters")
        self.delimiter = delimiter
        self.quote_char = quote_char
        self.block_size = block_size
        self.byte_range = ByteRange(*byte_range) if byte_range is not None else None

    def describe(self) -> str:
        if self.byte_range is None:
            return f"CSVInputAdapter({self.source!r})"
        r = self.byte_range
        return f"CSVInputAdapter({self.source!r}, bytes {r.start}-{r.end}, from line {r.line})"

    def check(self) -> None:
        try:
            with open(self.path, "rb") as f:
                f.read(1)
        except OSError as exc:
            raise InputError(f"cannot read CSV input: {exc.strerror}", path=self.source) from exc

    def _layout(self) -> tuple[bytes, int, int]:
        """(header bytes, offset of the first record, file size)."""
        self.check()
        size = file_size(self.path)
        with open(self.path, "rb") as f:
            end = header_end(f, size, self.quote_char.encode(), self.delimiter.encode())
            f.seek(0)
            header = f.read(end)
        return header, end, size

    def _columns(self, header: bytes) -> list[str]:
        text = header.removeprefix(_BOM).decode("utf-8", errors="replace")
        reader = _pycsv.reader(
            io.StringIO(text, newline=""), delimiter=self.delimiter, quotechar=self.quote_char
        )
        try:
            rows = list(reader)
        except _pycsv.Error as exc:
            raise InputError(
                f"cannot parse the CSV header: {exc}", path=self.source, line=1
            ) from exc
        if len(rows) > 1:
            raise InputError(
                "the header line does not end where a CSV record ends: the file seems to use "
                "lone CR line ends (classic Mac); convert it to LF or CR LF line ends",
                path=self.source,
                line=1,
            )
        return rows[0] if rows else []

    def split(self, workers: int) -> list[BaseInputAdapter]:
        check_workers(workers)
        header, data_start, size = self._layout()
        start, end, line = (data_start, size, 1 + _line_ends(header))
        if self.byte_range is not None:
            start, end, line = self.byte_range.start, self.byte_range.end, self.byte_range.line
        with open(self.path, "rb") as f:
            ranges = split_ranges(
                f,
                start,
                end,
                workers,
                line,
                self.quote_char.encode(),
                delimiter=self.delimiter.encode(),
            )
        return [
            CSVInputAdapter(
                self.path,
                delimiter=self.delimiter,
                quote_char=self.quote_char,
                block_size=self.block_size,
                byte_range=(r.start, r.end, r.line),
            )
            for r in ranges
        ]

    def batches(self) -> Iterator[InputBatch]:
        header, data_start, size = self._layout()
        if not header:
            return
        columns = self._columns(header)
        byte_range = self.byte_range or ByteRange(data_start, size, 1 + _line_ends(header))
        if byte_range.empty:
            return
        locator = _LineLocator(self.path, byte_range, self.delimiter, self.quote_char)
        malformed_rows: list[tuple[int, int, int, str]] = []

        def on_invalid(row: Any) -> str:
            malformed_rows.append((row.number, row.expected_columns, row.actual_columns, row.text))
            return "skip"

        stream = _RangeStream(self.path, header, byte_range.start, byte_range.end)
        try:
            reader = pacsv.open_csv(
                stream,
                read_options=pacsv.ReadOptions(block_size=self.block_size, use_threads=False),
                parse_options=pacsv.ParseOptions(
                    delimiter=self.delimiter,
                    quote_char=self.quote_char,
                    newlines_in_values=True,
                    invalid_row_handler=on_invalid,
                ),
                convert_options=pacsv.ConvertOptions(
                    column_types={name: pa.string() for name in columns},
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                ),
            )
        except (pa.ArrowInvalid, OSError) as exc:
            stream.close()
            raise InputError(f"cannot parse CSV: {exc}", path=self.source) from exc
        next_row = 0  # stream data rows (records and malformed rows) before the next batch
        try:
            while True:
                try:
                    table = reader.read_next_batch()
                except StopIteration:
                    break
                except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
                    raise InputError(f"cannot parse CSV: {exc}", path=self.source) from exc
                rows = table.num_rows
                # pyarrow reports malformed rows as it parses, possibly a block ahead: give
                # each batch those whose row number falls among its rows.
                malformed_rows.sort()
                mine: list[tuple[int, int, int, str]] = []
                row, count = next_row, 0
                while count < rows:
                    if malformed_rows and malformed_rows[0][0] - 2 == row:
                        mine.append(malformed_rows.pop(0))
                    else:
                        count += 1
                    row += 1
                yield self._batch(pa.Table.from_batches([table]), mine, next_row, locator)
                next_row = row
            if malformed_rows:
                yield self._batch(None, sorted(malformed_rows), next_row, locator)
        finally:
            stream.close()
            locator.close()

    def _batch(
        self,
        table: pa.Table | None,
        bad: list[tuple[int, int, int, str]],
        rows_before: int,
        locator: _LineLocator,
    ) -> InputBatch:
        # pyarrow numbers stream rows from 1 and the header is row 1: data row k (0-based) is k+2.
        bad_rows = [number - 2 for number, *_ in bad]
        malformed = [
            {
                "source": self.source,
                "line": locator.line_of(number - 2),
                "record": {"__raw__": text},
                "errors": [
                    {
                        "type": "csv_field_count",
                        "loc": [],
                        "msg": f"expected {expected} fields, got {actual}",
                    }
                ],
            }
            for number, expected, actual, text in bad
        ]

        def locate(index: int) -> int:
            row = rows_before + index
            for skipped in bad_rows:
                if skipped <= row:
                    row += 1
            return locator.line_of(row)

        return InputBatch(
            records=None if table is not None else [],
            source=self.source,
            malformed=malformed,
            locate=locate,
            table=table,
        )


class _CSVSink(_FileSink):
    def __init__(self, path: Path, schema: pa.Schema | None, delimiter: str) -> None:
        self._path = path
        self._schema = schema
        self._delimiter = delimiter
        self._file = open(path, "wb")  # noqa: SIM115 - closed in close()
        self._writer: pacsv.CSVWriter | None = None
        if schema is not None:
            self._start(schema)

    def _start(self, schema: pa.Schema) -> pacsv.CSVWriter:
        self._schema = schema
        self._writer = pacsv.CSVWriter(
            self._file, schema, write_options=pacsv.WriteOptions(delimiter=self._delimiter)
        )
        return self._writer

    def write(self, rows: Sequence[Record]) -> None:
        table = rows_to_table(rows, self._schema)
        writer = self._writer if self._writer is not None else self._start(table.schema)
        writer.write_table(table)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()


class CSVOutputAdapter(BaseOutputAdapter):
    """Writes a CSV file with one header line."""

    format = "csv"

    def __init__(self, path: str | os.PathLike[str], *, delimiter: str = ",") -> None:
        super().__init__(path)
        self.delimiter = delimiter

    def _clone(self) -> CSVOutputAdapter:
        return CSVOutputAdapter(self.path, delimiter=self.delimiter)

    def _open_file(self, path: Path, schema: pa.Schema | None) -> _FileSink:
        return _CSVSink(path, schema, self.delimiter)

    def merge(self, parts: Sequence[Path], destination: Path) -> None:
        """Concatenate parts, keeping the header of the first part that has one."""
        wrote_header = False
        with open(destination, "wb") as out:
            for part in parts:
                size = file_size(part)
                if size == 0:
                    continue
                with open(part, "rb") as f:
                    end = header_end(f, size, b'"')
                    f.seek(0 if not wrote_header else end)
                    wrote_header = True
                    while chunk := f.read(1 << 20):
                        out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
