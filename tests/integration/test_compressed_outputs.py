"""Compressed CSV and JSON Lines outputs of real multi-shard runs (MultiProcessEngine).

Each output is read back with the codec's own decompressor (the standard library's gzip, bz2
and lzma, the zstandard module reading across frames) and, where the command is installed,
checked with its command-line tool (``gzip -t`` ...): every record once, in input order, the
CSV header once, the error records compressed too.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import lzma
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard
from pydantic import BaseModel

from zoopipe_hpc import CSVInputAdapter, CSVOutputAdapter, JSONOutputAdapter, Pipe, PipeManager
from zoopipe_hpc.adapters import BaseOutputAdapter
from zoopipe_hpc.adapters._codecs import first_frame
from zoopipe_hpc.engines import MultiProcessEngine

ROWS = 3000
SHARDS = 3


class Row(BaseModel):
    id: int
    name: str


def _zstd(data: bytes) -> bytes:
    return zstandard.ZstdDecompressor().decompressobj(read_across_frames=True).decompress(data)


DECOMPRESS: dict[str, Callable[[bytes], bytes]] = {
    ".gz": gzip.decompress,
    ".bz2": bz2.decompress,
    ".xz": lzma.decompress,
    ".zst": _zstd,
}
TOOLS = {".gz": "gzip", ".bz2": "bzip2", ".xz": "xz", ".zst": "zstd"}


def _invalid(i: int) -> bool:
    return i % 101 == 7


def _write_input(path: Path, rows: int = ROWS, every_invalid: bool = False) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("id,name\n")
        for i in range(rows):
            bad = every_invalid or _invalid(i)
            f.write(f"x{i},bad {i}\n" if bad else f'{i},"name {i}, the {i}th"\n')


def _text(path: Path) -> str:
    """The decompressed text of ``path``, after its codec's command-line test (if installed)."""
    tool = shutil.which(TOOLS[path.suffix])
    if tool is not None:
        done = subprocess.run([tool, "-t", str(path)], capture_output=True, text=True)
        assert done.returncode == 0, f"{tool} -t {path}: {done.stderr}"
    return DECOMPRESS[path.suffix](path.read_bytes()).decode("utf-8")


def _records(path: Path) -> list[dict[str, str]]:
    """The records of a compressed CSV (header once: a second one would be a record) or JSON
    Lines file, values as text."""
    text = _text(path)
    if ".csv" in path.suffixes:
        rows = list(csv.reader(io.StringIO(text)))
        header, body = rows[0], rows[1:]
        return [dict(zip(header, row, strict=True)) for row in body]
    assert text == "" or text.endswith("\n")
    return [{k: str(v) for k, v in json.loads(line).items()} for line in text.splitlines()]


def _adapter(path: Path) -> BaseOutputAdapter:
    return CSVOutputAdapter(path) if ".csv" in path.suffixes else JSONOutputAdapter(path)


def _run(source: Path, output: Path, errors: Path, **options: object) -> PipeManager:
    pipe = Pipe(
        input_adapter=CSVInputAdapter(source),
        output_adapter=_adapter(output),
        error_output_adapter=_adapter(errors),
        schema_model=Row,
    )
    manager = PipeManager.parallelize_pipe(
        pipe, workers=SHARDS, engine=MultiProcessEngine(), **options
    )
    manager.run(timeout=120)
    return manager


CASES = [
    ("out.csv.gz", "errors.jsonl.gz"),
    ("out.jsonl.zst", "errors.csv.zst"),
    ("out.csv.bz2", "errors.jsonl.bz2"),
    ("out.jsonl.xz", "errors.csv.xz"),
]


@pytest.mark.parametrize(("output", "errors"), CASES)
def test_every_record_once_in_order_through_each_codec(
    tmp_path: Path, output: str, errors: str
) -> None:
    source = tmp_path / "in.csv"
    _write_input(source)
    manager = _run(source, tmp_path / output, tmp_path / errors)
    assert manager.error is None, manager.error
    assert manager.report.success_count == sum(not _invalid(i) for i in range(ROWS))
    rows = _records(tmp_path / output)
    expected = [i for i in range(ROWS) if not _invalid(i)]
    assert [int(r["id"]) for r in rows] == expected
    assert rows[1] == {"id": str(expected[1]), "name": f"name {expected[1]}, the {expected[1]}th"}
    bad = _records(tmp_path / errors)
    assert [int(r["line"]) for r in bad] == [i + 2 for i in range(ROWS) if _invalid(i)]
    # The shards' parts were merged as they were: the file is several frames one after another.
    codec = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd"}[Path(output).suffix]
    length, _ = first_frame(tmp_path / output, codec)
    assert 0 < length < (tmp_path / output).stat().st_size


@pytest.mark.parametrize(("output", "errors"), CASES)
def test_zero_valid_rows_is_a_valid_compressed_file(
    tmp_path: Path, output: str, errors: str
) -> None:
    source = tmp_path / "in.csv"
    _write_input(source, rows=40, every_invalid=True)
    manager = _run(source, tmp_path / output, tmp_path / errors)
    assert manager.error is None, manager.error
    text = _text(tmp_path / output)
    if ".csv" in Path(output).suffixes:
        assert list(csv.reader(io.StringIO(text))) == [["id", "name"]]
    else:
        assert text == ""
    assert len(_records(tmp_path / errors)) == 40


def test_a_failed_run_leaves_the_previous_compressed_outputs_as_they_were(tmp_path: Path) -> None:
    """A second run over a truncated .gz input fails: the outputs and error records of the
    first run stay byte for byte, and the input is not touched."""
    source = tmp_path / "in.csv"
    _write_input(source)
    output, errors = tmp_path / "out.csv.gz", tmp_path / "errors.jsonl.gz"
    assert _run(source, output, errors).error is None
    before = output.read_bytes(), errors.read_bytes()
    broken = tmp_path / "broken.csv.gz"
    whole = gzip.compress(source.read_bytes())
    broken.write_bytes(whole[: len(whole) // 2])
    manager = _run(broken, output, errors)
    assert manager.error is not None
    assert "broken.csv.gz" in str(manager.error)
    assert (output.read_bytes(), errors.read_bytes()) == before
    assert broken.read_bytes() == whole[: len(whole) // 2]


def test_unmerged_shards_are_numbered_compressed_files(tmp_path: Path) -> None:
    """``merge=False``: each shard's output is a whole compressed file of its own,
    ``out.part-NNNNN.csv.gz``, with its header; together they hold every record once."""
    source = tmp_path / "in.csv"
    _write_input(source)
    manager = _run(source, tmp_path / "out.csv.gz", tmp_path / "errors.jsonl.zst", merge=False)
    assert manager.error is None, manager.error
    parts = sorted(tmp_path.glob("out.part-*.csv.gz"))
    assert [p.name for p in parts] == [f"out.part-{i:05d}.csv.gz" for i in range(SHARDS)]
    ids = [int(r["id"]) for part in parts for r in _records(part)]
    assert ids == [i for i in range(ROWS) if not _invalid(i)]
    assert not (tmp_path / "out.csv.gz").exists()
    error_parts = sorted(tmp_path.glob("errors.part-*.jsonl.zst"))
    assert sum(len(_records(p)) for p in error_parts) == sum(map(_invalid, range(ROWS)))
