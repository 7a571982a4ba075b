"""CSV input and output through pyarrow."""

from __future__ import annotations

import codecs
import csv as _csv
import io
import os
import tempfile
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import IO, Any, cast

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ..errors import ConfigurationError, InputError, OutputError
from ..validation._arrow import rows_to_table
from ._codecs import (
    CompressedWriter,
    copy_from,
    empty_frame,
    first_frame,
    output_codec,
    output_level,
)
from ._csv_header import check_encoding, column_names, header_of, read_header, skip_lines
from ._csv_lines import line_ends
from ._csv_read import CSVRangeReader
from ._multi import MultiFileInput, expand_sources, refuse_hidden_compression
from ._multi import one_path as _one_path
from ._split import ByteRange, file_size, header_end, split_ranges
from .base import BaseInputAdapter, BaseOutputAdapter, InputBatch, Record, _FileSink, check_workers

__all__ = ["CSVInputAdapter", "CSVOutputAdapter"]


#: Up to this many markers, a cell is compared with each (cheaper than a hash lookup).
_FEW_MARKERS = 3


def _hits(chunk: pa.Array, markers: Sequence[str]) -> pa.Array | None:
    """The mask of the cells of ``chunk`` equal to one of ``markers`` (no nulls), or None if
    there are none."""
    if len(markers) <= _FEW_MARKERS:
        hit = pc.equal(chunk, markers[0])
        for marker in markers[1:]:
            hit = pc.or_(hit, pc.equal(chunk, marker))
    else:
        hit = pc.is_in(chunk, value_set=pa.array(markers, pa.string()))
    hit = pc.fill_null(hit, False)
    return hit if pc.any(hit).as_py() else None


def _nulled(chunk: pa.Array, hit: pa.Array) -> pa.Array:
    """``chunk`` (text) with the cells of ``hit`` null: a new validity bitmap over the same
    offsets and bytes, so no text is copied (a null's bytes are never read as a value)."""
    if chunk.offset:
        return pc.if_else(hit, pa.scalar(None, chunk.type), chunk)
    valid = pc.and_not(pc.is_valid(chunk), hit)
    return pa.Array.from_buffers(chunk.type, len(chunk), [valid.buffers()[1], *chunk.buffers()[1:]])


