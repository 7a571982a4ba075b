"""The columnar fast path's output side: JSON text built column by column, and the JSON Lines
sink that writes it as ready-made bytes among rows that pydantic validated."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pyarrow as pa
import pydantic_core
import pytest
from pydantic import BaseModel

from zoopipe_hpc import CSVInputAdapter, JSONOutputAdapter, Pipe
from zoopipe_hpc.adapters._csv_lines import LineLocator
from zoopipe_hpc.adapters.base import _jsonl_items
from zoopipe_hpc.commit._staging import StagingArea
from zoopipe_hpc.validation._arrow import (
    _json_column,
    _json_float,
    _json_string,
    joined_lines,
    json_rows,
    to_json,
)


def pydantic_text(values: list[object]) -> list[str]:
    return [pydantic_core.to_json(v, inf_nan_mode="constants").decode() for v in values]


FLOATS = [
    1e-7,
    1.5e-7,
    1e-6,  # pyarrow: 0.000001, pydantic-core: 1e-6
    1.5e-6,
    9.99e-6,
    1e-5,
    1.2345e-5,
    0.00012,
    80.878,
    1.0,
    95.0,
    0.0,
    -0.0,
    -2.5,
    1e9,
    1e10,
    12345678901.5,
    1e15,
    1e16,
    123456789012345.6,
    0.012345678901234567,
    5e-324,
    1.7976931348623157e308,
    float("inf"),
    float("-inf"),
    float("nan"),
    None,
]


@pytest.mark.parametrize(
    "values",
    [
        FLOATS,
        [v for v in FLOATS if v is not None and v == v and 1e-5 <= abs(v) < 1e9],
        [2.5, 3.0, None, -0.0, 80.878, 0.0],
        [0.000001, 0.0000099, 2.5],
        [None, None],
    ],
)
def test_float_text_is_pydantic_s(values: list[float | None]) -> None:
    column = pa.array(values, pa.float64())
    assert _json_float(column).to_pylist() == pydantic_text(values)
    # A slice reads only its own part of the buffers.
    if len(values) > 2:
        assert _json_float(column.slice(1)).to_pylist() == pydantic_text(values[1:])


@pytest.mark.parametrize(
    "values",
    [
        ["plain", "été", ""],
        ['a "quoted" word', "back\\slash", 'both \\"'],
        ["x", None, 'q"'],
    ],
)
def test_string_text_is_pydantic_s(values: list[str | None]) -> None:
    text = _json_string(pa.array(values, pa.string()))
    assert text is not None
    if isinstance(text, pa.Array):
        assert text.to_pylist() == pydantic_text(values)
    else:  # no nulls: the quotes are added by json_rows
        assert ['"' + t + '"' for t in text.text.to_pylist()] == pydantic_text(values)


def test_control_characters_are_left_to_pydantic() -> None:
    assert _json_string(pa.array(["ok", "tab\there"])) is None
    # Only the values count: a control character elsewhere in the buffer does not.
    sliced = pa.array(["a\nb", "fine", 'q"']).slice(1)
    text = _json_string(sliced)
    assert text is not None and not isinstance(text, pa.Array)
    assert text.text.to_pylist() == ["fine", 'q\\"']


def test_json_rows_are_pydantic_s_and_joined_lines_are_bytes() -> None:
    table = pa.table(
        {
            "id": pa.array([1, None, -3], pa.int64()),
            "name": pa.array(['a"b', "é", "c\\d"]),
            "score": pa.array([0.5, 1e-6, None], pa.float64()),
            "ok": pa.array([True, None, False]),
        }
    )
    lines = json_rows(table, "\n")
    assert lines is not None
    expected = [to_json(row) + "\n" for row in table.to_pylist()]
    assert lines.to_pylist() == expected
    view = joined_lines(lines, 1, 3)
    assert isinstance(view, memoryview)
    assert bytes(view) == "".join(expected[1:3]).encode()
    assert bytes(joined_lines(lines, 2, 2)) == b""
    assert bytes(joined_lines(lines.slice(1), 0, 2)) == "".join(expected[1:3]).encode()


def test_jsonl_items_put_pydantic_rows_in_place() -> None:
    fast = pa.array([f"f{i}\n" for i in range(5)])
    rows = [{"slow": 0}, {"slow": 1}, {"slow": 2}]
    # Output: slow0, f0, f1, slow1, f2, f3, f4, slow2
    order = pa.array([5, 0, 1, 6, 2, 3, 4, 7], pa.uint64())
    items = _jsonl_items(fast, rows, order)
    flat = [bytes(i).decode() if isinstance(i, memoryview) else i for i in items]
    assert flat == [rows[0], "f0\nf1\n", rows[1], "f2\nf3\nf4\n", rows[2]]
    # No order: the fast rows, then the others.
    items = _jsonl_items(fast, rows[:1], None)
    assert [bytes(i) if isinstance(i, memoryview) else i for i in items] == [
        b"f0\nf1\nf2\nf3\nf4\n",
        rows[0],
    ]
    assert _jsonl_items(pa.array([], pa.string()), [], None) == []
    assert _jsonl_items(pa.array([], pa.string()), rows, None) == rows


def _sole_part(target: Path) -> JSONOutputAdapter:
    """The only part of ``target``, in a staging folder of its own (what a run writes)."""
    staging = StagingArea(target)
    staging.create()
    part = JSONOutputAdapter(target).as_part(staging, 0, sole=True)
    assert isinstance(part, JSONOutputAdapter)
    return part


def test_jsonl_sink_writes_fast_bytes_and_rows_in_order(tmp_path: Path) -> None:
    writer = _sole_part(tmp_path / "out.jsonl").open(None)
    table = pa.table({"id": pa.array([1, 2, 3], pa.int64()), "name": ["a", "b", 'c"']})
    rows = [{"id": 10, "name": "x"}, {"id": 20, "name": "é"}]
    writer.write_table(table, rows, pa.array([3, 0, 1, 4, 2], pa.uint64()))
    writer.write([{"id": 30, "name": "tail"}])
    target = writer.commit()
    assert [json.loads(line) for line in target.read_text("utf-8").splitlines()] == [
        {"id": 10, "name": "x"},
        {"id": 1, "name": "a"},
        {"id": 2, "name": "b"},
        {"id": 20, "name": "é"},
        {"id": 3, "name": 'c"'},
        {"id": 30, "name": "tail"},
    ]


def test_json_array_output_takes_the_row_path(tmp_path: Path) -> None:
    writer = _sole_part(tmp_path / "out.json").open(None)
    table = pa.table({"id": pa.array([1, 2], pa.int64())})
    writer.write_table(table, [{"id": 5}], pa.array([0, 2, 1], pa.uint64()))
    target = writer.commit()
    assert json.loads(target.read_text("utf-8")) == [{"id": 1}, {"id": 5}, {"id": 2}]


class Row(BaseModel):
    id: int
    name: str
    score: float


def _dirty_csv(path: Path, rows: int, every: int) -> int:
    lines = ["id,name,score"]
    bad = 0
    for i in range(rows):
        ident = f"x{i}" if i % every == 3 else str(i)
        bad += i % every == 3
        name = f'"Doe, {i}"' if i % 7 == 0 else f"n{i}"
        lines.append(f"{ident},{name},{i / 8}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return bad


def test_mixed_fast_and_pydantic_rows_write_what_the_row_path_writes(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    lines = ["id,name,score"]
    for i in range(300):
        # " 7" and "+8" are valid for pydantic but not vouched for: they go row by row.
        ident = {0: f" {i}", 1: f"+{i}", 2: f"x{i}"}.get(i % 9, str(i))
        lines.append(f'{ident},"n, {i}",{i / 4}')
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    outputs = {}
    for columnar in (True, False):
        out = tmp_path / f"out-{columnar}.jsonl"
        errors = tmp_path / f"errors-{columnar}.jsonl"
        report = Pipe(
            CSVInputAdapter(source, block_size=1 << 10),
            JSONOutputAdapter(out),
            Row,
            JSONOutputAdapter(errors),
            columnar=columnar,
        ).run()
        outputs[columnar] = (out.read_bytes(), errors.read_bytes(), report.error_count)
    assert outputs[True] == outputs[False]
    assert outputs[True][2] == 34  # the "x..." ids


def test_without_error_output_only_logged_records_are_located(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    source = tmp_path / "in.csv"
    bad = _dirty_csv(source, 2000, 10)
    calls: list[int] = []
    original = LineLocator.line_of

    def counting(self: LineLocator, row: int) -> int:
        calls.append(row)
        return original(self, row)

    monkeypatch.setattr(LineLocator, "line_of", counting)
    with caplog.at_level(logging.WARNING, logger="zoopipe_hpc.pipe"):
        report = Pipe(
            CSVInputAdapter(source, block_size=1 << 12),
            JSONOutputAdapter(tmp_path / "o.jsonl"),
            Row,
        ).run()
    assert report.error_count == bad == 200
    assert len(calls) == 20  # the records that are logged
    logged = [r.getMessage() for r in caplog.records if "invalid record" in r.getMessage()]
    assert len(logged) == 20
    assert f"{source}:5 " in logged[0]  # row 3 is line 5 (after the header)
    # With an error output, every invalid record gets its line.
    calls.clear()
    errors = tmp_path / "errors.jsonl"
    Pipe(
        CSVInputAdapter(source, block_size=1 << 12),
        JSONOutputAdapter(tmp_path / "o2.jsonl"),
        Row,
        JSONOutputAdapter(errors),
    ).run()
    assert len(calls) == 200
    got = [json.loads(line)["line"] for line in errors.read_text("utf-8").splitlines()]
    assert got == [i + 2 for i in range(2000) if i % 10 == 3]


@pytest.mark.parametrize("zone", ["UTC", "+00:00", "+05:30", "-11:45", "+23:59"])
def test_zoned_timestamps_json_as_pydantic_writes_them(zone: str) -> None:
    texts = [
        "2020-01-01T12:00:00Z",
        "2020-01-01T12:00:00.5Z",
        "2020-02-29T23:59:59.000001Z",
        "1000-01-01T23:00:00Z",
        "0999-12-31T23:00:00Z",  # a local year below 1000 in some zones: pydantic's own text
        None,
    ]
    column = pa.array(texts).cast(pa.timestamp("us", tz="UTC")).cast(pa.timestamp("us", tz=zone))
    expected = [pydantic_core.to_json(v).decode() for v in column.to_pylist()]
    assert _json_column(column).to_pylist() == expected  # type: ignore[union-attr]
