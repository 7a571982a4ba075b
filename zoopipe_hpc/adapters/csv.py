"""CSV input and output through pyarrow."""

from __future__ import annotations

import csv as _pycsv
import io
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from ..errors import ConfigurationError, InputError
from ..validation._arrow import rows_to_table
from ._csv_lines import LineLocator, RangeStream, line_ends
from ._split import ByteRange, file_size, header_end, split_ranges
from .base import BaseInputAdapter, BaseOutputAdapter, InputBatch, Record, _FileSink, check_workers

__all__ = ["CSVInputAdapter", "CSVOutputAdapter"]

_BOM = b"\xef\xbb\xbf"


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
        start, end, line = (data_start, size, 1 + line_ends(header))
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
        byte_range = self.byte_range or ByteRange(data_start, size, 1 + line_ends(header))
        if byte_range.empty:
            return
        locator = LineLocator(self.path, byte_range, self.delimiter, self.quote_char)
        malformed_rows: list[tuple[int, int, int, str]] = []

        def on_invalid(row: Any) -> str:
            malformed_rows.append((row.number, row.expected_columns, row.actual_columns, row.text))
            return "skip"

        stream = RangeStream(self.path, header, byte_range.start, byte_range.end)
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
        locator: LineLocator,
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
