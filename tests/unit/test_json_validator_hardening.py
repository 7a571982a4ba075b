"""Issue 11, JSON and validation: input nested too deeply is one error record, a value that
cannot be serialized is an error record naming its field (whatever the output format), and a
validator raising something other than ValueError stops the run naming file, line and field.
Each holds for a single pipe and for a run of three shards."""

from __future__ import annotations

import csv
import json
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from _support import read_jsonl
from pydantic import (
    BaseModel,
    Field,
    ValidationInfo,
    computed_field,
    field_serializer,
    field_validator,
    model_validator,
)

from zoopipe_hpc import (
    CSVInputAdapter,
    CSVOutputAdapter,
    JSONInputAdapter,
    JSONOutputAdapter,
    MultiThreadExecutor,
    ParquetOutputAdapter,
    Pipe,
    PipeManager,
    PipeStatus,
)
from zoopipe_hpc.adapters._json_array import MAX_DEPTH, TOO_DEEP, read_elements, too_deep
from zoopipe_hpc.adapters.base import BaseOutputAdapter
from zoopipe_hpc.errors import InputError, OutputError, ShardFailedError, ValidatorError
from zoopipe_hpc.validation._arrow import to_json_bytes
from zoopipe_hpc.validation._rows import RowValidator

DEEP = 10_000


def _nested(depth: int) -> str:
    """JSON text of arrays nested ``depth`` deep."""
    return "[" * depth + "]" * depth


class Loose(BaseModel):
    id: int
    data: Any = None


def _run(pipe: Pipe, sharded: bool) -> tuple[int, int, int]:
    if sharded:
        manager = PipeManager.parallelize_pipe(pipe, workers=3)
        assert manager.run(timeout=120), manager.error
        report = manager.report
    else:
        report = pipe.run()
    assert report.success_count + report.error_count == report.total_processed
    return report.total_processed, report.success_count, report.error_count


# -- 1. JSON nested too deeply ----------------------------------------------------------------


def _deep_lines(tmp_path: Path, depth: int, count: int = 9, at: int = 4) -> Path:
    lines = [
        json.dumps({"id": i}) if i != at else f'{{"id": {i}, "data": {_nested(depth)}}}'
        for i in range(count)
    ]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _deep_array(tmp_path: Path, depth: int, count: int = 9, at: int = 4) -> Path:
    items = [
        json.dumps({"id": i}) if i != at else f'{{"id": {i},\n "data": {_nested(depth)}}}'
        for i in range(count)
    ]
    path = tmp_path / "in.json"
    path.write_text("[\n" + ",\n".join(items) + "\n]\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("sharded", [False, True], ids=["single", "sharded"])
@pytest.mark.parametrize("depth", [DEEP, 300, MAX_DEPTH])
def test_json_lines_nested_too_deeply_is_one_error_record(
    tmp_path: Path, depth: int, sharded: bool
) -> None:
    source = _deep_lines(tmp_path, depth - 1)  # the record's own object is a level
    pipe = Pipe(
        JSONInputAdapter(source),
        JSONOutputAdapter(tmp_path / "out.jsonl"),
        Loose,
        error_output_adapter=JSONOutputAdapter(tmp_path / "err.jsonl"),
    )
    if depth <= MAX_DEPTH:
        assert _run(pipe, sharded) == (9, 9, 0)
        return
    assert _run(pipe, sharded) == (9, 8, 1)
    assert [r["id"] for r in read_jsonl(tmp_path / "out.jsonl")] == [0, 1, 2, 3, 5, 6, 7, 8]
    (error,) = read_jsonl(tmp_path / "err.jsonl")
    assert (error["source"], error["line"]) == (str(source), 5)
    assert error["errors"] == [{"type": "json_invalid", "loc": [], "msg": TOO_DEEP}]
    assert TOO_DEEP == "JSON nested too deeply: more than 200 levels of arrays and objects"
    assert error["record"]["__raw__"].startswith('{"id": 4, "data": [[[')


@pytest.mark.parametrize("sharded", [False, True], ids=["single", "sharded"])
@pytest.mark.parametrize("depth", [DEEP, 300, MAX_DEPTH])
def test_a_json_array_element_nested_too_deeply_is_one_error_record(
    tmp_path: Path, depth: int, sharded: bool
) -> None:
    source = _deep_array(tmp_path, depth - 1)
    pipe = Pipe(
        JSONInputAdapter(source),
        JSONOutputAdapter(tmp_path / "out.jsonl"),
        Loose,
        error_output_adapter=JSONOutputAdapter(tmp_path / "err.jsonl"),
    )
    if depth <= MAX_DEPTH:
        assert _run(pipe, sharded) == (9, 9, 0)
        return
    assert _run(pipe, sharded) == (9, 8, 1)
    assert [r["id"] for r in read_jsonl(tmp_path / "out.jsonl")] == [0, 1, 2, 3, 5, 6, 7, 8]
    (error,) = read_jsonl(tmp_path / "err.jsonl")
    assert (error["source"], error["line"]) == (str(source), 6)
    assert error["errors"] == [{"type": "json_invalid", "loc": [4], "msg": TOO_DEEP}]
    assert error["record"]["__raw__"].startswith('{"id": 4,\n "data": [[[')


def test_the_array_reader_skips_a_deep_element_cut_by_its_chunks(tmp_path: Path) -> None:
    path = _deep_array(tmp_path, DEEP, count=3, at=1)
    for chunk in (7, 64, 1 << 20):
        elements = list(read_elements(path, str(path), chunk_bytes=chunk))
        assert [e.index for e in elements] == [0, 1, 2]
        assert elements[0].value == {"id": 0} and elements[2].value == {"id": 2}
        assert type(elements[1].value).__name__ == "TooDeep" and elements[1].line == 3


def test_a_deep_element_that_never_ends_is_a_syntax_error(tmp_path: Path) -> None:
    path = tmp_path / "in.json"
    path.write_text('[{"id": 1},\n{"data": ' + "[" * DEEP, encoding="utf-8")
    with pytest.raises(InputError, match=r"in\.json:2: not valid JSON: an element nested more"):
        list(read_elements(path, str(path)))


def test_a_line_of_unclosed_brackets_is_too_deep_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"id": 1}\n' + "[" * DEEP + '\n{"id": 3}\n', encoding="utf-8")
    (batch,) = JSONInputAdapter(path).batches()
    assert [r["id"] for r in batch.records] == [1, 3]
    assert [(m["line"], m["errors"][0]["msg"]) for m in batch.malformed] == [(2, TOO_DEEP)]


