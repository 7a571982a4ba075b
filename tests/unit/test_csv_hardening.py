"""Bad CSV input (issue 11): a clear error naming the file and line, and no row lost.

Each case runs as one pipe and as a sharded run (``parallelize_pipe(pipe, workers=3)``): error
records keep their file and line in both, and ``success_count + error_count ==
total_processed``.
"""

from __future__ import annotations

import codecs
import random
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _support import read_jsonl
from pydantic import BaseModel

from zoopipe_hpc import CSVInputAdapter, JSONOutputAdapter, Pipe, PipeManager
from zoopipe_hpc.adapters import _csv_lines
from zoopipe_hpc.adapters._split import ByteRange
from zoopipe_hpc.errors import InputError

WORKERS = [1, 3]


class Row(BaseModel):
    id: int
    name: str


@dataclass
class Run:
    valid: list[dict[str, Any]]
    errors: list[dict[str, Any]]
    total: int


def _pipe(tmp_path: Path, source: Path, **options: Any) -> tuple[Pipe, Path, Path]:
    out, err = tmp_path / "out.jsonl", tmp_path / "err.jsonl"
    pipe = Pipe(
        CSVInputAdapter(source, **options),
        JSONOutputAdapter(out),
        Row,
        error_output_adapter=JSONOutputAdapter(err),
    )
    return pipe, out, err


def _run(tmp_path: Path, source: Path, workers: int, **options: Any) -> Run:
    pipe, out, err = _pipe(tmp_path, source, **options)
    if workers == 1:
        report = pipe.run()
    else:
        manager = PipeManager.parallelize_pipe(pipe, workers=workers)
        assert manager.run(timeout=60), manager.error
        report = manager.report
    assert report.success_count + report.error_count == report.total_processed
    run = Run(read_jsonl(out), read_jsonl(err), report.total_processed)
    assert (len(run.valid), len(run.errors)) == (report.success_count, report.error_count)
    return run


def _refused(tmp_path: Path, source: Path, workers: int) -> str:
    """The message of the run's failure; nothing may have been written."""
    pipe, out, err = _pipe(tmp_path, source)
    if workers == 1:
        with pytest.raises(InputError) as info:
            pipe.run()
        message = str(info.value)
    else:
        try:
            manager = PipeManager.parallelize_pipe(pipe, workers=workers)
        except InputError as exc:  # refused while the input is split
            message = str(exc)
        else:
            assert not manager.run(timeout=60)
            message = str(manager.error)
    assert not out.exists() and not err.exists()
    return message


def _rows(ids: range) -> list[bytes]:
    return [b"%d,n%d" % (i, i) for i in ids]


def _write(path: Path, lines: list[bytes], end: bytes = b"\n") -> bytes:
    data = end.join(lines) + end
    path.write_bytes(data)
    return data


# -- 1. a header naming a column twice ----------------------------------------------------------


@pytest.mark.parametrize("workers", WORKERS)
def test_a_duplicate_header_is_refused_naming_file_line_and_names(
    tmp_path: Path, workers: int
) -> None:
    source = tmp_path / "in.csv"
    _write(source, [b"id,name,name", b"1,a,b", b"2,c,d"])
    assert _refused(tmp_path, source, workers).startswith(
        f"{source}:1: the header names a column more than once: 'name' (columns 2 and 3)"
    )


# -- 2. invalid UTF-8 in one cell -----------------------------------------------------------------


@pytest.mark.parametrize("workers", WORKERS)
def test_invalid_utf8_in_a_cell_is_an_error_record_and_the_rest_is_read(
    tmp_path: Path, workers: int, capfd: pytest.CaptureFixture[str]
) -> None:
    lines = [b"id,name", *_rows(range(40))]
    lines[11] = b"10,b\xffc"  # line 12: a record with a byte that is not UTF-8
    lines[21] = b"20,x,\xfe"  # line 22: a malformed row holding one (pyarrow cannot report it)
    source = tmp_path / "in.csv"
    data = _write(source, lines)
    ff, fe = data.index(b"\xff"), data.index(b"\xfe")
    run = _run(tmp_path, source, workers, block_size=64)  # many blocks, each one checked
    assert [r["id"] for r in run.valid] == [i for i in range(40) if i not in (10, 20)]
    cell, row = run.errors
    assert (cell["source"], cell["line"]) == (str(source), 12)
    assert cell["record"] == {"id": "10", "name": "b\ufffdc"}
    assert cell["errors"] == [
        {
            "type": "csv_invalid_utf8",
            "loc": ["name"],
            "msg": f"not UTF-8: byte 0xff at byte {ff} of the file (byte 1 of "
            "the value); this reader needs UTF-8",
        }
    ]
    assert (row["source"], row["line"], row["record"]) == (
        str(source),
        22,
        {"__raw__": "20,x,\ufffd"},
    )
    assert [e["type"] for e in row["errors"]] == ["csv_field_count", "csv_invalid_utf8"]
    assert f"byte 0xfe at byte {fe} of the file" in row["errors"][1]["msg"]
    assert "UnicodeDecodeError" not in capfd.readouterr().err