class CSVInputAdapter(BaseInputAdapter):
    """Reads a CSV file. Every value is read as text; the schema converts it.

    ZooPipe's options, with its names:

    * ``quotechar`` (``quote_char``, this package's earlier spelling, is kept as an alias);
    * ``skip_rows``: lines before the header (a title, comments) that are not read at all;
      line numbers in error records still count them;
    * ``fieldnames``: the file has no header line: these are the column names, and its first
      line (after ``skip_rows``) is a record;
    * ``generate_ids``: accepted and kept for ZooPipe code; zoopipe_hpc hands records to the
      validator without ZooPipe's per-entry envelope, so no id is made (see docs/guide.md).

    ``split(n)`` cuts the file into byte ranges at record boundaries (quoted fields may hold
    delimiters, quotes and newlines), so every record lands in exactly one shard.

    ``source`` may also be a list of paths, a directory or a glob (``"raw/2024-*.csv.gz"``),
    expanded once here and sorted by path; ``.gz``, ``.bz2``, ``.xz`` and ``.zst`` files are
    read as streams, one shard each, since a compressed stream cannot be cut. ``paths`` lists
    the files (None for one plain path, read exactly as before); see ``docs/guide.md``, "Many
    input files and compressed inputs".

    The file must be UTF-8 with a header naming each column once (else an ``InputError`` naming
    the file and the header's line). A row holding bytes that are not UTF-8, a malformed row
    (a field count other than the header's) and a quoted field that never closes are error
    records; a record longer than ``block_size`` is read with a larger block, up to 64 MiB (see
    ``docs/guide.md``, "Bad input").

    Missing values and encodings (``docs/guide.md``, "CSV options"):

    * ``null_values``: a cell equal to one of these texts is None (a null on the fast path), so
      ``int | None`` fields accept it; ``true_values`` / ``false_values``: a cell equal to one
      of these reads as ``"true"`` / ``"false"``, which bool fields accept;
    * ``encoding``: the file's text encoding (``"utf-8"``, the default, is read as before).
      A single-byte encoding that keeps ASCII (``"latin-1"``, ``"cp1252"``...) is split by
      byte ranges as UTF-8 is, each shard decoding its range into a private UTF-8 copy; any
      other (``"utf-16"`` with its BOM...) cannot be cut exactly at byte offsets, so the file is
      decoded whole by one shard (``split(n)`` gives it and ``n - 1`` empty shards). A byte the
      encoding cannot decode stops the read with an ``InputError`` naming the file, the line
      and the byte offset.
    """

    def __init__(
        self,
        source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        *,
        delimiter: str = ",",
        quotechar: str | None = None,
        skip_rows: int = 0,
        fieldnames: Sequence[str] | None = None,
        generate_ids: bool = True,
        quote_char: str | None = None,
        block_size: int = 1 << 20,
        byte_range: tuple[int, int, int] | None = None,
        null_values: Sequence[str] | None = None,
        true_values: Sequence[str] | None = None,
        false_values: Sequence[str] | None = None,
        encoding: str = "utf-8",
    ) -> None:
        expanded = expand_sources(source)
        super().__init__(expanded[0] if expanded is not None else _one_path(source))
        if quotechar is not None and quote_char is not None and quotechar != quote_char:
            raise ConfigurationError(
                f"{self.source}: quotechar={quotechar!r} and its alias quote_char="
                f"{quote_char!r} disagree; give one of them"
            )
        quote = quotechar if quotechar is not None else quote_char
        quote = quote if quote is not None else '"'
        if len(delimiter) != 1 or len(quote) != 1 or delimiter == quote:
            raise ConfigurationError(
                f"{self.source}: delimiter and quotechar must be two different single "
                f"characters, got {delimiter!r} and {quote!r}"
            )
        if not isinstance(skip_rows, int) or isinstance(skip_rows, bool) or skip_rows < 0:
            raise ConfigurationError(
                f"{self.source}: skip_rows must be a number of lines (0 or more), got {skip_rows!r}"
            )
        names: list[str] | None = None
        if fieldnames is not None:
            names = list(fieldnames)
            if not names or not all(isinstance(name, str) for name in names):
                raise ConfigurationError(
                    f"{self.source}: fieldnames must be a non-empty list of column names"
                )
            if len(set(names)) != len(names):
                raise ConfigurationError(f"{self.source}: fieldnames names a column twice: {names}")
        self.delimiter = delimiter
        self.quotechar = quote
        self.skip_rows = skip_rows
        self.fieldnames = names
        self.generate_ids = bool(generate_ids)
        self.block_size = block_size
        self.byte_range = ByteRange(*byte_range) if byte_range is not None else None
        self.null_values = _markers(self.source, "null_values", null_values)
        self.true_values = _markers(self.source, "true_values", true_values)
        self.false_values = _markers(self.source, "false_values", false_values)
        both = set(self.true_values or ()) & set(self.false_values or ())
        if both:
            raise ConfigurationError(
                f"{self.source}: {sorted(both)} are both true_values and false_values"
            )
        if not isinstance(encoding, str):
            raise ConfigurationError(f"{self.source}: encoding must be a name, got {encoding!r}")
        try:
            codec = codecs.lookup(encoding).name
        except LookupError as exc:
            raise ConfigurationError(f"{self.source}: unknown encoding {encoding!r}") from exc
        self.encoding = encoding
        #: "utf-8": read as it is; "bytewise": a single-byte encoding keeping ASCII, split by
        #: byte ranges, each decoded by its shard; "whole": decoded whole, one shard.
        self._mode = "utf-8" if codec == "utf-8" else "bytewise" if _bytewise(codec) else "whole"
        self._codec = codec
        self._transcode = self._mode == "whole"
        #: A list, directory, glob or compressed file: the files, read one after another.
        self._multi: MultiFileInput | None = None
        #: Every file read, for a run's collision check (None for one plain file).
        self.paths: list[Path] | None = None
        if expanded is not None:
            one = partial(
                CSVInputAdapter,
                delimiter=delimiter,
                quotechar=quote,
                skip_rows=skip_rows,
                fieldnames=names,
                generate_ids=generate_ids,
                block_size=block_size,
                null_values=self.null_values,
                true_values=self.true_values,
                false_values=self.false_values,
                encoding=encoding,
            )
            self._multi = MultiFileInput.of_files(expanded[0], expanded[1], one)
            self.paths = list(expanded[1])

    @property
    def read_ahead(self) -> bool:  # type: ignore[override]
        """Read ahead a UTF-8 file: pyarrow parses it and applies the markers without the GIL.
        Not a file read from a temporary copy (another encoding, a compressed file), which is
        removed once its last batch is read, while the pipe may still look up the lines of
        that batch's rows in it."""
        if self._multi is not None:
            return self._multi.read_ahead
        return self._mode == "utf-8"

    @property
    def quote_char(self) -> str:
        """Alias of :attr:`quotechar` (the spelling of earlier releases)."""
        return self.quotechar

    def describe(self) -> str:
        if self._multi is not None:
            return f"CSVInputAdapter({self.source!r}, {len(self.paths or ())} files)"
        if self.byte_range is None:
            return f"CSVInputAdapter({self.source!r})"
        r = self.byte_range
        return f"CSVInputAdapter({self.source!r}, bytes {r.start}-{r.end}, from line {r.line})"

    def max_shards(self, wanted: int) -> int:
        if self._multi is not None:
            return self._multi.max_shards(wanted)
        return super().max_shards(wanted)

    def check(self) -> None:
        if self._multi is not None:
            self._multi.check()
            return
        try:
            with open(self.path, "rb") as f:
                f.read(1)
        except OSError as exc:
            raise InputError(f"cannot read CSV input: {exc.strerror}", path=self.source) from exc
        refuse_hidden_compression(self.path, self.source)

    def _layout(self) -> tuple[bytes, ByteRange, list[str]]:
        """(the header pyarrow reads first, the records' byte range with the line of its first
        byte, the column names); refuses a header that is too long, not UTF-8 or names a
        column twice. A file shorter than ``skip_rows`` lines has an empty header."""
        self.check()
        start = skip_lines(self.path, self.skip_rows)
        line = 1
        if start:
            with open(self.path, "rb") as f:
                line += line_ends(f.read(start))
        if self.fieldnames is not None:
            if self._mode == "utf-8":
                check_encoding(self.path, self.source)
            size = file_size(self.path)
            if start == 0:
                with open(self.path, "rb") as f:
                    start = len(_BOM) if f.read(len(_BOM)) == _BOM else 0
            header = header_of(self.fieldnames, self.delimiter, self.quotechar)
            return header, ByteRange(start, size, line), list(self.fieldnames)
        header, size = read_header(
            self.path,
            self.source,
            self.quotechar.encode(),
            self.delimiter.encode(),
            start=start,
            line=line,
            encoding=self._codec,
        )
        columns = column_names(
            header, self.source, self.delimiter, self.quotechar, line, encoding=self._codec
        )
        return header, ByteRange(start + len(header), size, line + line_ends(header)), columns

    def _with_range(self, r: ByteRange) -> CSVInputAdapter:
        return CSVInputAdapter(
            self.path,
            delimiter=self.delimiter,
            quotechar=self.quotechar,
            skip_rows=self.skip_rows,
            fieldnames=self.fieldnames,
            generate_ids=self.generate_ids,
            block_size=self.block_size,
            byte_range=(r.start, r.end, r.line),
            null_values=self.null_values,
            true_values=self.true_values,
            false_values=self.false_values,
            encoding=self.encoding,
        )

    def split(self, workers: int) -> list[BaseInputAdapter]:
        check_workers(workers)
        if self._multi is not None:
            return self._multi.split(workers)
        if self._transcode:
            # Decoded whole: the first shard reads the file, the others nothing.
            return [self, *(_EmptyCSV(self.path) for _ in range(workers - 1))]
        _, whole, _ = self._layout()
        r = self.byte_range or whole
        with open(self.path, "rb") as f:
            ranges = split_ranges(
                f,
                r.start,
                r.end,
                workers,
                r.line,
                self.quotechar.encode(),
                delimiter=self.delimiter.encode(),
            )
        return [self._with_range(part) for part in ranges]

    def batches(self) -> Iterator[InputBatch]:
        if self._multi is not None:
            yield from self._multi.batches()
            return
        if self._mode == "whole":
            yield from self._decoded_batches()
            return
        if self._mode == "bytewise":
            yield from self._range_decoded_batches()
            return
        if not (self.null_values or self.true_values or self.false_values):
            yield from self._utf8_batches()
            return
        for batch in self._utf8_batches():
            if batch.table is not None:
                batch.table = self._apply_markers(batch.table)
            yield batch

    def _apply_markers(self, table: pa.Table) -> pa.Table:
        """``table`` with null, true and false markers replaced (string columns only)."""
        columns = []
        for column in table.columns:
            if pa.types.is_string(column.type):
                chunks = []
                for chunk in column.chunks:
                    for values, to in (
                        (self.true_values, pa.scalar("true")),
                        (self.false_values, pa.scalar("false")),
                    ):
                        if values:
                            hit = _hits(chunk, values)
                            if hit is not None:
                                chunk = pc.if_else(hit, to, chunk)
                    if self.null_values:
                        hit = _hits(chunk, self.null_values)
                        if hit is not None:
                            chunk = _nulled(chunk, hit)
                    chunks.append(chunk)
                column = pa.chunked_array(chunks, column.type)
            columns.append(column)
        return pa.Table.from_arrays(columns, names=table.column_names)

    def _decoded_batches(self) -> Iterator[InputBatch]:
        """The batches of a file in another encoding than UTF-8: decoded into a private UTF-8
        copy first, read from it, with the original file named in every record."""
        self.check()
        with tempfile.TemporaryDirectory(prefix="zoopipe-csv-") as folder:
            copy = Path(folder) / "utf8.csv"
            _decode_to_utf8(self.path, self.source, self._codec, copy, ByteRange(0, -1, 1))
            inner = CSVInputAdapter(
                copy,
                delimiter=self.delimiter,
                quotechar=self.quotechar,
                skip_rows=self.skip_rows,
                fieldnames=self.fieldnames,
                block_size=self.block_size,
                null_values=self.null_values,
                true_values=self.true_values,
                false_values=self.false_values,
            )
            yield from self._renamed(inner, copy)

    def _range_decoded_batches(self) -> Iterator[InputBatch]:
        """The batches of this byte range of a file in a single-byte encoding: the range is
        decoded into a private UTF-8 copy, read as records of the columns of the header."""
        header, whole, columns = self._layout()
        if not header and self.fieldnames is None:
            return
        r = self.byte_range or whole
        if r.empty:
            return
        with tempfile.TemporaryDirectory(prefix="zoopipe-csv-") as folder:
            copy = Path(folder) / "utf8.csv"
            size = _decode_to_utf8(self.path, self.source, self._codec, copy, r)
            inner = CSVInputAdapter(
                copy,
                delimiter=self.delimiter,
                quotechar=self.quotechar,
                fieldnames=columns,
                block_size=self.block_size,
                byte_range=(0, size, r.line),
                null_values=self.null_values,
                true_values=self.true_values,
                false_values=self.false_values,
            )
            yield from self._renamed(inner, copy)

    def _renamed(self, inner: CSVInputAdapter, copy: Path) -> Iterator[InputBatch]:
        """``inner``'s batches, naming this file instead of the private ``copy``."""
        inner_source = str(copy)
        for batch in inner.batches():
            batch.source = self.source
            for record in batch.malformed:
                if record.get("source") == inner_source:
                    record["source"] = self.source
            yield batch

    def _utf8_batches(self) -> Iterator[InputBatch]:
        header, whole, columns = self._layout()
        if not header:
            return
        byte_range = self.byte_range or whole
        if byte_range.empty:
            return
        reader = CSVRangeReader(
            self.path,
            header,
            columns,
            byte_range,
            delimiter=self.delimiter,
            quote_char=self.quotechar,
            block_size=self.block_size,
        )
        yield from reader.batches()