def test_the_depth_test_reads_strings_and_counts_levels() -> None:
    assert not too_deep('{"a": "' + "[" * 1000 + '"}')  # brackets in a string are text
    assert not too_deep("[" + "[1],{}," * 500 + "0]")  # many brackets, two levels
    assert not too_deep(_nested(MAX_DEPTH)) and too_deep(_nested(MAX_DEPTH + 1))
    assert too_deep(_nested(MAX_DEPTH + 1).encode()) and not too_deep(_nested(MAX_DEPTH).encode())
    assert too_deep('{"a": "\\"]"} ' + '{"a":' * 300 + "1" + "}" * 300, 13)


# -- 2. values that cannot be serialized ------------------------------------------------------


class Opaque(BaseModel):
    """Row 2's ``x`` becomes an ``object()``; row 3's a text its int column cannot hold."""

    id: int
    x: int

    @field_validator("x")
    @classmethod
    def _x(cls, value: int) -> Any:
        return object() if value == 2 else "abc" if value == 3 else value


class Anything(BaseModel):
    id: int
    data: Any = Field(default_factory=set)

    @field_validator("data")
    @classmethod
    def _data(cls, value: Any) -> Any:
        return object() if value == "opaque" else value


class BadSerializer(BaseModel):
    id: int
    name: str

    @field_serializer("name")
    def _name(self, value: str) -> str:
        return {"a": "A"}[value]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ratio(self) -> float:
        return 1 / (self.id - 3)


def _csv(tmp_path: Path, rows: list[dict[str, Any]]) -> Path:
    path = tmp_path / "in.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _read(path: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]]
    if path.suffix == ".parquet":
        rows = pq.read_table(path).to_pylist()
    elif path.suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    elif path.suffix == ".json":
        rows = json.loads(path.read_text(encoding="utf-8"))
    else:
        rows = read_jsonl(path)
    return rows


OUTPUTS: dict[str, Callable[[Path], BaseOutputAdapter]] = {
    ".jsonl": JSONOutputAdapter,
    ".json": JSONOutputAdapter,
    ".csv": CSVOutputAdapter,
    ".parquet": ParquetOutputAdapter,
}


