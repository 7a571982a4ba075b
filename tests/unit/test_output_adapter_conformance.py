"""The output-adapter conformance suite (zoopipe_hpc.testing) on every built-in file output."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import zstandard

from zoopipe_hpc import (
    ArrowOutputAdapter,
    CSVOutputAdapter,
    JSONOutputAdapter,
    ParquetOutputAdapter,
)
from zoopipe_hpc.adapters import BaseOutputAdapter
from zoopipe_hpc.testing import OutputAdapterConformance

Record = dict[str, Any]


class TestCSVOutput(OutputAdapterConformance):
    suffix = ".csv"

    def make_adapter(self, path: Path) -> BaseOutputAdapter:
        return CSVOutputAdapter(path)

    def read_rows(self, path: Path, schema: pa.Schema) -> list[Record]:
        table = pacsv.read_csv(
            path,
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(column_types=schema, strings_can_be_null=False),
        )
        assert table.schema.names == schema.names
        return table.to_pylist()


class TestJSONLinesOutput(OutputAdapterConformance):
    suffix = ".jsonl"

    def make_adapter(self, path: Path) -> BaseOutputAdapter:
        return JSONOutputAdapter(path)

    def read_rows(self, path: Path, schema: pa.Schema) -> list[Record]:
        text = path.read_text(encoding="utf-8")
        assert text == "" or text.endswith("\n"), "every line ends with a newline"
        return [json.loads(line) for line in text.splitlines()]


class TestJSONArrayOutput(OutputAdapterConformance):
    suffix = ".json"

    def make_adapter(self, path: Path) -> BaseOutputAdapter:
        return JSONOutputAdapter(path)

    def read_rows(self, path: Path, schema: pa.Schema) -> list[Record]:
        with open(path, encoding="utf-8") as f:
            rows = json.load(f)
        assert isinstance(rows, list)
        return rows


class TestParquetOutput(OutputAdapterConformance):
    suffix = ".parquet"

    def make_adapter(self, path: Path) -> BaseOutputAdapter:
        return ParquetOutputAdapter(path)

    def read_rows(self, path: Path, schema: pa.Schema) -> list[Record]:
        table = pq.read_table(path)
        assert table.schema.names == schema.names
        return table.cast(schema).to_pylist()


class TestCSVOutputWithZooPipeOptions(OutputAdapterConformance):
    """``delimiter``, ``quotechar`` (written by the ``csv`` module) and ``fieldnames``."""

    suffix = ".csv"

    def make_adapter(self, path: Path) -> BaseOutputAdapter:
        return CSVOutputAdapter(
            path, delimiter=";", quotechar="'", fieldnames=["name", "id", "score", "active"]
        )

    def read_rows(self, path: Path, schema: pa.Schema) -> list[Record]:
        table = pacsv.read_csv(
            path,
            parse_options=pacsv.ParseOptions(
                delimiter=";", quote_char="'", newlines_in_values=True
            ),
            convert_options=pacsv.ConvertOptions(column_types=schema, strings_can_be_null=False),
        )
        assert table.schema.names == ["name", "id", "score", "active"]
        return table.select(schema.names).to_pylist()


class TestJSONIndentedArrayOutput(OutputAdapterConformance):
    suffix = ".out"

    def make_adapter(self, path: Path) -> BaseOutputAdapter:
        return JSONOutputAdapter(path, format="array", indent=4)

    def read_rows(self, path: Path, schema: pa.Schema) -> list[Record]:
        with open(path, encoding="utf-8") as f:
            rows = json.load(f)
        assert isinstance(rows, list)
        return rows


class TestArrowOutput(OutputAdapterConformance):
    suffix = ".arrow"

    def make_adapter(self, path: Path) -> BaseOutputAdapter:
        return ArrowOutputAdapter(path)

    def read_rows(self, path: Path, schema: pa.Schema) -> list[Record]:
        with pa.memory_map(str(path), "r") as source:
            table = pa.ipc.open_file(source).read_all()
        if table.num_columns:
            assert table.schema.names == schema.names
        return table.cast(schema).to_pylist() if table.num_columns else []


# -- compressed outputs: the same promises, read back through each codec's real decompressor ----


def _zstd_decompress(data: bytes) -> bytes:
    # Every frame: a merged file is the parts' frames one after another.
    return zstandard.ZstdDecompressor().decompressobj(read_across_frames=True).decompress(data)


_DECOMPRESS: dict[str, Callable[[bytes], bytes]] = {
    ".gz": gzip.decompress,
    ".bz2": bz2.decompress,
    ".xz": lzma.decompress,
    ".zst": _zstd_decompress,
}


class _Compressed(OutputAdapterConformance):
    """Reads the file decompressed (the decompressor refuses anything but a valid stream of its
    codec) with the plain format's reader, from a private folder away from the target."""

    def read_rows(self, path: Path, schema: pa.Schema) -> list[Record]:
        codec = path.suffix
        assert codec in _DECOMPRESS, path
        data = _DECOMPRESS[codec](path.read_bytes())
        with tempfile.TemporaryDirectory(prefix="zoopipe-test-") as folder:
            plain = Path(folder) / path.with_suffix("").name
            plain.write_bytes(data)
            return super().read_rows(plain, schema)


class TestGzipCSVOutput(_Compressed, TestCSVOutput):
    suffix = ".csv.gz"


class TestBzip2CSVOutputWithZooPipeOptions(_Compressed, TestCSVOutputWithZooPipeOptions):
    """The ``csv`` module's writer (quotechar ``'``) through bzip2."""

    suffix = ".csv.bz2"


class TestZstdCSVOutput(_Compressed, TestCSVOutput):
    suffix = ".csv.zst"


class TestXzJSONLinesOutput(_Compressed, TestJSONLinesOutput):
    suffix = ".jsonl.xz"


class TestZstdJSONLinesOutput(_Compressed, TestJSONLinesOutput):
    suffix = ".jsonl.zst"


class TestGzipJSONArrayOutput(_Compressed, TestJSONArrayOutput):
    """``x.json.gz``: the format is chosen from the suffix before the codec's."""

    suffix = ".json.gz"


class TestZstdJSONArrayOutput(_Compressed, TestJSONArrayOutput):
    """An array's parts are read back line by line through the codec by the merge."""

    suffix = ".json.zst"


class TestExplicitGzipJSONLinesOutput(_Compressed, TestJSONLinesOutput):
    """``compression="gzip"`` on a name without a codec suffix (read back as gzip)."""

    suffix = ".jsonl"

    def make_adapter(self, path: Path) -> BaseOutputAdapter:
        return JSONOutputAdapter(path, compression="gzip")

    def read_rows(self, path: Path, schema: pa.Schema) -> list[Record]:
        data = gzip.decompress(path.read_bytes())
        text = data.decode("utf-8")
        assert text == "" or text.endswith("\n")
        return [json.loads(line) for line in text.splitlines()]
