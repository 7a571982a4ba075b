"""One byte range of a CSV file read through pyarrow, bad input included (private).

The fast path is pyarrow's streaming CSV reader over the header and the range, a batch a
block, every value a string. pyarrow's own UTF-8 check is off (a failure there ends the whole
read without a row number): each batch is checked at once with Arrow's validation instead,
and only a batch that fails it is looked at row by row; its rows holding bytes that are not
UTF-8 become error records. Where pyarrow cannot go on, the reader starts again at a record
boundary that the :class:`~._csv_lines.LineLocator` finds, and nothing before it is read again:

* a record longer than a block ("straddling object"): the block is read again, large enough
  for that record (which may be up to :data:`~._csv_lines.RECORD_LIMIT`), and the next one at
  the usual size again;
* a malformed row holding invalid UTF-8 (pyarrow cannot give its text to the invalid-row
  handler, and fails): the row becomes an error record made from its bytes, and reading goes
  on after it.

The last record of the range is checked for a quoted field that never closes (it would take
in every line after its quote): such a record is an error record saying where the quote
opened.
"""

from __future__ import annotations

import codecs
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from ..errors import InputError
from ._csv_header import HEADER_LIMIT
from ._csv_lines import RECORD_LIMIT, LineLocator, OpenQuote, RangeStream
from ._split import ByteRange
from .base import InputBatch, Record

__all__ = ["CSVRangeReader"]

#: Bytes a grown block holds beyond the header and the long record.
_SLACK = 1 << 16
#: The largest block ever asked of pyarrow.
_MAX_BLOCK = HEADER_LIMIT + RECORD_LIMIT + _SLACK

#: What pyarrow says when a record does not fit in its block (or the header in the first).
_TOO_BIG_FOR_BLOCK = ("straddling object straddles", "cannot infer number of columns")
#: pyarrow's error for a malformed row it could not hand to the invalid-row handler.
_UNHANDLED_ROW = re.compile(r"Row #(\d+): Expected (\d+) columns, got (\d+)")


@dataclass
class _Malformed:
    """A stream row that is no record of the table: its row number in the range and what the
    error record says about it (its line is looked up when it is handed out)."""

    row: int
    record: Record
    errors: list[dict[str, Any]] = field(default_factory=list)


class _RowHandler:
    """pyarrow's invalid-row handler: keeps each malformed row for its batch and skips it."""

    def __init__(self, reader: CSVRangeReader) -> None:
        self._reader = reader

    def __call__(self, row: Any) -> str:
        self._reader.on_invalid_row(row.number, row.expected_columns, row.actual_columns, row.text)
        return "skip"


class _QuietHook:
    """``sys.unraisablehook`` that drops the one failure the reader recovers from: pyarrow
    decoding a malformed row's text for :class:`_RowHandler` (the row is read again from its
    bytes). Everything else goes to the hook that was there before."""

    def __init__(self, previous: Any) -> None:
        self.previous = previous

    def __call__(self, unraisable: Any) -> None:
        if isinstance(unraisable.object, _RowHandler) and isinstance(
            unraisable.exc_value, UnicodeDecodeError
        ):
            return
        self.previous(unraisable)


def _quiet_row_handler_failures() -> None:
    if not isinstance(sys.unraisablehook, _QuietHook):
        sys.unraisablehook = _QuietHook(sys.unraisablehook)