@pytest.mark.parametrize("sharded", [False, True], ids=["single", "sharded"])
@pytest.mark.parametrize("suffix", list(OUTPUTS))
def test_a_value_that_cannot_be_serialized_is_an_error_record_naming_the_field(
    tmp_path: Path, suffix: str, sharded: bool
) -> None:
    source = _csv(tmp_path, [{"id": i, "x": i} for i in range(1, 10)])
    out = tmp_path / f"out{suffix}"
    pipe = Pipe(
        CSVInputAdapter(source),
        OUTPUTS[suffix](out),
        Opaque,
        error_output_adapter=JSONOutputAdapter(tmp_path / "err.jsonl"),
    )
    assert _run(pipe, sharded) == (9, 7, 2)
    rows = _read(out)
    assert [int(r["id"]) for r in rows] == [1, 4, 5, 6, 7, 8, 9]
    assert "object at 0x" not in out.read_bytes().decode("utf-8", "replace")
    unknown, text = read_jsonl(tmp_path / "err.jsonl")
    assert (unknown["source"], unknown["line"], unknown["record"]) == (
        str(source),
        3,
        {"id": "2", "x": "2"},
    )
    assert unknown["errors"] == [
        {
            "type": "serialization",
            "loc": ["x"],
            "msg": "cannot be serialized: Unable to serialize unknown type: <class 'object'>",
            "input": unknown["errors"][0]["input"],
        }
    ]
    assert unknown["errors"][0]["input"].startswith("<object object at 0x")
    assert text["line"] == 4 and text["errors"][0]["loc"] == ["x"]
    assert text["errors"][0]["msg"].startswith(
        "cannot be written as int64 (the output column type): Could not convert 'abc'"
    )


@pytest.mark.parametrize("sharded", [False, True], ids=["single", "sharded"])
@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_an_any_field_holding_an_object_is_an_error_record_and_a_set_a_json_array(
    tmp_path: Path, suffix: str, sharded: bool
) -> None:
    lines = [{"id": 1, "data": [3, 1]}, {"id": 2, "data": "opaque"}, {"id": 3}, {"id": 4}]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    out = tmp_path / f"out{suffix}"
    pipe = Pipe(
        JSONInputAdapter(source),
        OUTPUTS[suffix](out),
        Anything,
        error_output_adapter=JSONOutputAdapter(tmp_path / "err.jsonl"),
    )
    assert _run(pipe, sharded) == (4, 3, 1)
    rows = _read(out)
    if suffix == ".parquet":  # an Any field is a text column of JSON
        assert [r["data"] for r in rows] == ["[3,1]", "[]", "[]"]
    else:  # the default set is written as a JSON array
        assert [r["data"] for r in rows] == [[3, 1], [], []]
    (error,) = read_jsonl(tmp_path / "err.jsonl")
    assert error["line"] == 2 and error["errors"][0]["loc"] == ["data"]
    assert error["errors"][0]["type"] == "serialization"


def test_a_serializer_that_raises_is_an_error_record_naming_the_field(tmp_path: Path) -> None:
    rows = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}, {"id": 3, "name": "a"}]
    report = Pipe(
        CSVInputAdapter(_csv(tmp_path, rows)),
        JSONOutputAdapter(tmp_path / "out.jsonl"),
        BadSerializer,
        error_output_adapter=JSONOutputAdapter(tmp_path / "err.jsonl"),
    ).run()
    assert (report.success_count, report.error_count) == (1, 2)
    assert read_jsonl(tmp_path / "out.jsonl") == [{"id": 1, "name": "A", "ratio": -0.5}]
    serializer, computed = read_jsonl(tmp_path / "err.jsonl")
    assert serializer["line"] == 3 and serializer["errors"] == [
        {
            "type": "serialization",
            "loc": ["name"],
            "msg": "cannot be serialized: Error calling function `_name`: KeyError: 'b'",
        }
    ]
    assert computed["line"] == 4 and computed["errors"] == [
        {
            "type": "serialization",
            "loc": ["ratio"],
            "msg": "cannot be serialized: ZeroDivisionError: division by zero",
        }
    ]


def test_json_output_never_writes_the_str_of_an_unknown_object() -> None:
    with pytest.raises(OutputError, match="cannot write a value as JSON: .*unknown type"):
        to_json_bytes({"x": object()})
    assert to_json_bytes({"s": {1}, "t": (1, 2), "nan": float("nan")}) == (
        b'{"s":[1],"t":[1,2],"nan":NaN}'
    )


# -- 3. a validator that raises something other than ValueError -------------------------------