# -- 3. a file that is not UTF-8 ------------------------------------------------------------------

_TEXT = "id,name\n1,a\n2,b\n"


@pytest.mark.parametrize("workers", WORKERS)
@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (_TEXT.encode("utf-16"), "the file is UTF-16 (little-endian) with a byte order mark (BOM)"),
        (codecs.BOM_UTF16_BE + _TEXT.encode("utf-16-be"), "the file is UTF-16 (big-endian) with"),
        (_TEXT.encode("utf-32"), "the file is UTF-32 (little-endian) with a byte order mark"),
        (_TEXT.encode("utf-16-le"), "the header holds NUL bytes (the first at byte 1)"),
        ("id,nàme\n1,a\n".encode("latin-1"), "the header is not UTF-8 (byte 0xe0 at byte 4 of"),
    ],
)
def test_a_file_that_is_not_utf8_is_refused_naming_the_encoding(
    tmp_path: Path, workers: int, data: bytes, problem: str
) -> None:
    source = tmp_path / "in.csv"
    source.write_bytes(data)
    message = _refused(tmp_path, source, workers)
    assert message.startswith(f"{source}:1: {problem}")
    assert "this reader needs UTF-8 unless told the encoding: give encoding=" in message


# -- 4. a record longer than a block ----------------------------------------------------------


@pytest.mark.parametrize("workers", WORKERS)
def test_a_record_longer_than_the_block_is_read_and_keeps_every_line(
    tmp_path: Path, workers: int
) -> None:
    long = b"x" * (3 << 20)  # three blocks of 1 MiB
    lines = [b"id,name", *_rows(range(12))]
    lines[6] = b"5," + long
    lines[9] = b"bad,n8"  # line 10: invalid, after the long record
    lines[11] = b"10,a,b"  # line 12: malformed
    source = tmp_path / "in.csv"
    _write(source, lines)
    run = _run(tmp_path, source, workers)
    assert [r["id"] for r in run.valid] == [0, 1, 2, 3, 4, 5, 6, 7, 9, 11]
    assert run.valid[5]["name"] == long.decode()
    assert [(e["line"], e["errors"][0]["type"]) for e in run.errors] == [
        (10, "int_parsing"),
        (12, "csv_field_count"),
    ]


@pytest.mark.parametrize("workers", WORKERS)
@pytest.mark.parametrize(
    ("record", "message"),
    [
        (
            b"5," + b"x" * (3 << 20),
            "7: a record of 3.0 MiB starts here (bytes {start}-{end}); records longer than 2 MiB "
            "are refused",
        ),
        (
            b'5,"' + b"x\n" * (3 << 19),
            "7: a quoted field opened at line 7 (byte {quote}) is never closed: it runs to the "
            "end of the input (3.0 MiB), more than the 2 MiB a record may hold; is a closing "
            "quote missing?",
        ),
    ],
)
def test_a_record_longer_than_the_limit_is_refused_naming_its_line_and_length(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int, record: bytes, message: str
) -> None:
    monkeypatch.setattr(_csv_lines, "RECORD_LIMIT", 2 << 20)  # workers are forked: they see it
    lines = [b"id,name", *_rows(range(5)), record, *_rows(range(6, 9))]
    source = tmp_path / "in.csv"
    start = _write(source, lines).index(record)
    expected = message.format(start=start, end=start + len(record) + 1, quote=start + 2)
    assert f"{source}:{expected}" in _refused(tmp_path, source, workers)


# -- 5. a quote that is never closed ----------------------------------------------------------