class CSVRangeReader:
    """Batches of the records of one byte range (see the module docstring)."""

    def __init__(
        self,
        path: Path,
        header: bytes,
        columns: list[str],
        byte_range: ByteRange,
        *,
        delimiter: str,
        quote_char: str,
        block_size: int,
    ) -> None:
        self._path = path
        self._source = str(path)
        self._header = header
        self._columns = columns
        self._range = byte_range
        self._block_size = block_size
        self._locator = LineLocator(path, byte_range, delimiter, quote_char)
        self._parse = pacsv.ParseOptions(
            delimiter=delimiter,
            quote_char=quote_char,
            newlines_in_values=True,
            invalid_row_handler=_RowHandler(self),
        )
        self._convert = pacsv.ConvertOptions(
            column_types={name: pa.string() for name in columns},
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
            check_utf8=False,
        )
        self._pending: list[_Malformed] = []  # malformed rows not handed out yet
        self._segment_rows: list[int] = []  # malformed rows the current segment reported
        self._base = 0  # stream rows before the current segment
        self._next_row = 0  # stream rows (records and malformed rows) handed out

    # -- pyarrow's rows ---------------------------------------------------------------------------

    def on_invalid_row(self, number: int | None, expected: int, actual: int, text: str) -> None:
        """Keep a malformed row pyarrow reported (``number``: its row in the segment's stream,
        the header being row 1)."""
        row = self._base + (number if number is not None else 0) - 2
        self._segment_rows.append(row)
        self._pending.append(
            _Malformed(row, {"__raw__": text}, [_field_count_error(expected, actual)])
        )

    def _accounted(self, returned: int) -> int:
        """The first row of the segment that pyarrow neither returned nor reported."""
        row = self._base + returned
        for reported in sorted(self._segment_rows):
            if reported <= row:
                row += 1
            else:
                break
        return row

    def _forget(self, row: int) -> None:
        """Drop the malformed rows from ``row`` on: reading starts again there."""
        self._pending = [m for m in self._pending if m.row < row]

    def _tables(self) -> Iterator[pa.RecordBatch]:
        """The batches pyarrow reads, segment by segment (see the module docstring)."""
        row, offset, block = 0, self._range.start, self._block_size
        # A row pyarrow cannot read (and its error): the segment ends before it.
        stop: tuple[int, re.Match[str]] | None = None
        while True:
            limit = self._range.end if stop is None else self._locator.start_of(stop[0])
            grown = block > self._block_size
            self._base, self._segment_rows = row, []
            returned, failure, exhausted = 0, None, True
            if offset < limit:
                stream = RangeStream(self._path, self._header, offset, limit)
                try:
                    reader = pacsv.open_csv(
                        stream,
                        read_options=pacsv.ReadOptions(block_size=block, use_threads=False),
                        parse_options=self._parse,
                        convert_options=self._convert,
                    )
                    while True:
                        try:
                            table = reader.read_next_batch()
                        except StopIteration:
                            break
                        returned += table.num_rows
                        yield table
                        if grown:
                            exhausted = False  # one block at the grown size is enough
                            break
                except pa.ArrowInvalid as exc:
                    failure = exc
                except OSError as exc:
                    raise InputError(f"cannot read CSV: {exc}", path=self._source) from exc
                finally:
                    stream.close()
            done = self._accounted(returned)
            if failure is None and exhausted:
                if stop is None:
                    return
                if done != stop[0]:
                    raise InputError(
                        f"cannot parse CSV: pyarrow read {done - row} records before line "
                        f"{self._locator.line_of(stop[0])}, {stop[0] - row} were expected",
                        path=self._source,
                        line=self._locator.line_of(row),
                    )
                self._pending.append(self._unreadable(*stop))
                row, stop = stop[0] + 1, None
            elif failure is None:
                row = done
                block = self._block_size
            elif any(text in str(failure) for text in _TOO_BIG_FOR_BLOCK):
                row = done
                block = self._grown(done, block, failure)
            else:
                unhandled = _UNHANDLED_ROW.search(str(failure))
                bad = self._base + int(unhandled.group(1)) - 2 if unhandled else -1
                if unhandled is None or bad < done:
                    raise InputError(
                        f"cannot parse CSV: {failure}",
                        path=self._source,
                        line=self._locator.line_of(done),
                    ) from failure
                if bad == done:
                    self._pending.append(self._unreadable(bad, unhandled))
                    row = bad + 1
                else:
                    row, stop = done, (bad, unhandled)  # read the rows before it first
            self._forget(row)
            offset = self._locator.start_of(row)

    def _grown(self, row: int, block: int, failure: Exception) -> int:
        """A block size that holds the header and record ``row`` (the locator refuses a
        record longer than RECORD_LIMIT, naming its line)."""
        size = self._locator.start_of(row + 1) - self._locator.start_of(row)
        needed = len(self._header) + size + _SLACK
        grown = needed if needed > block else 2 * block
        if grown > _MAX_BLOCK:
            raise InputError(
                f"cannot read the record that starts here: pyarrow says {failure!s} even with "
                f"a block of {block >> 20} MiB",
                path=self._source,
                line=self._locator.line_of(row),
            )
        return grown

    def _unreadable(self, row: int, unhandled: re.Match[str]) -> _Malformed:
        """An error record for a row pyarrow could not read, made from its bytes."""
        raw = self._locator.raw(row)
        text = raw.rstrip(b"\r\n")
        errors = [_field_count_error(unhandled.group(2), unhandled.group(3))]
        invalid = _invalid_starts(text)
        if invalid:
            start = self._locator.start_of(row)
            errors.append(_utf8_error([], text[invalid[0]], start + invalid[0], None))
        return _Malformed(row, {"__raw__": text.decode("utf-8", "replace")}, errors)

    # -- batches ----------------------------------------------------------------------------------

    def batches(self) -> Iterator[InputBatch]:
        """The range's records in order, in batches of at most one block each."""
        _quiet_row_handler_failures()
        try:
            held: pa.RecordBatch | None = None
            for table in self._tables():
                if held is not None:
                    yield self._assemble(held, final=False)
                held = table
            last = self._assemble(held, final=True)
            if last.table is not None or last.malformed:
                yield last
        finally:
            self._locator.close()

    def _assemble(self, table: pa.RecordBatch | None, final: bool) -> InputBatch:
        """The InputBatch of ``table`` (the next rows of the stream) and of the malformed rows
        among them (with ``final``, all that are left)."""
        rows = table.num_rows if table is not None else 0
        self._pending.sort(key=lambda m: m.row)
        mine: list[_Malformed] = []
        row, left = self._next_row, rows  # the next stream row, table rows not placed yet
        for malformed in self._pending:
            gap = malformed.row - row
            if final or gap < left:
                mine.append(malformed)
                left -= min(gap, left)
                row = malformed.row + 1
            else:
                break
        del self._pending[: len(mine)]
        row += left
        rows_before, self._next_row = self._next_row, row
        skipped = [m.row for m in mine]
        errors: dict[int, _Malformed] = {m.row: m for m in mine}
        drop: list[int] = []  # table rows that are error records
        if table is not None and rows:
            for index, malformed in self._invalid_utf8(table, rows_before, skipped):
                errors[malformed.row] = malformed
                drop.append(index)
        if final and row > rows_before:
            self._check_last_record(table, row - 1, errors, drop)
        if drop:
            skipped = sorted([*skipped, *(_stream_row(i, rows_before, skipped) for i in drop)])
            keep = [True] * rows
            for index in drop:
                keep[index] = False
            table = table.filter(pa.array(keep)) if table is not None else None
        locator = self._locator
        malformed_records = [
            {
                "source": self._source,
                "line": locator.line_of(m.row),
                "record": m.record,
                "errors": m.errors,
            }
            for m in sorted(errors.values(), key=lambda m: m.row)
        ]

        def locate(index: int) -> int:
            return locator.line_of(_stream_row(index, rows_before, skipped))

        return InputBatch(
            records=None if table is not None else [],
            source=self._source,
            malformed=malformed_records,
            locate=locate,
            table=pa.Table.from_batches([table]) if table is not None else None,
        )

    def _invalid_utf8(
        self, table: pa.RecordBatch, rows_before: int, skipped: list[int]
    ) -> list[tuple[int, _Malformed]]:
        """(table row, error record) of each row of ``table`` holding bytes that are not UTF-8."""
        values: dict[str, list[Any]] = {}  # the bytes of each column that is not all UTF-8
        bad: dict[int, list[str]] = {}  # table row -> its columns that are not UTF-8
        for name, column in zip(table.schema.names, table.columns, strict=True):
            if _ascii(column):
                continue  # ASCII is UTF-8: the full check (many times slower) is not needed
            try:
                column.validate(full=True)
                continue
            except pa.ArrowInvalid:
                pass
            values[name] = column.view(pa.binary()).to_pylist()
            for index, value in enumerate(values[name]):
                try:
                    value.decode("utf-8")
                except UnicodeDecodeError:
                    bad.setdefault(index, []).append(name)
                except AttributeError:  # pragma: no cover - no nulls: strings_can_be_null=False
                    pass
        if not bad:
            return []
        for name, column in zip(table.schema.names, table.columns, strict=True):
            if name not in values:
                values[name] = column.to_pylist()
        found: list[tuple[int, _Malformed]] = []
        for index in sorted(bad):
            row = _stream_row(index, rows_before, skipped)
            record: Record = {}
            for name in table.schema.names:
                value = values[name][index]
                record[name] = value.decode("utf-8", "replace") if type(value) is bytes else value
            start = self._locator.start_of(row)
            invalid = _invalid_starts(self._locator.raw(row))  # the row's bad bytes, in order
            errors = []
            seen = 0
            for name in bad[index]:
                value = values[name][index]
                inside = _invalid_starts(value)
                where = start + invalid[seen] if seen < len(invalid) else None
                errors.append(_utf8_error([name], value[inside[0]], where, inside[0]))
                seen += len(inside)
            found.append((index, _Malformed(row, record, errors)))
        return found

    def _check_last_record(
        self, table: pa.RecordBatch | None, row: int, errors: dict[int, _Malformed], drop: list[int]
    ) -> None:
        """Make the range's last record (stream row ``row``) an error record when a quoted
        field in it never closes."""
        if row in errors:
            text = "".join(str(value) for value in errors[row].record.values())
        elif table is not None and table.num_rows and table.num_columns:
            value = table.column(table.num_columns - 1).view(pa.binary())[-1].as_py()
            text = value.decode("utf-8", "replace") if value is not None else ""
        else:
            return
        if "\n" not in text and "\r" not in text:
            return  # a quoted field left open takes in a line end at least
        opened = self._locator.open_quote()
        if opened is None or opened.row != row:
            return
        if row in errors:
            errors[row].errors.insert(0, self._open_quote_error(opened, []))
            return
        if table is None:  # pragma: no cover - a table row without a table
            return
        index = table.num_rows - 1
        record = {name: table.column(name)[index].as_py() for name in table.column_names}
        loc: list[str | int] = [table.column_names[-1]]
        errors[row] = _Malformed(row, record, [self._open_quote_error(opened, loc)])
        drop.append(index)

    def _open_quote_error(self, opened: OpenQuote, loc: list[str | int]) -> dict[str, Any]:
        return {
            "type": "csv_unterminated_quote",
            "loc": loc,
            "msg": (
                f"the quote opened at line {opened.line} (byte {opened.offset}) is never "
                f"closed: this field takes in the rest of the input (lines {opened.line}-"
                f"{opened.last_line}); is a closing quote missing?"
            ),
        }


