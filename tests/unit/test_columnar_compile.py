"""The columnar compiler: what it covers, what it vouches for, and the switch."""

from __future__ import annotations

import datetime as dt
import enum
import logging
import pickle
from pathlib import Path
from typing import Annotated, Literal, Optional

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    computed_field,
    field_validator,
    model_validator,
)

from zoopipe_hpc.adapters import (
    CSVInputAdapter,
    CSVOutputAdapter,
    JSONOutputAdapter,
    ParquetOutputAdapter,
)
from zoopipe_hpc.pipe import Pipe
from zoopipe_hpc.validation._columnar import (
    _FALSE_SET,
    _TRUE_SET,
    ColumnarValidator,
    columnar_enabled,
)
from zoopipe_hpc.validation._columnar_plan import pattern_ok


class Size(enum.Enum):
    S = "s"
    M = "m"


class Row(BaseModel):
    id: int = Field(ge=0)
    score: Optional[float] = None  # noqa: UP045
    name: str = Field(max_length=5, pattern="^[a-z]+$")
    ok: bool
    day: dt.date
    at: dt.datetime
    size: Size
    tag: Literal["a", "b"]


def _vouch(model: type[BaseModel], columns: dict[str, list[object]]) -> list[bool]:
    validator = ColumnarValidator.compile(model)
    assert validator is not None
    _, ok = validator(pa.table(columns))
    return [bool(v) for v in ok.to_pylist()]


def _agrees(annotation: object, text: str, vouched: bool, value: object) -> None:
    """What the fast path vouched for, pydantic accepts with the same value."""
    if not vouched:
        return
    assert TypeAdapter(annotation).validate_python(text) == value


@pytest.mark.parametrize(
    ("text", "vouched"),
    [
        ("0", True),
        ("12", True),
        ("-7", True),
        ("-0", True),  # a batch whose cast succeeds is read as pyarrow casts it
        ("+1", False),
        (" 1", False),
        ("1_000", False),
        ("0x10", False),  # 16 to pyarrow's cast, refused by pydantic
        ("01", True),
        ("1.0", False),
        ("", False),
        ("99999999999999999999", False),
    ],
)
def test_int_forms(text: str, vouched: bool) -> None:
    class M(BaseModel):
        x: int

    assert _vouch(M, {"x": [text]}) == [vouched]
    if vouched:
        assert M(x=text).x == int(text)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "vouched"),
    [
        ("1.5", True),
        ("-0", True),
        ("1e5", True),
        ("1E-5", True),
        ("0.001", True),
        ("inf", False),
        ("nan", False),
        (".5", True),  # a batch whose cast succeeds is read as pyarrow casts it
        ("1.", True),
        ("1e400", False),
        (" 1", False),
        ("+1", True),
        ("1_0.5", False),
    ],
)
def test_float_forms(text: str, vouched: bool) -> None:
    class M(BaseModel):
        x: float

    validator = ColumnarValidator.compile(M)
    assert validator is not None
    accepted, ok = validator(pa.table({"x": [text]}))
    assert ok.to_pylist() == [vouched]
    if vouched:
        assert accepted.column("x").to_pylist() == [M(x=text).x]  # type: ignore[arg-type]


def test_bool_spellings_are_pydantic_s() -> None:
    for spelling in _TRUE_SET.to_pylist():
        assert TypeAdapter(bool).validate_python(spelling) is True
    for spelling in _FALSE_SET.to_pylist():
        assert TypeAdapter(bool).validate_python(spelling) is False


@pytest.mark.parametrize(
    ("text", "vouched", "value"),
    [
        ("tRuE", True, True),
        ("yEs", True, True),
        ("OfF", True, False),
        ("nO", True, False),
        ("T", True, True),
        ("ON ", False, None),
        ("\u0131", False, None),  # dotless i: not ASCII, not a spelling for anyone
        ("truE\n", False, None),
    ],
)
def test_bool_in_any_case(text: str, vouched: bool, value: bool | None) -> None:
    class M(BaseModel):
        x: bool

    validator = ColumnarValidator.compile(M)
    assert validator is not None
    accepted, ok = validator(pa.table({"x": [text]}))
    assert ok.to_pylist() == [vouched]
    if vouched:
        assert accepted.to_pylist() == [{"x": value}] == [M(x=text).model_dump()]


@pytest.mark.parametrize(
    ("text", "vouched"),
    [
        ("2020-02-29", True),
        ("2021-02-29", False),
        ("2020-02-30", False),
        ("2020-13-01", False),
        ("0999-01-01", False),
        ("2020-1-1", False),
        ("2020-01-01 00:00:00", False),
    ],
)
def test_date_forms(text: str, vouched: bool) -> None:
    class M(BaseModel):
        x: dt.date

    assert _vouch(M, {"x": [text]}) == [vouched]
    _agrees(dt.date, text, vouched, dt.date.fromisoformat(text) if vouched else None)


