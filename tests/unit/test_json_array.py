"""A ``.json`` array input: streamed element by element; broken files are clear errors."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path
from unittest import mock

import pytest
from _support import User, read_jsonl

from zoopipe_hpc import JSONInputAdapter, JSONOutputAdapter, Pipe, PipeManager
from zoopipe_hpc.adapters import _json_array
from zoopipe_hpc.adapters._json_array import count_elements, read_elements
from zoopipe_hpc.errors import InputError


def _write(tmp_path: Path, data: bytes | str) -> Path:
    path = tmp_path / "in.json"
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def _values(path: Path, chunk: int | None = None) -> list[object]:
    return [e.value for e in read_elements(path, str(path), chunk_bytes=chunk)]


PRETTY = (
    "[\n"
    '  {"id": 1, "name": "a", "score": 1.5},\n'
    '  {"id": 2, "name": "b\\n[,]", "score": 2},\n'
    '  {"id": 3, "name": "c", "score": tru},\n'
    '  {"id": 4, "name": "d", "score": 4}\n'
    "]\n"
)


@pytest.mark.parametrize("chunk", [1, 4, 1 << 20])
def test_a_syntax_error_names_the_file_and_the_line_it_is_on(tmp_path: Path, chunk: int):
    path = _write(tmp_path, PRETTY)
    with pytest.raises(InputError, match=r"in\.json:4: not valid JSON: Expecting value") as info:
        _values(path, chunk)
    assert info.value.line == 4 and info.value.path == str(path)
    # The exception travels between processes (a worker's failure reaches the coordinator).
    again = pickle.loads(pickle.dumps(info.value))
    assert str(again) == str(info.value) and again.line == 4


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", r"in\.json:1: a \.json input must hold an array of objects"),
        (b'  {"id": 1}', r"in\.json:1: a \.json input must hold an array of objects"),
        (b'[{"id": 1}] x', r"in\.json:1: not valid JSON: extra data after the array"),
        (b'[{"id": 1}]\n\n[]', r"in\.json:3: not valid JSON: extra data after the array"),
        (b'[{"id": 1},\n{"id"', r"in\.json:2: not valid JSON: Expecting ':' delimiter"),
        (b'[{"id": 1},\n {"id": "x', r"in\.json:2: not valid JSON: Unterminated string"),
        (b"[1,\n]", r"in\.json:2: not valid JSON: Expecting value"),
        (b"[1 2]", r"in\.json:1: not valid JSON: expected ',' or '\]' after element 0"),
        (b"[1,2", r"expected ',' or '\]' after element 1, found the end of the file"),
        (b'[{"a": "\xff"}]', r"in\.json:1: not valid UTF-8 at byte 8"),
        ('[{"a": 1}]'.encode("utf-16-le"), r"must be UTF-8, not utf-16-le"),
    ],
)
@pytest.mark.parametrize("chunk", [1, 1 << 20])
def test_broken_arrays_are_clear_errors(tmp_path: Path, content: bytes, message: str, chunk: int):
    path = _write(tmp_path, content)
    with pytest.raises(InputError, match=message):
        _values(path, chunk)


def test_an_element_larger_than_the_limit_is_an_error_not_a_memory_blowup(tmp_path: Path):
    path = _write(tmp_path, '[{"id": 1}, {"name": "' + "x" * 5000)
    with mock.patch.object(_json_array, "MAX_ELEMENT_CHARS", 1000):
        with pytest.raises(InputError, match=r"in\.json:1: an array element longer than"):
            _values(path, chunk=64)


def test_empty_arrays_bom_and_whitespace(tmp_path: Path):
    assert _values(_write(tmp_path, " [ ] \n")) == []
    assert _values(_write(tmp_path, b'\xef\xbb\xbf[{"a": 1}]')) == [{"a": 1}]
    assert _values(_write(tmp_path, '\r\n[1e3,-0.5e-2 , "]"\t]\r\n'), chunk=1) == [1e3, -0.005, "]"]
    path = _write(tmp_path, "[]")
    assert count_elements(path, str(path)) == 0
    assert [s.record_range for s in JSONInputAdapter(path).split(3)] == [(0, 0)] * 3


def test_elements_that_are_not_objects_are_error_records_with_line_and_index(tmp_path: Path):
    path = _write(
        tmp_path,
        '[\n{"id": 1, "name": "a", "score": 1},\n[1, 2],\n"text",\n'
        '{"id": 2, "name": "b", "score": "x"},\n{"id": 3, "name": "c", "score": 3}\n]',
    )
    out, err = tmp_path / "out.jsonl", tmp_path / "err.jsonl"
    report = Pipe(
        JSONInputAdapter(path), JSONOutputAdapter(out), User, JSONOutputAdapter(err)
    ).run()
    assert [r["id"] for r in read_jsonl(out)] == [1, 3]
    errors = read_jsonl(err)
    assert [(e["line"], e["errors"][0]["type"], e["errors"][0]["loc"]) for e in errors] == [
        (3, "json_not_object", [1]),
        (4, "json_not_object", [2]),
        (5, "float_parsing", ["score"]),
    ]
    assert report.total_processed == 5 and report.error_count == 3


def test_a_broken_array_fails_the_pipe_and_leaves_the_previous_output(tmp_path: Path):
    path = _write(tmp_path, PRETTY)
    target = tmp_path / "out.jsonl"
    target.write_text('{"old": true}\n')
    with pytest.raises(InputError, match=r"in\.json:4"):
        Pipe(JSONInputAdapter(path, batch_size=1), JSONOutputAdapter(target), User).run()
    assert target.read_text() == '{"old": true}\n'


def test_shards_seek_to_their_first_element_and_say_where_it_is(tmp_path: Path):
    items = [{"id": i, "name": f"n{i}\n", "score": i} for i in range(10)]
    path = _write(tmp_path, json.dumps(items, indent=2))
    shards = JSONInputAdapter(path).split(3)
    assert [s.record_range for s in shards] == [(0, 3), (3, 6), (6, 10)]  # type: ignore[attr-defined]
    text = path.read_bytes()
    for shard in shards:
        r = shard.byte_range  # type: ignore[attr-defined]
        first = items[shard.record_range[0]]  # type: ignore[attr-defined]
        assert json.JSONDecoder().raw_decode(text[r.start :].decode())[0] == first
        assert r.line == text[: r.start].count(b"\n") + 1
        assert f"bytes {r.start}-{r.end}" in shard.describe()
    assert shards[-1].byte_range.end == len(text)  # type: ignore[attr-defined]
    # A record_range without a position (made by hand) still works: it skips to its start.
    assert [
        r["id"] for b in JSONInputAdapter(path, record_range=(4, 6)).batches() for r in b.records
    ] == [4, 5]
    out = tmp_path / "out.jsonl"
    assert PipeManager.parallelize_pipe(
        Pipe(JSONInputAdapter(path), JSONOutputAdapter(out), User), workers=3
    ).run(timeout=60)
    assert [r["id"] for r in read_jsonl(out)] == list(range(10))


_PEAK_RSS = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from pydantic import BaseModel
    from zoopipe_hpc import JSONInputAdapter, JSONOutputAdapter, Pipe

    class Row(BaseModel):
        id: int
        text: str

    source, target = Path(sys.argv[1]), Path(sys.argv[2])
    report = Pipe(JSONInputAdapter(source, batch_size=500), JSONOutputAdapter(target), Row).run()
    # VmHWM, not ru_maxrss: the latter keeps the high-water mark of the forking parent
    status = Path("/proc/self/status").read_text().splitlines()
    peak = next(int(x.split()[1]) for x in status if x.startswith("VmHWM:"))
    print(report.total_processed, peak)
    """
)


def test_memory_does_not_grow_with_the_size_of_the_array(tmp_path: Path):
    """A 12 MB and a 96 MB array: the peak RSS of the worker is about the same."""
    peaks = []
    for count in (6_000, 48_000):
        path = tmp_path / f"in-{count}.json"
        with open(path, "w", encoding="utf-8") as f:
            f.write("[\n")
            for i in range(count):
                f.write(("," if i else "") + json.dumps({"id": i, "text": "é" * 1000}) + "\n")
            f.write("]\n")
        done = subprocess.run(
            [sys.executable, "-c", _PEAK_RSS, str(path), str(tmp_path / "out.jsonl")],
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        )
        processed, peak_kib = map(int, done.stdout.split())
        assert processed == count
        peaks.append(peak_kib / 1024)
    grown = peaks[1] - peaks[0]
    input_grown = (48_000 - 6_000) * 2000 / 2**20  # MiB more input (2 bytes per "é")
    assert grown < input_grown / 8, f"peak RSS {peaks[0]:.0f} -> {peaks[1]:.0f} MiB"