def _ascii(column: pa.Array) -> bool:
    """True if every byte of the values of the string array ``column`` is ASCII (checked over
    its whole data buffer, which holds them)."""
    data = column.buffers()[2]
    return data is None or data.to_pybytes().isascii()


def _stream_row(index: int, rows_before: int, skipped: list[int]) -> int:
    """Stream row of table row ``index`` of a batch, given the stream rows it skips (sorted)."""
    row = rows_before + index
    for other in skipped:
        if other <= row:
            row += 1
        else:
            break
    return row


def _invalid_starts(data: bytes) -> list[int]:
    """Offsets in ``data`` where each sequence that is not UTF-8 starts."""
    found: list[int] = []
    view = memoryview(data)
    position = 0
    while position < len(data):
        try:
            codecs.utf_8_decode(view[position:], "strict", True)
            break
        except UnicodeDecodeError as exc:
            found.append(position + exc.start)
            position += exc.end
    return found


def _field_count_error(expected: object, actual: object) -> dict[str, Any]:
    return {
        "type": "csv_field_count",
        "loc": [],
        "msg": f"expected {expected} fields, got {actual}",
    }


def _utf8_error(
    loc: list[str | int], byte: int, offset: int | None, in_value: int | None
) -> dict[str, Any]:
    where = f"at byte {offset} of the file" if offset is not None else "in this row"
    if in_value is not None:
        where += f" (byte {in_value} of the value)"
    return {
        "type": "csv_invalid_utf8",
        "loc": loc,
        "msg": f"not UTF-8: byte 0x{byte:02x} {where}; this reader needs UTF-8",
    }