_BOM = b"\xef\xbb\xbf"
#: Bytes decoded at a time when a file is decoded into UTF-8.
_DECODE_CHUNK = 1 << 20


def _markers(source: str, name: str, values: Sequence[str] | None) -> list[str] | None:
    """The marker texts of option ``name`` (None when not given); refuses anything else than a
    list of strings."""
    if values is None:
        return None
    if isinstance(values, str) or not all(isinstance(v, str) for v in values):
        raise ConfigurationError(f"{source}: {name} must be a list of texts, got {values!r}")
    return list(values)


def _bytewise(codec: str) -> bool:
    """Whether ``codec`` is a single-byte encoding that keeps ASCII (latin-1, cp1252...): a
    byte range of its file can then be cut at the same bytes as in UTF-8."""
    ascii_bytes = bytes(range(128))
    try:
        if ascii_bytes.decode(codec) != ascii_bytes.decode("ascii"):
            return False
    except UnicodeDecodeError:
        return False
    alone = 0
    for byte in range(128, 256):
        try:
            alone += len(bytes([byte]).decode(codec)) == 1
        except UnicodeDecodeError:
            pass
    return alone >= 120  # a code page: (nearly) every high byte a character of its own


def _decode_to_utf8(path: Path, source: str, encoding: str, destination: Path, r: ByteRange) -> int:
    """Write bytes ``r.start`` to ``r.end`` (-1: the end) of ``path`` decoded from
    ``encoding`` into ``destination`` as UTF-8 (a BOM, with the encodings that have one, is
    dropped); the bytes written. A byte that does not decode is an InputError naming the file,
    its line (``r.start`` being line ``r.line``) and its byte offset."""
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    offset, written = r.start, 0
    with open(path, "rb") as f, open(destination, "wb") as out:
        f.seek(r.start)
        while True:
            want = _DECODE_CHUNK if r.end < 0 else min(_DECODE_CHUNK, r.end - offset)
            chunk = f.read(want) if want > 0 else b""
            final = not chunk
            try:
                text = decoder.decode(chunk, final)
            except UnicodeDecodeError as exc:
                # exc.object: the bytes the decoder held back before this chunk, and the chunk.
                where = offset + len(chunk) - len(exc.object) + exc.start
                before = _prefix(path, encoding, r.start, where)
                raise InputError(
                    f"cannot decode the file as {encoding}: bytes "
                    f"{exc.object[exc.start : exc.end]!r} at byte {where} ({exc.reason})",
                    path=source,
                    line=r.line + _count_lines(before),
                    offset=where,
                ) from exc
            data = text.encode("utf-8")
            out.write(data)
            written += len(data)
            offset += len(chunk)
            if final:
                return written


