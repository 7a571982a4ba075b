from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _support import User, read_jsonl
from pydantic import BaseModel

from zoopipe_hpc import (
    CSVInputAdapter,
    CSVOutputAdapter,
    JSONInputAdapter,
    JSONOutputAdapter,
    ParquetInputAdapter,
    Pipe,
)
from zoopipe_hpc.errors import ConfigurationError, InputError


def records(adapter) -> list[dict]:
    return [r for batch in adapter.batches() for r in batch.records]


def test_csv_reads_every_value_as_text_with_quotes_newlines_and_crlf(tmp_path: Path):
    path = tmp_path / "in.csv"
    path.write_bytes(b'id,name\r\n1,"a, ""b""\r\nc"\r\n2,\xc3\xa9t\xc3\xa9\r\n3,')
    assert records(CSVInputAdapter(path)) == [
        {"id": "1", "name": 'a, "b"\r\nc'},
        {"id": "2", "name": "été"},
        {"id": "3", "name": ""},
    ]


@pytest.mark.parametrize("content", [b"", b"id,name\n", b"id,name"])
def test_csv_empty_and_header_only_files_have_no_records(tmp_path: Path, content: bytes):
    path = tmp_path / "in.csv"
    path.write_bytes(content)
    assert records(CSVInputAdapter(path)) == []
    for workers in (1, 3):
        assert [records(s) for s in CSVInputAdapter(path).split(workers)] == [[]] * workers


def test_csv_split_keeps_every_record_once_in_order(tmp_path: Path):
    path = tmp_path / "in.csv"
    rows = [f'{i},"x\n{i}, ""q"""' for i in range(200)]
    path.write_text("id,name\n" + "\n".join(rows) + "\n")
    whole = records(CSVInputAdapter(path))
    for workers in range(1, 9):
        shards = CSVInputAdapter(path).split(workers)
        assert len(shards) == workers
        assert [r for s in shards for r in records(s)] == whole


def test_csv_wrong_field_count_becomes_an_error_record_naming_file_and_line(tmp_path: Path):
    path = tmp_path / "in.csv"
    path.write_text('id,name,score\n1,"two\nlines",1.5\n2,b\n3,c,2.5\n')
    out, err = tmp_path / "out.jsonl", tmp_path / "err.jsonl"
    report = Pipe(
        CSVInputAdapter(path),
        JSONOutputAdapter(out),
        User,
        error_output_adapter=JSONOutputAdapter(err),
    ).run()
    assert (report.total_processed, report.success_count, report.error_count) == (3, 2, 1)
    [bad] = read_jsonl(err)
    assert bad["source"] == str(path) and bad["line"] == 4
    assert bad["record"] == {"__raw__": "2,b"}
    assert "expected 3 fields, got 2" in bad["errors"][0]["msg"]


def test_validation_errors_name_the_line_and_the_field(tmp_path: Path):
    path = tmp_path / "in.csv"
    path.write_text('id,name,score\n1,"a\nb",1\nx,b,2\n')
    err = tmp_path / "err.jsonl"
    Pipe(
        CSVInputAdapter(path),
        JSONOutputAdapter(tmp_path / "o.jsonl"),
        User,
        error_output_adapter=JSONOutputAdapter(err),
    ).run()
    [bad] = read_jsonl(err)
    assert bad["line"] == 4
    assert bad["errors"][0]["loc"] == ["id"]
    assert bad["record"] == {"id": "x", "name": "b", "score": "2"}


def test_jsonl_bad_line_and_non_object_are_error_records(tmp_path: Path):
    path = tmp_path / "in.jsonl"
    path.write_text(
        '{"id": 1, "name": "a", "score": 1}\n\n{not json\n[1,2]\n{"id": 2, "name": "b", "score": 2}'
    )
    out, err = tmp_path / "out.jsonl", tmp_path / "err.jsonl"
    report = Pipe(
        JSONInputAdapter(path),
        JSONOutputAdapter(out),
        User,
        error_output_adapter=JSONOutputAdapter(err),
    ).run()
    assert (report.total_processed, report.error_count) == (4, 2)
    assert [r["id"] for r in read_jsonl(out)] == [1, 2]
    bad = read_jsonl(err)
    assert [b["line"] for b in bad] == [3, 4]
    assert bad[0]["errors"][0]["type"] == "json_invalid"