@pytest.mark.parametrize(
    ("text", "vouched"),
    [
        ("2020-01-01T00:00:00", True),
        ("2020-01-01 23:59:59.5", True),
        ("2020-01-01T23:59:59.123456", True),
        ("2020-01-01T23:59:59.1234567", False),
        ("2020-01-01T24:00:00", False),
        ("2020-01-01T12:00:00Z", True),
        ("2020-01-01T12:00:00+01:00", True),
        ("2020-01-01t12:00:00", False),
        ("2020-02-30T00:00:00", False),
        ("1600000000", False),
    ],
)
def test_datetime_forms(text: str, vouched: bool) -> None:
    class M(BaseModel):
        x: dt.datetime

    validator = ColumnarValidator.compile(M)
    assert validator is not None
    accepted, ok = validator(pa.table({"x": [text]}))
    assert ok.to_pylist() == [vouched]
    if vouched:
        assert accepted.column("x").to_pylist() == [M(x=text).x]  # type: ignore[arg-type]


def test_empty_string_is_not_none() -> None:
    class M(BaseModel):
        x: Optional[int]  # noqa: UP045

    assert _vouch(M, {"x": [""]}) == [False]
    with pytest.raises(ValidationError):
        M(x="")  # type: ignore[arg-type]
    assert _vouch(M, {"x": pa.array([None, 3], pa.int64())}) == [True, True]


def test_constraints_and_choices() -> None:
    table = {
        "id": ["1", "-1", "2"],
        "score": ["", "1", "2.5"],
        "name": ["abc", "abc", "toolong"],
        "ok": ["yes", "no", "x"],
        "day": ["2020-01-01"] * 3,
        "at": ["2020-01-01 00:00:00"] * 3,
        "size": ["s", "S", "m"],
        "tag": ["a", "b", "c"],
    }
    # "" is not a float for pydantic either; row 1 has id -1; row 2 a long name.
    assert _vouch(Row, table) == [False, False, False]
    table["score"] = ["1", "1", "2.5"]
    assert _vouch(Row, table) == [True, False, False]


@pytest.mark.parametrize(
    ("pattern", "ok"),
    [
        ("^[a-z]+$", True),
        ("^a.c|d{2,3}$", True),
        (r"\.", True),
        (r"\d+", False),
        (r"\w", False),
        ("(?i)abc", False),
        ("(?=a)", False),
        ("é", False),
        ("[[:alpha:]]", False),
        ("a(b", False),
    ],
)
def test_patterns(pattern: str, ok: bool) -> None:
    assert pattern_ok(pattern) is ok


class WithValidator(BaseModel):
    x: int

    @field_validator("x")
    @classmethod
    def double(cls, value: int) -> int:
        return value * 2


class WithModelValidator(BaseModel):
    x: int

    @model_validator(mode="after")
    def check(self) -> WithModelValidator:
        return self


class WithComputed(BaseModel):
    x: int

    @computed_field  # type: ignore[prop-decorator]
    @property
    def y(self) -> int:
        return self.x


class Strict(BaseModel):
    model_config = ConfigDict(strict=True)
    x: int


class Forbid(BaseModel):
    model_config = ConfigDict(extra="forbid")
    x: int


class Nested(BaseModel):
    inner: Strict


class Union2(BaseModel):
    x: int | str


class AnnotatedValidator(BaseModel):
    x: Annotated[int, AfterValidator(lambda v: v)]


class MultipleOf(BaseModel):
    x: int = Field(multiple_of=2)


class IntEnum(enum.IntEnum):
    A = 1


class WithIntEnum(BaseModel):
    x: IntEnum


@pytest.mark.parametrize(
    "model",
    [
        WithValidator,
        WithModelValidator,
        WithComputed,
        Strict,
        Forbid,
        Nested,
        Union2,
        AnnotatedValidator,
    ],
)
def test_not_compiled_with_a_reason(
    model: type[BaseModel], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="zoopipe_hpc.validation._columnar"):
        assert ColumnarValidator.compile(model) is None
    assert "columnar fast path off" in caplog.text