def _prefix(path: Path, encoding: str, start: int, end: int) -> str:
    """The text of bytes ``start`` to ``end`` of ``path`` (to count the lines before a byte
    that does not decode)."""
    decoder = codecs.getincrementaldecoder(encoding)("replace")
    parts = []
    with open(path, "rb") as f:
        f.seek(start)
        left = end - start
        while left > 0:
            chunk = f.read(min(left, _DECODE_CHUNK))
            if not chunk:
                break
            left -= len(chunk)
            parts.append(decoder.decode(chunk, False))
    return "".join(parts)


def _count_lines(text: str) -> int:
    """Line ends in ``text`` (LF, CR LF or CR each end one)."""
    return text.count("\n") + text.count("\r") - text.count("\r\n")


class _EmptyCSV(BaseInputAdapter):
    """A shard of a file decoded whole by another shard: no records."""

    def describe(self) -> str:
        return f"CSVInputAdapter({self.source!r}, empty shard: decoded whole by the first)"

    def check(self) -> None:
        return None

    def split(self, workers: int) -> list[BaseInputAdapter]:
        check_workers(workers)
        return [self, *(_EmptyCSV(self.path) for _ in range(workers - 1))]

    def batches(self) -> Iterator[InputBatch]:
        return iter(())


class _CSVSink(_FileSink):
    """Writes tables as CSV with pyarrow, or with the ``csv`` module when the quote character
    is not ``"`` (pyarrow's writer only quotes with ``"``); ``fieldnames`` picks the columns
    and their order (a name the rows lack is an empty column).

    ``codec`` compresses the file; ``header_frame``: the header line is a compressed frame of
    its own (a part to be merged: the merge drops it by skipping that frame)."""

    def __init__(
        self,
        path: Path,
        schema: pa.Schema | None,
        delimiter: str,
        quotechar: str,
        fieldnames: Sequence[str] | None,
        codec: str | None = None,
        header_frame: bool = False,
        level: int | None = None,
    ) -> None:
        self._path = path
        self._schema = schema
        self._delimiter = delimiter
        self._quotechar = quotechar
        self._fieldnames = list(fieldnames) if fieldnames is not None else None
        self._file = CompressedWriter(path, codec, level=level)
        self._header_frame = header_frame and codec is not None
        self._writer: pacsv.CSVWriter | None = None
        self._text: io.TextIOWrapper | None = None
        self._rows: Any = None  # a csv.writer, when quotechar is not '"'
        if schema is not None:
            self._start(self._project(schema.empty_table()).schema)

    def _project(self, table: pa.Table) -> pa.Table:
        names = self._fieldnames
        if names is None:
            return table
        present = set(table.column_names)
        columns = [
            table.column(name) if name in present else pa.nulls(table.num_rows, pa.string())
            for name in names
        ]
        return pa.Table.from_arrays(columns, names=names)

    def _start(self, schema: pa.Schema) -> None:
        if self._quotechar == '"':
            # pyarrow writes the header when the writer is made.
            self._writer = pacsv.CSVWriter(
                self._file, schema, write_options=pacsv.WriteOptions(delimiter=self._delimiter)
            )
        else:
            text = io.TextIOWrapper(cast(IO[bytes], self._file), encoding="utf-8", newline="")
            self._text = text
            self._rows = _csv.writer(
                text, delimiter=self._delimiter, quotechar=self._quotechar, lineterminator="\n"
            )
            self._rows.writerow(schema.names)
            text.flush()
        if self._header_frame:
            self._file.end_frame()

    def write(self, rows: Sequence[Record]) -> None:
        table = self._project(rows_to_table(rows, self._schema))
        if self._writer is None and self._rows is None:
            self._start(table.schema)
        if self._writer is not None:
            self._writer.write_table(table)
            return
        texts = [_as_text(column) for column in table.columns]
        self._rows.writerows(zip(*texts, strict=True))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._text is not None:
            self._text.flush()
            self._text.detach()
            self._text = None
        self._file.close()