def test_jsonl_split_at_line_ends(tmp_path: Path):
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"id": i, "s": "é\\n漢"}) + "\n" for i in range(100)))
    whole = records(JSONInputAdapter(path))
    for workers in range(1, 9):
        assert [r for s in JSONInputAdapter(path).split(workers) for r in records(s)] == whole


def test_json_array_input_and_output(tmp_path: Path):
    src = tmp_path / "in.json"
    src.write_text(json.dumps([{"id": i, "name": f"n{i}", "score": i} for i in range(5)]))
    out = tmp_path / "out.json"
    Pipe(JSONInputAdapter(src), JSONOutputAdapter(out), User).run()
    assert [r["id"] for r in json.loads(out.read_text())] == list(range(5))
    forced = tmp_path / "forced.json"
    Pipe(JSONInputAdapter(src), JSONOutputAdapter(forced, format="jsonl"), User).run()
    assert len(read_jsonl(forced)) == 5
    with pytest.raises(ConfigurationError):
        JSONOutputAdapter(tmp_path / "x.json", format="yaml")


def test_parquet_split_by_row_groups(tmp_path: Path):
    path = tmp_path / "in.parquet"
    table = pa.table({"id": list(range(100)), "name": [f"n{i}" for i in range(100)]})
    pq.write_table(table, path, row_group_size=10)
    whole = records(ParquetInputAdapter(path))
    assert len(whole) == 100
    for workers in (1, 3, 10, 12):
        shards = ParquetInputAdapter(path).split(workers)
        assert [r for s in shards for r in records(s)] == whole


def test_missing_file_names_the_file(tmp_path: Path):
    for adapter in (
        CSVInputAdapter(tmp_path / "nope.csv"),
        JSONInputAdapter(tmp_path / "nope.jsonl"),
        ParquetInputAdapter(tmp_path / "nope.parquet"),
    ):
        with pytest.raises(InputError, match="nope"):
            adapter.check()


def test_truncated_parquet_is_a_clear_error_and_previous_output_survives(tmp_path: Path):
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": list(range(1000))}), path)
    path.write_bytes(path.read_bytes()[:-100])
    target = tmp_path / "out.csv"
    target.write_text("old\n")
    with pytest.raises(InputError, match=r"in\.parquet.*(truncated|corrupt)"):
        Pipe(ParquetInputAdapter(path), CSVOutputAdapter(target)).run()
    assert target.read_text() == "old\n"


def test_csv_output_round_trips_through_csv_input(tmp_path: Path):
    path = tmp_path / "in.csv"
    path.write_text('id,name,score\n1,"a,b\nc",2.5\n')
    out = tmp_path / "out.csv"
    Pipe(CSVInputAdapter(path), CSVOutputAdapter(out), User).run()
    assert records(CSVInputAdapter(out)) == [{"id": "1", "name": "a,b\nc", "score": "2.5"}]


def test_malformed_rows_keep_their_lines_past_the_first_block(tmp_path: Path):
    class M(BaseModel):
        id: int

    lines = ["id,name"] + [f"{i},{'n' * 60}" for i in range(30000)]
    lines[20001] = "x,bad-id"  # file line 20002: invalid
    lines[20011] = "oops"  # file line 20012: malformed
    path = tmp_path / "in.csv"
    path.write_text("\n".join(lines) + "\n")
    err = tmp_path / "err.jsonl"
    Pipe(
        CSVInputAdapter(path),
        JSONOutputAdapter(tmp_path / "ok.jsonl"),
        M,
        error_output_adapter=JSONOutputAdapter(err),
    ).run()
    assert [(e["line"], e["errors"][0]["type"]) for e in read_jsonl(err)] == [
        (20002, "int_parsing"),
        (20012, "csv_field_count"),
    ]