class Fragile(BaseModel):
    id: int
    name: str

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if value == "key":
            return {"a": "b"}[value]
        if value == "zero":
            return str(1 // 0)
        if value == "deep":
            # A real runaway recursion through pydantic-core's C validator leaves the
            # interpreter's recursion budget short for the rest of the process (later tests then
            # fail to pickle); the error it raises is what matters here.
            raise RecursionError("maximum recursion depth exceeded while calling a Python object")
        return value


class Pair(BaseModel):
    a: int = 0
    b: int = 0

    @field_validator("a", "b")
    @classmethod
    def _both(cls, value: int, info: ValidationInfo) -> int:
        if value == 5:
            raise KeyError("five")
        return value


class Either(BaseModel):
    a: int = 0
    b: int = 0

    @field_validator("a", "b")
    @classmethod
    def _either(cls, value: int) -> int:  # no ValidationInfo: which field cannot be told
        return 1 // (value - 5)


class Outer(BaseModel):
    id: int
    inner: Pair

    @model_validator(mode="after")
    def _whole(self) -> Outer:
        if self.id == 7:
            raise TypeError("seven")
        return self


def _names(tmp_path: Path, bad: str, at: int = 5, count: int = 9) -> Path:
    return _csv(tmp_path, [{"id": i, "name": bad if i == at else f"n{i}"} for i in range(count)])


@pytest.mark.parametrize(
    ("bad", "raised"),
    [
        ("key", "KeyError: 'key'"),
        ("zero", "ZeroDivisionError: integer division or modulo by zero"),
        ("deep", "RecursionError: maximum recursion depth exceeded"),
    ],
)
def test_a_validator_raising_another_exception_stops_the_pipe_naming_the_row(
    tmp_path: Path, bad: str, raised: str
) -> None:
    source = _names(tmp_path, bad)
    target = tmp_path / "out.jsonl"
    pipe = Pipe(
        CSVInputAdapter(source),
        JSONOutputAdapter(target),
        Fragile,
        error_output_adapter=JSONOutputAdapter(tmp_path / "err.jsonl"),
    )
    with pytest.raises(ValidatorError) as info:
        pipe.run()
    error = info.value
    # RecursionError's text goes on ("... while calling a Python object")
    assert str(error).startswith(
        f"{source}:7: the validator Fragile._name of field 'name' raised {raised}"
    )
    assert str(error).endswith(
        ". A validator rejects a record by raising ValueError or AssertionError; any other "
        "exception is a bug in the model, so the run stops"
    )
    assert (error.path, error.line, error.field, error.validator) == (
        str(source),
        7,
        "name",
        "Fragile._name",
    )
    assert error.error_type == raised.split(":")[0]
    assert type(error.__cause__).__name__ == error.error_type  # the original, in this process
    assert pipe.report.status is PipeStatus.FAILED
    assert pipe.report.message == f"ValidatorError: {error}"
    assert not target.exists() and not (tmp_path / "err.jsonl").exists()
    assert str(pickle.loads(pickle.dumps(error))) == str(error)


def test_the_field_of_a_shared_nested_or_model_validator_is_named(tmp_path: Path) -> None:
    def failure(row: dict[str, Any]) -> ValidatorError:
        source = tmp_path / "in.jsonl"
        source.write_text(json.dumps({"id": 1, "inner": {}}) + "\n" + json.dumps(row) + "\n")
        pipe = Pipe(JSONInputAdapter(source), JSONOutputAdapter(tmp_path / "o.jsonl"), Outer)
        with pytest.raises(ValidatorError) as info:
            pipe.run()
        assert info.value.line == 2
        return info.value

    error = failure({"id": 2, "inner": {"a": 1, "b": 5}})
    assert (error.field, error.validator, error.error_type) == ("inner.b", "Pair._both", "KeyError")
    assert "the validator Pair._both of field 'inner.b' raised KeyError: 'five'" in str(error)
    error = failure({"id": 7, "inner": {}})
    assert (error.field, error.validator) == (None, "Outer._whole")
    assert ":2: the validator Outer._whole raised TypeError: seven." in str(error)
    with pytest.raises(ValidatorError) as info:
        RowValidator(Either)([{"a": 1, "b": 5}])
    assert info.value.field == "a or b" and info.value.index == 0


def test_the_row_is_named_when_threads_validate(tmp_path: Path) -> None:
    source = _names(tmp_path, "key", at=250, count=300)
    pipe = Pipe(
        CSVInputAdapter(source),
        JSONOutputAdapter(tmp_path / "out.jsonl"),
        Fragile,
        executor=MultiThreadExecutor(max_workers=3, batch_size=64),
    )
    with pytest.raises(ValidatorError, match=r"in\.csv:252: the validator Fragile\._name"):
        pipe.run()


def test_a_sharded_run_fails_naming_the_shard_file_line_and_field(tmp_path: Path) -> None:
    source = _names(tmp_path, "key", at=7, count=9)
    target = tmp_path / "out.jsonl"
    target.write_text('{"previous": true}\n')
    pipe = Pipe(
        CSVInputAdapter(source),
        JSONOutputAdapter(target),
        Fragile,
        error_output_adapter=JSONOutputAdapter(tmp_path / "err.jsonl"),
    )
    manager = PipeManager.parallelize_pipe(pipe, workers=3)
    assert manager.run(timeout=120) is False
    assert isinstance(manager.error, ShardFailedError)
    assert list(manager.error.failures) == [2]  # type: ignore[attr-defined]
    expected = f"{source}:9: the validator Fragile._name of field 'name' raised KeyError: 'key'"
    assert expected in str(manager.error)
    assert manager.pipe_reports[2].status is PipeStatus.FAILED
    assert manager.pipe_reports[2].message.startswith(f"ValidatorError: {expected}. ")
    assert target.read_text() == '{"previous": true}\n'