def _as_text(column: pa.ChunkedArray) -> list[str]:
    """A column's values as the text pyarrow's CSV writer gives them (null: empty)."""
    text = column.cast(pa.string()) if column.type != pa.string() else column
    return [value if value is not None else "" for value in text.to_pylist()]


class CSVOutputAdapter(BaseOutputAdapter):
    """Writes a CSV file with one header line.

    ``delimiter`` and ``quotechar`` are single characters (ZooPipe's names); ``fieldnames``
    lists the columns written, in that order: other columns are left out, and a name the rows
    do not have is written as an empty column. Without it, the columns are the model's fields
    (or the first rows' keys) in their order.

    ``compression``: ``"infer"`` (the default) compresses as the suffix says, as ZooPipe does
    (``.gz`` gzip, ``.bz2`` bzip2, ``.xz`` xz, ``.zst`` zstd, which needs the ``[zstd]``
    extra); ``"gzip"``, ``"bz2"``, ``"xz"`` or ``"zstd"`` compress a file of any other name;
    None writes plain text. A choice the suffix contradicts (None for ``x.csv.gz``) is refused.
    ``compression_level``: the codec's level (gzip 0-9, bzip2 1-9, xz 0-9, zstd 1-22; None: the
    codec's own default, 6, 9, 6 and 3).
    The shards' parts are compressed by the workers and merged by concatenating their frames,
    the header kept once (``docs/guide.md``, "Compressed outputs").
    """

    format = "csv"

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        output: str | os.PathLike[str] | None = None,
        delimiter: str = ",",
        quotechar: str = '"',
        fieldnames: Sequence[str] | None = None,
        compression: str | None = "infer",
        compression_level: int | None = None,
    ) -> None:
        super().__init__(path, output=output)
        #: The codec written (``"gzip"``, ``"bz2"``, ``"xz"``, ``"zstd"``) or None.
        self.compression = output_codec(self.path, compression)
        self.compression_level = output_level(self.path, self.compression, compression_level)
        if len(delimiter) != 1 or len(quotechar) != 1 or delimiter == quotechar:
            raise ConfigurationError(
                f"{self.path}: delimiter and quotechar must be two different single characters, "
                f"got {delimiter!r} and {quotechar!r}"
            )
        if fieldnames is not None:
            names = list(fieldnames)
            if not names or not all(isinstance(n, str) for n in names):
                raise ConfigurationError(
                    f"{self.path}: fieldnames must be a non-empty list of column names"
                )
            if len(set(names)) != len(names):
                raise ConfigurationError(f"{self.path}: fieldnames names a column twice: {names}")
            fieldnames = names
        self.delimiter = delimiter
        self.quotechar = quotechar
        self.fieldnames: list[str] | None = fieldnames

    def _clone(self) -> CSVOutputAdapter:
        return CSVOutputAdapter(
            self.path,
            delimiter=self.delimiter,
            quotechar=self.quotechar,
            fieldnames=self.fieldnames,
            compression=self.compression,
            compression_level=self.compression_level,
        )

    def _open_file(self, path: Path, schema: pa.Schema | None) -> _FileSink:
        return _CSVSink(
            path,
            schema,
            self.delimiter,
            self.quotechar,
            self.fieldnames,
            codec=self.compression,
            header_frame=not self.writes_final_format,
            level=self.compression_level,
        )

    def merge(self, parts: Sequence[Path], destination: Path) -> None:
        """Concatenate parts, keeping the header of the first part that has one.

        Compressed parts are concatenated frame by frame, never decompressed: the first frame
        of a part is its header alone (see ``_CSVSink``), kept for the first part that has a
        header and skipped for the others.
        """
        if self.compression is not None:
            self._merge_compressed(parts, destination, self.compression)
            return
        wrote_header = False
        quote, delimiter = self.quotechar.encode(), self.delimiter.encode()
        with open(destination, "wb") as out:
            for part in parts:
                size = file_size(part)
                if size == 0:
                    continue
                with open(part, "rb") as f:
                    end = header_end(f, size, quote, delimiter)
                    f.seek(0 if not wrote_header else end)
                    wrote_header = True
                    copy_from(f, out)
            out.flush()
            os.fsync(out.fileno())

    def _merge_compressed(self, parts: Sequence[Path], destination: Path, codec: str) -> None:
        wrote_header = False
        quote, delimiter = self.quotechar.encode(), self.delimiter.encode()
        with open(destination, "wb") as out:
            for part in parts:
                length, header = first_frame(part, codec)
                if not header:
                    continue  # a part that got no header has no rows either
                end = header_end(io.BytesIO(header), len(header), quote, delimiter)
                if end != len(header):
                    raise OutputError(
                        f"cannot merge {part} into {self.path}: its first {codec} frame is not "
                        "its header line alone (a part written by another writer?)",
                        path=str(part),
                    )
                with open(part, "rb") as f:
                    f.seek(0 if not wrote_header else length)
                    wrote_header = True
                    copy_from(f, out)
            if not wrote_header:
                out.write(empty_frame(codec))
            out.flush()
            os.fsync(out.fileno())