@pytest.mark.parametrize("model", [MultipleOf, WithIntEnum])
def test_left_to_pydantic_column_by_column(model: type[BaseModel]) -> None:
    """A field the checks do not cover costs only the rows pydantic rejects, not the model."""
    validator = ColumnarValidator.compile(model)
    assert validator is not None
    assert [plan.kind for plan in validator.fields] == ["pydantic"]
    accepted, ok = validator(pa.table({"x": ["2", "1", "x"]}))
    good = [True, False, False] if model is MultipleOf else [False, True, False]
    assert ok.to_pylist() == good
    assert accepted.to_pylist() == [{"x": 2 if model is MultipleOf else 1}]


def test_a_column_of_another_type_costs_only_its_bad_rows() -> None:
    class M(BaseModel):
        x: int

    validator = ColumnarValidator.compile(M)
    assert validator is not None
    accepted, ok = validator(pa.table({"x": pa.array([1.0, 2.5, None], pa.float64())}))
    assert ok.to_pylist() == [True, False, False]
    assert accepted.to_pylist() == [{"x": 1}]


def test_alias_reads_the_alias() -> None:
    class M(BaseModel):
        x: int = Field(alias="X")

    validator = ColumnarValidator.compile(M)
    assert validator is not None
    accepted, ok = validator(pa.table({"X": ["1"], "x": ["nope"]}))
    assert ok.to_pylist() == [True]
    assert accepted.to_pylist() == [{"X": 1}]


def test_missing_or_duplicate_column_goes_to_pydantic() -> None:
    class M(BaseModel):
        x: int
        y: int = 0

    assert _vouch(M, {"x": ["1"]}) == [False]
    validator = ColumnarValidator.compile(M)
    assert validator is not None
    table = pa.Table.from_arrays(
        [pa.array(["1"]), pa.array(["2"]), pa.array(["3"])], ["x", "y", "y"]
    )
    assert validator(table)[1].to_pylist() == [False]


def test_switch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert columnar_enabled()
    monkeypatch.setenv("ZOOPIPE_HPC_COLUMNAR", "0")
    assert not columnar_enabled()
    monkeypatch.delenv("ZOOPIPE_HPC_COLUMNAR")
    source = tmp_path / "in.csv"
    source.write_text(
        "id,score,name,ok,day,at,size,tag\n1,2.5,abc,yes,2020-01-01,2020-01-01 00:00:00,s,a\n"
    )
    pipe = Pipe(CSVInputAdapter(source), ParquetOutputAdapter(tmp_path / "o.parquet"), Row)
    assert pipe.columnar is True
    off = pickle.loads(
        pickle.dumps(
            Pipe(
                CSVInputAdapter(source),
                ParquetOutputAdapter(tmp_path / "o.parquet"),
                Row,
                columnar=False,
            )
        )
    )
    assert off.columnar is False
    assert off.for_attempt("a").columnar is False
    pipe.run()
    assert pq.read_table(tmp_path / "o.parquet").to_pylist() == [
        {
            "id": 1,
            "score": 2.5,
            "name": "abc",
            "ok": True,
            "day": dt.date(2020, 1, 1),
            "at": dt.datetime(2020, 1, 1),
            "size": "s",
            "tag": "a",
        }
    ]


def test_interleaved_order_and_errors(tmp_path: Path) -> None:
    class M(BaseModel):
        x: int
        when: dt.datetime

    source = tmp_path / "in.csv"
    lines = ["x,when"]
    for i in range(50):
        if i % 7 == 3:
            lines.append(f" {i},2020-01-01T00:00:00")  # pydantic accepts, fast path does not
        elif i % 11 == 5:
            lines.append(f"bad{i},2020-01-01T00:00:00")  # invalid
        elif i % 13 == 4:
            lines.append(f"{i},1")  # a unix time: tz-aware for pydantic
        else:
            lines.append(f"{i},2020-01-01T00:00:00")
    source.write_text("\n".join(lines) + "\n")
    for suffix in (".jsonl", ".json", ".csv", ".parquet"):
        outputs = {}
        for columnar in (True, False):
            out = tmp_path / f"o-{columnar}{suffix}"
            err = tmp_path / f"e-{columnar}.jsonl"
            output = (
                ParquetOutputAdapter(out)
                if suffix == ".parquet"
                else CSVOutputAdapter(out)
                if suffix == ".csv"
                else JSONOutputAdapter(out)
            )
            Pipe(
                CSVInputAdapter(source, block_size=256),
                output,
                M,
                JSONOutputAdapter(err),
                columnar=columnar,
            ).run()
            valid = pq.read_table(out).to_pylist() if suffix == ".parquet" else out.read_bytes()
            outputs[columnar] = (valid, err.read_bytes())
        assert outputs[True] == outputs[False]
        if suffix == ".jsonl":
            assert b'"x":3,' in outputs[True][0]
            assert b"Z" in outputs[True][0]