def test_blank_lines_and_multiline_headers_keep_line_numbers(tmp_path: Path):
    path = tmp_path / "in.csv"
    path.write_bytes(b"id,name\n1,a\n\n2,b\n")
    assert [b.locate(i) for b in CSVInputAdapter(path).batches() for i in range(len(b))] == [2, 4]
    path.write_bytes(b'"i\nd",x\n1,a\n')
    assert [b.locate(0) for b in CSVInputAdapter(path).batches()] == [3]


def test_stray_quotes_do_not_break_a_split(tmp_path: Path):
    path = tmp_path / "in.csv"
    path.write_bytes(b'id,name\n1,5"\n2,x\n3,"a\nb"\n4,y\n5,z\n')
    whole = records(CSVInputAdapter(path))
    assert whole[2] == {"id": "3", "name": "a\nb"}
    for workers in range(1, 9):
        assert [r for s in CSVInputAdapter(path).split(workers) for r in records(s)] == whole


def test_lone_cr_line_ends_are_a_clear_error_not_an_empty_input(tmp_path: Path):
    path = tmp_path / "in.csv"
    path.write_bytes(b"id,name\r1,a\r2,b\r")
    with pytest.raises(InputError, match="lone CR"):
        records(CSVInputAdapter(path))


def test_an_empty_parquet_shard_splits_into_empty_shards(tmp_path: Path):
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": list(range(4))}), path, row_group_size=2)
    empty = ParquetInputAdapter(path).split(3)[2]
    assert [records(s) for s in empty.split(2)] == [[], []]


def test_a_cut_on_a_record_start_keeps_shards_balanced(tmp_path: Path):
    path = tmp_path / "in.csv"
    path.write_text("id\n0\n1\n2\n3\n")
    assert [len(records(s)) for s in CSVInputAdapter(path).split(4)] == [1, 1, 1, 1]
    path.write_text('id,x\n0,"a\nb"\n1,c\n2,d\n3,e\n')
    assert [len(records(s)) for s in CSVInputAdapter(path).split(4)] == [1, 1, 1, 1]


# -- line numbers of CSV records (LineLocator) ----------------------------------------------------


def _reference_lines(
    data: bytes, first_line: int, delimiter: str = ",", quote: str = '"'
) -> tuple[list[int], int]:
    """(start line of each record, the line after the last) as the csv module reads ``data``."""
    import csv as pycsv
    import io

    reader = pycsv.reader(
        io.StringIO(data.decode("utf-8"), newline=""), delimiter=delimiter, quotechar=quote
    )
    starts = []
    while True:
        before = reader.line_num
        try:
            fields = next(reader)
        except StopIteration:
            return starts, first_line + reader.line_num
        if fields:
            starts.append(first_line + before)


def _locator(path: Path, data: bytes, first_line: int = 2, delimiter: str = ",", quote: str = '"'):
    from zoopipe_hpc.adapters._csv_lines import LineLocator
    from zoopipe_hpc.adapters._split import ByteRange

    path.write_bytes(data)
    return LineLocator(path, ByteRange(0, len(data), first_line), delimiter, quote)


