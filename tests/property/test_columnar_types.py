"""Real-world types on the fast path give exactly the results of the pure pydantic path.

Random models of the types issue 14 brings to the fast path (time-zoned and naive datetimes,
times, decimals, UUIDs, ``Literal`` and enums of ints, bools in every spelling, constrained
numbers, ``X | None``) and random CSV inputs, valid and not (random time-zone offsets, mixed
within a batch, empty cells, near misses), run through ``Pipe(columnar=True)`` and
``Pipe(columnar=False)``: the valid output as CSV, JSON Lines and Parquet, and the error
records, are equal byte for byte (Parquet: value for value and schema). A second property
does the same from typed Parquet input (zoned timestamps, decimals as text, nulls).
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import enum
import tempfile
import uuid
from pathlib import Path
from typing import Any, Literal, Optional

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given, note, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field, create_model

from zoopipe_hpc.adapters import (
    CSVInputAdapter,
    CSVOutputAdapter,
    JSONOutputAdapter,
    ParquetInputAdapter,
    ParquetOutputAdapter,
)
from zoopipe_hpc.pipe import Pipe
from zoopipe_hpc.validation._columnar import ColumnarValidator


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 20


class Code(int, enum.Enum):  # noqa: UP042 - the int mixin is what is tested
    ZERO = 0
    MINUS = -3


KINDS = (
    "zoned",
    "datetime",
    "time",
    "decimal",
    "uuid",
    "int_literal",
    "int_enum",
    "code",
    "bool",
    "multiple",
    "bounded_str",
)

NEAR_MISSES = [
    "",
    " ",
    "0",
    "1",
    "-3",
    "20",
    "2",
    "1.0",
    "+1",
    "true",
    "tRuE",
    "OfF",
    "nan",
    "1e3",
    "1_0",
    "2020-01-01T12:00:00Z",
    "2020-01-01T12:00:00z",
    "2020-01-01 12:00:00+05:30",
    "2020-01-01T12:00:00-00:00",
    "2020-01-01T12:00:00+0530",
    "2020-01-01T12:00:00+05",
    "2020-01-01T12:00:00+24:00",
    "2020-01-01T12:00:00+23:59",
    "2020-01-01T12:00:00.123456-11:45",
    "2020-01-01T12:00:00.1234567Z",
    "2020-02-30T12:00:00Z",
    "1000-01-01T00:00:00+01:00",
    "2999-12-31T23:59:59-01:00",
    "12:00",
    "12:00:00",
    "12:00:00Z",
    "12:00:00+01:00",
    "23:59:59.999999",
    "24:00:00",
    "1.50",
    "1E+2",
    "-0.000",
    "123456.7",
    "12345678-1234-5678-1234-567812345678",
    "12345678123456781234567812345678",
    "{12345678-1234-5678-1234-567812345678}",
    "None",
    "null",
]

UUID_FORM = r"\A[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z"
OFFSETS = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(lambda m: dt.timedelta(minutes=m))


def _zoned(offsets: list[dt.timedelta]) -> st.SearchStrategy[str]:
    """Aware datetimes in one of a few offsets (so a batch mixes zones), as text."""

    def text(moment: dt.datetime, offset: dt.timedelta, sep: str, zulu: bool) -> str:
        value = moment.replace(tzinfo=dt.timezone(offset)).isoformat(sep=sep)
        return value[:-6] + "Z" if zulu and not offset else value

    return st.builds(
        text,
        st.datetimes(min_value=dt.datetime(1000, 1, 2), max_value=dt.datetime(2999, 12, 30)),
        st.sampled_from(offsets),
        st.sampled_from("T "),
        st.booleans(),
    )


def _value_for(kind: str, offsets: list[dt.timedelta]) -> st.SearchStrategy[str]:
    canonical: dict[str, st.SearchStrategy[str]] = {
        "zoned": _zoned(offsets),
        "datetime": _zoned(offsets) | st.datetimes().map(lambda d: d.isoformat()),
        "time": st.times().map(str) | st.times().map(lambda t: t.isoformat("minutes")),
        "decimal": st.decimals(allow_nan=False, allow_infinity=False, places=2).map(str)
        | st.decimals(allow_nan=True, allow_infinity=True).map(str),
        "uuid": st.uuids().map(str)
        | st.uuids().map(lambda u: str(u).upper())
        | st.uuids().map(lambda u: u.hex.upper())
        # Any version and variant nibbles, mixed case.
        | st.from_regex(UUID_FORM),
        "int_literal": st.sampled_from(["1", "2", "3", "4"]),
        "int_enum": st.sampled_from(["1", "20", "3"]),
        "code": st.sampled_from(["0", "-3", "3"]),
        "bool": st.sampled_from(
            ["true", "false", "1", "0", "yes", "no", "on", "off", "t", "f"]
        ).flatmap(lambda w: st.sampled_from([w, w.upper(), w.title(), w.swapcase()])),
        "multiple": st.integers(-100, 100).map(str),
        "bounded_str": st.text(max_size=6),
    }
    return st.one_of(
        canonical[kind], canonical[kind], canonical[kind], st.sampled_from(NEAR_MISSES)
    )


def _base(kind: str, draw: st.DrawFn) -> tuple[Any, Any]:
    constraints: dict[str, Any] = {}
    if kind == "decimal" and draw(st.booleans()):
        constraints["max_digits"] = draw(st.integers(1, 6))
        constraints["decimal_places"] = draw(st.integers(0, 3))
    if kind == "multiple":
        constraints["multiple_of"] = draw(st.sampled_from([2, 3, 7]))
    if kind == "bounded_str":
        constraints["min_length"] = draw(st.integers(0, 2))
        constraints["max_length"] = draw(st.integers(2, 5))
        if draw(st.booleans()):
            constraints["pattern"] = r"^\d*$"  # \d: not compiled, so left to pydantic
    base: Any = {
        "zoned": dt.datetime,
        "datetime": dt.datetime,
        "time": dt.time,
        "decimal": decimal.Decimal,
        "uuid": uuid.UUID,
        "int_literal": Literal[1, 2, 3],
        "int_enum": Level,
        "code": Code,
        "bool": bool,
        "multiple": int,
        "bounded_str": str,
    }[kind]
    return base, Field(**constraints)


@st.composite
def cases(draw: st.DrawFn) -> tuple[type[BaseModel], list[str], list[list[str]]]:
    kinds = draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=4))
    fields = {}
    for i, kind in enumerate(kinds):
        base, info = _base(kind, draw)
        annotation = Optional[base] if draw(st.booleans()) else base  # noqa: UP045
        fields[f"f{i}"] = (annotation, info)
    model = create_model("Random", **fields)  # type: ignore[call-overload]
    offsets = draw(st.lists(OFFSETS | st.just(dt.timedelta(0)), min_size=1, max_size=3))
    rows = draw(
        st.lists(
            st.tuples(*[_value_for(k, offsets) for k in kinds]).map(list), min_size=0, max_size=40
        )
    )
    return model, list(fields), rows


def _run(model: type[BaseModel], source: Any, out: Path, *, columnar: bool) -> list[Any]:
    outputs = {
        "parquet": ParquetOutputAdapter(out / f"valid-{columnar}.parquet"),
        "jsonl": JSONOutputAdapter(out / f"valid-{columnar}.jsonl"),
        "csv": CSVOutputAdapter(out / f"valid-{columnar}.csv"),
    }
    results: list[Any] = []
    for name, output in outputs.items():
        errors = out / f"errors-{name}-{columnar}.jsonl"
        Pipe(source, output, model, JSONOutputAdapter(errors), columnar=columnar).run()
        path = out / f"valid-{columnar}.{name}"
        results.append(pq.read_table(path) if name == "parquet" else path.read_bytes())
        results.append(errors.read_bytes())
    return results


def _same(model: type[BaseModel], source: Any, out: Path) -> None:
    fast = _run(model, source, out, columnar=True)
    slow = _run(model, source, out, columnar=False)
    note(f"fast valid {fast[0].to_pylist()}\nslow valid {slow[0].to_pylist()}")
    assert fast[0].schema.equals(slow[0].schema)
    assert fast[0].to_pylist() == slow[0].to_pylist()
    assert fast[1:] == slow[1:]


@settings(max_examples=settings().max_examples // 3 or 1)
@given(cases())
def test_csv_real_world_types_equal_pydantic(
    case: tuple[type[BaseModel], list[str], list[list[str]]],
) -> None:
    model, columns, rows = case
    assert ColumnarValidator.compile(model) is not None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        path = out / "in.csv"
        with open(path, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            writer.writerows(rows)
        _same(model, CSVInputAdapter(path, block_size=1 << 10), out)


@settings(max_examples=settings().max_examples // 3 or 1)
@given(cases(), st.data())
def test_csv_real_world_types_with_null_markers_equal_pydantic(
    case: tuple[type[BaseModel], list[str], list[list[str]]], data: st.DataObject
) -> None:
    """As above with ``null_values=["NA"]`` and random ``NA`` cells: nulls meet the zone
    choice, the day checks and the column-wide pydantic validation."""
    model, columns, rows = case
    rows = [["NA" if data.draw(st.booleans()) else v for v in row] for row in rows]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        path = out / "in.csv"
        with open(path, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            writer.writerows(rows)
        _same(model, CSVInputAdapter(path, block_size=1 << 10, null_values=["NA"]), out)


TYPED: dict[str, tuple[pa.DataType, st.SearchStrategy[Any]]] = {
    "zoned": (
        pa.timestamp("us", tz="UTC"),
        st.datetimes(timezones=st.just(dt.UTC)),
    ),
    "datetime": (pa.timestamp("ms"), st.datetimes().map(lambda d: d.replace(microsecond=0))),
    "time": (pa.time64("us"), st.times()),
    "decimal": (pa.string(), st.decimals(allow_nan=False, places=2).map(str)),
    "uuid": (pa.string(), st.uuids().map(str) | st.uuids().map(lambda u: u.hex)),
    "int_literal": (pa.int64(), st.integers(0, 4)),
    "int_enum": (pa.int16(), st.sampled_from([1, 20, 3])),
    "code": (pa.float64(), st.sampled_from([0.0, -3.0, 3.0, 0.5])),
    "bool": (pa.bool_(), st.booleans()),
    "multiple": (pa.float64(), st.integers(-50, 50).map(float) | st.floats()),
    "bounded_str": (pa.string(), st.text(max_size=6)),
}


@settings(max_examples=settings().max_examples // 4 or 1)
@given(st.data())
def test_parquet_real_world_types_equal_pydantic(data: st.DataObject) -> None:
    kinds = data.draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=4))
    fields = {}
    for i, kind in enumerate(kinds):
        base, info = _base(kind, data.draw)
        annotation = Optional[base] if data.draw(st.booleans()) else base  # noqa: UP045
        fields[f"f{i}"] = (annotation, info)
    model = create_model("Typed", **fields)  # type: ignore[call-overload]
    assert ColumnarValidator.compile(model) is not None
    n = data.draw(st.integers(0, 30))
    arrays = []
    for kind in kinds:
        arrow_type, values = TYPED[kind]
        arrays.append(
            pa.array(data.draw(st.lists(st.none() | values, min_size=n, max_size=n)), arrow_type)
        )
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        path = out / "in.parquet"
        pq.write_table(pa.table(arrays, names=list(fields)), path)
        _same(model, ParquetInputAdapter(path, batch_size=7), out)