@pytest.mark.parametrize("workers", WORKERS)
@pytest.mark.parametrize("tail", [3, 30_000])  # the rest of the file: a few lines, many blocks
def test_an_unterminated_quote_says_where_it_opened_and_keeps_the_rows_before(
    tmp_path: Path, workers: int, tail: int
) -> None:
    lines = [b"id,name", *_rows(range(6)), b'6,"open', *_rows(range(7, 7 + tail))]
    source = tmp_path / "in.csv"
    quote = _write(source, lines).index(b'"')
    run = _run(tmp_path, source, workers, block_size=1 << 16)
    assert [r["id"] for r in run.valid] == list(range(6))
    [error] = run.errors
    assert (error["source"], error["line"], run.total) == (str(source), 8, 7)
    assert error["record"]["name"].startswith("open\n7,n7\n")
    assert error["errors"] == [
        {
            "type": "csv_unterminated_quote",
            "loc": ["name"],
            "msg": f"the quote opened at line 8 (byte {quote}) is never closed: this "
            f"field takes in the rest of the input (lines 8-{8 + tail}); is a closing quote "
            "missing?",
        }
    ]


def test_a_closed_multiline_last_field_is_not_an_unterminated_quote(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    _write(source, [b"id,name", b"1,a", b'2,"b', b'c"'])
    run = _run(tmp_path, source, 1)
    assert [r["name"] for r in run.valid] == ["a", "b\nc"] and not run.errors


# -- 6. a huge header -----------------------------------------------------------------------------

_PEAK_RSS = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from zoopipe_hpc import CSVInputAdapter, JSONOutputAdapter, Pipe, PipeManager
    from zoopipe_hpc.errors import InputError

    def peak_kib():
        # VmHWM, not ru_maxrss: the latter keeps the high-water mark of the forking parent
        status = Path("/proc/self/status").read_text().splitlines()
        return next(int(x.split()[1]) for x in status if x.startswith("VmHWM:"))

    small, huge, out = map(Path, sys.argv[1:4])
    Pipe(CSVInputAdapter(small), JSONOutputAdapter(out)).run()
    before = peak_kib()
    messages = []
    try:
        Pipe(CSVInputAdapter(huge), JSONOutputAdapter(out)).run()
    except InputError as exc:
        messages.append(str(exc))
    try:
        PipeManager.parallelize_pipe(Pipe(CSVInputAdapter(huge), JSONOutputAdapter(out)), 3)
    except InputError as exc:
        messages.append(str(exc))
    print(before, peak_kib())
    print("\\n".join(messages))
    """
)


def test_a_huge_header_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    """A 64 MiB header line (the reader before this took 10 times that): refused after 4 MiB."""
    small, huge = tmp_path / "small.csv", tmp_path / "huge.csv"
    small.write_bytes(b"id,name\n1,a\n")
    huge.write_bytes(b"c," * (32 << 20) + b"x\n1\n")
    done = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS, str(small), str(huge), str(tmp_path / "o.jsonl")],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    peaks, *messages = done.stdout.splitlines()
    before, after = map(int, peaks.split())
    expected = f"{huge}:1: the header line is longer than 4 MiB (no line end in its first"
    assert len(messages) == 2 and all(m.startswith(expected) for m in messages), messages
    assert (after - before) / 1024 < 24, f"peak RSS {before / 1024:.0f} -> {after / 1024:.0f} MiB"


# -- the line locator's byte offsets ---------------------------------------------------------


def test_the_locator_gives_each_record_its_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pieces = [b"a", b"bc", b",", b'"', b'""', b'"x\ny"', b'"p\r\nq"', b"\n", b"\r\n", b"\xff"]
    rng = random.Random(11)
    path = tmp_path / "in.csv"
    for _ in range(200):
        data = b"".join(rng.choices(pieces, k=rng.randint(0, 40)))
        path.write_bytes(data)
        monkeypatch.setattr(_csv_lines, "LOCATOR_CHUNK", rng.choice([1, 4, 32, 1 << 20]))
        locator = _csv_lines.LineLocator(path, ByteRange(0, len(data), 1), ",", '"')
        starts = [locator.start_of(0)]
        while starts[-1] < len(data):
            starts.append(locator.start_of(len(starts)))
        assert starts[0] == len(data) - len(data.lstrip(b"\r\n")), data
        for k in range(len(starts) - 1):
            between = data[starts[k] : starts[k + 1]]  # the record, then any empty lines
            raw = locator.raw(k)
            assert raw.strip(b"\r\n") and between.startswith(raw), (data, k)
            assert not between[len(raw) :].strip(b"\r\n"), (data, k)
        locator.close()