@pytest.mark.parametrize("chunk", [1, 3, 16, 1 << 20])
@pytest.mark.parametrize(
    ("data", "lines"),
    [
        # No quotes at all: one record a line.
        (b"1,a\n2,b\n3,c\n", [2, 3, 4]),
        # Quoted fields without line ends, and a stray quote (not at a field start).
        (b'1,"a, b"\n2,5"\n3,"c"\n', [2, 3, 4]),
        # Quoted fields holding LF, CR LF and a doubled quote before the line end.
        (b'1,"a\nb"\n2,"x""\r\ny"\n3,c\n', [2, 4, 6]),
        # CR LF line ends, an empty line and a CR LF empty line (not records).
        (b"1,a\r\n\r\n2,b\r\n\n3,c\r\n", [2, 4, 6]),
        # A lone CR ends a line too; the last line has no line end.
        (b"1,a\r2,b\n3,c", [2, 3, 4]),
        # A quoted field left open runs to the end of the range.
        (b'1,a\n2,"b\nc\n', [2, 3]),
        # Empty lines first, and a record that is only a quoted empty string.
        (b'\n\n""\n1,a\n', [4, 5]),
    ],
)
def test_line_locator_finds_where_each_record_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int, data: bytes, lines: list[int]
):
    from zoopipe_hpc.adapters import _csv_lines

    monkeypatch.setattr(_csv_lines, "LOCATOR_CHUNK", chunk)
    starts, after = _reference_lines(data, 2)
    assert starts == lines, "the test's own expectation disagrees with the csv module"
    locator = _locator(tmp_path / "in.csv", data)
    assert [locator.line_of(k) for k in range(len(lines))] == lines
    assert locator.line_of(len(lines) + 3) == after
    # Backwards (a malformed row reported ahead of an invalid one) and forwards again.
    assert [locator.line_of(k) for k in reversed(range(len(lines)))] == lines[::-1]
    assert locator.line_of(len(lines) - 1) == lines[-1]
    locator.close()


@pytest.mark.parametrize(("delimiter", "quote"), [(",", '"'), ("\t", "'"), ("|", "^")])
def test_line_locator_agrees_with_the_csv_module_on_random_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, delimiter: str, quote: str
):
    import random

    from zoopipe_hpc.adapters import _csv_lines

    pieces = ["a", "bc", ",", ",", '"', '""', '"x\ny"', '"p\r\nq"', "\n", "\r\n", "\r", " ", 'z"w']
    pieces = [p.replace(",", delimiter).replace('"', quote) for p in pieces]
    weights = [5, 5, 4, 4, 1, 1, 1, 1, 6, 3, 1, 1, 1]
    rng = random.Random(20240611)
    for trial in range(400):
        text = "".join(rng.choices(pieces, weights=weights, k=rng.randint(0, 50)))
        if text.count(quote) % 2 and trial % 2:
            text += quote
        data = text.encode()
        monkeypatch.setattr(_csv_lines, "LOCATOR_CHUNK", rng.choice([1, 4, 32, 1 << 20]))
        starts, after = _reference_lines(data, 7, delimiter, quote)
        locator = _locator(tmp_path / "in.csv", data, 7, delimiter, quote)
        rows = list(range(len(starts) + 2))
        if trial % 3 == 0:
            rng.shuffle(rows)
        for row in rows:
            expected = starts[row] if row < len(starts) else after
            assert locator.line_of(row) == expected, (data, row)
        locator.close()


def test_invalid_rows_of_a_quoted_multiline_crlf_csv_get_their_lines(tmp_path: Path):
    path = tmp_path / "in.csv"
    body = [b"id,name,score\r\n"]
    expected = []
    line = 2
    for i in range(3000):
        if i % 11 == 0:
            name = b'"two\r\nlines, ""q"""'
            height = 2
        elif i % 5 == 0:
            name = b'"a, b"'
            height = 1
        else:
            name = b"plain"
            height = 1
        ident = b"x%d" % i if i % 97 == 5 else b"%d" % i
        if i % 97 == 5:
            expected.append(line)
        body.append(ident + b"," + name + b",1.5\r\n")
        if i % 400 == 0:
            body.append(b"\r\n")  # an empty line
            line += 1
        line += height
    path.write_bytes(b"".join(body))
    errors = tmp_path / "errors.jsonl"
    Pipe(
        CSVInputAdapter(path, block_size=1 << 12),
        JSONOutputAdapter(tmp_path / "out.jsonl"),
        User,
        JSONOutputAdapter(errors),
    ).run()
    got = [json.loads(x)["line"] for x in errors.read_text("utf-8").splitlines()]
    assert got == expected
