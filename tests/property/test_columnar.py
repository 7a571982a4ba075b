"""The columnar fast path gives exactly the results of the pure pydantic path.

Random models built from the covered field kinds (with random constraints, optional or not) and
random CSV inputs, clean and dirty (near misses of every lax-mode rule: whitespace, ``+1``,
``1_000``, ``01``, ``1.0``, ``inf``, ``nan``, ``""``, impossible dates, time zones, other
spellings, arbitrary text), run through ``Pipe(columnar=True)`` and ``Pipe(columnar=False)``:
the valid output (Parquet and JSON Lines, value for value and in order) and the error records
(JSON Lines, byte for byte) are equal. The models are asserted to compile, so the fast path is
really exercised. A second property does the same from typed Parquet input, nulls included.
"""

from __future__ import annotations

import csv
import datetime as dt
import enum
import math
import tempfile
from pathlib import Path
from typing import Any, Literal, Optional

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given, note, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field, create_model

from zoopipe_hpc.adapters import (
    CSVInputAdapter,
    JSONOutputAdapter,
    ParquetInputAdapter,
    ParquetOutputAdapter,
)
from zoopipe_hpc.pipe import Pipe
from zoopipe_hpc.validation._columnar import ColumnarValidator


class Colour(str, enum.Enum):  # noqa: UP042 - the str mixin is what is tested
    RED = "red"
    GREEN = "green"
    BLUE = "Blue"


class Plain(enum.Enum):
    A = "a"
    B = "b b"


KINDS = ("int", "float", "str", "bool", "date", "datetime", "enum", "plain", "literal")
PATTERNS = ("^[a-c]+$", "x", "^[A-Z][a-z]*", "b|c$", "^a.c", "[0-9]{2,3}")

NEAR_MISSES = [
    "",
    " ",
    "1",
    "0",
    "-0",
    "+1",
    " 1",
    "1 ",
    "01",
    "1_000",
    "1.0",
    "1.5",
    "-1.5e3",
    "1e400",
    "1E5",
    ".5",
    "1.",
    "inf",
    "-inf",
    "nan",
    "NaN",
    "9223372036854775807",
    "99999999999999999999",
    "true",
    "True",
    "TRUE",
    "tRuE",
    "yes",
    "no",
    "on",
    "off",
    "t",
    "F",
    "y",
    "N",
    "2",
    "2020-01-31",
    "2020-02-29",
    "2021-02-29",
    "2020-02-30",
    "2020-13-01",
    "0999-01-01",
    "2020-1-1",
    "2020-01-01 00:00:00",
    "2020-01-01T23:59:59.123456",
    "2020-01-01T23:59:59.1234567",
    "2020-01-01T24:00:00",
    "2020-01-01T12:00:00Z",
    "2020-01-01T12:00:00+01:00",
    "2020-01-01t12:00:00",
    "1600000000",
    "red",
    "RED",
    "Blue",
    "blue",
    "a",
    "b b",
    "abc",
    "ccc",
    "Xyz",
    "a\nc",
    "é",
    "12",
    "1234",
    "None",
    "null",
]


def _value_for(kind: str) -> st.SearchStrategy[str]:
    canonical: dict[str, st.SearchStrategy[str]] = {
        "int": st.integers(-(10**20), 10**20).map(str),
        "float": st.floats(allow_nan=True, allow_infinity=True).map(repr)
        | st.decimals(allow_nan=False, allow_infinity=False, places=3).map(str)
        # Around where pydantic-core starts writing exponents (1e-5) and pyarrow does (1e-6),
        # and integral values, which the two write differently.
        | st.floats(min_value=-2e-5, max_value=2e-5).map(repr)
        | st.sampled_from(["0.000001", "0.0000099", "0.00001", "1e-6", "95.0", "-0.0", "0.0"]),
        "str": st.text(max_size=6),
        "bool": st.sampled_from(["true", "false", "1", "0", "yes", "no", "True", "OFF"]),
        "date": st.dates().map(str),
        "datetime": st.datetimes().map(lambda d: d.isoformat(sep=st_sep(d))),
        "enum": st.sampled_from(["red", "green", "Blue"]),
        "plain": st.sampled_from(["a", "b b"]),
        "literal": st.sampled_from(["x", "yy", "z"]),
    }
    return st.one_of(
        canonical[kind], canonical[kind], st.sampled_from(NEAR_MISSES), st.text(max_size=5)
    )


def st_sep(d: dt.datetime) -> str:
    return " " if d.microsecond % 2 else "T"


@st.composite
def field_specs(draw: st.DrawFn) -> tuple[str, Any, Any]:
    kind = draw(st.sampled_from(KINDS))
    base: Any = {
        "int": int,
        "float": float,
        "str": str,
        "bool": bool,
        "date": dt.date,
        "datetime": dt.datetime,
        "enum": Colour,
        "plain": Plain,
        "literal": Literal["x", "yy", "z"],
    }[kind]
    constraints: dict[str, Any] = {}
    if kind == "int" and draw(st.booleans()):
        constraints[draw(st.sampled_from(["ge", "gt", "le", "lt"]))] = draw(
            st.integers(-1000, 1000)
        )
    if kind == "float" and draw(st.booleans()):
        constraints[draw(st.sampled_from(["ge", "gt", "le", "lt"]))] = draw(
            st.sampled_from([0, -1.5, 0.5, 100.0])
        )
    if kind == "str":
        if draw(st.booleans()):
            constraints["max_length"] = draw(st.integers(0, 4))
        if draw(st.booleans()):
            constraints["min_length"] = draw(st.integers(0, 3))
        if draw(st.booleans()):
            constraints["pattern"] = draw(st.sampled_from(PATTERNS))
    annotation = Optional[base] if draw(st.booleans()) else base  # noqa: UP045
    return kind, annotation, Field(**constraints)


@st.composite
def cases(draw: st.DrawFn) -> tuple[type[BaseModel], list[str], list[list[str]]]:
    specs = draw(st.lists(field_specs(), min_size=1, max_size=4))
    fields = {f"f{i}": (annotation, info) for i, (_, annotation, info) in enumerate(specs)}
    model = create_model("Random", **fields)  # type: ignore[call-overload]
    kinds = [kind for kind, _, _ in specs]
    columns = list(fields)
    if draw(st.booleans()):
        columns.append("extra")
        kinds.append("str")
    rows = draw(
        st.lists(st.tuples(*[_value_for(k) for k in kinds]).map(list), min_size=0, max_size=40)
    )
    return model, columns, rows


def _run(
    model: type[BaseModel], source: Any, out: Path, *, columnar: bool
) -> tuple[pa.Table, bytes, bytes]:
    pq_out = out / f"valid-{columnar}.parquet"
    js_out = out / f"valid-{columnar}.jsonl"
    err_out = out / f"errors-{columnar}.jsonl"
    Pipe(
        source, ParquetOutputAdapter(pq_out), model, JSONOutputAdapter(err_out), columnar=columnar
    ).run()
    Pipe(source, JSONOutputAdapter(js_out), model, columnar=columnar).run()
    return pq.read_table(pq_out), js_out.read_bytes(), err_out.read_bytes()


def _nan_safe(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with NaN spelled out: NaN never equals NaN, so lists holding it never compare equal."""
    return [
        {k: "NaN" if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
        for row in rows
    ]


def _same(model: type[BaseModel], source: Any, out: Path) -> None:
    fast = _run(model, source, out, columnar=True)
    slow = _run(model, source, out, columnar=False)
    note(f"fast valid {fast[0].to_pylist()}\nslow valid {slow[0].to_pylist()}")
    assert fast[0].schema.equals(slow[0].schema)
    assert _nan_safe(fast[0].to_pylist()) == _nan_safe(slow[0].to_pylist())
    assert fast[1] == slow[1]
    assert fast[2] == slow[2]


@settings(max_examples=settings().max_examples // 3 or 1)
@given(cases())
def test_csv_fast_path_equals_pydantic(
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


#: Null markers of the marker property: the common ones, and one that is also a valid value.
MARKERS = ["NA", "", "1"]


@settings(max_examples=settings().max_examples // 3 or 1)
@given(cases(), st.data())
def test_csv_with_null_markers_equals_pydantic(
    case: tuple[type[BaseModel], list[str], list[list[str]]], data: st.DataObject
) -> None:
    """As above with ``null_values`` (cells become None before validation): random cells are
    markers, so every check meets nulls in text columns, optional fields or not."""
    model, columns, rows = case
    markers = data.draw(st.lists(st.sampled_from(MARKERS), min_size=1, max_size=2, unique=True))
    rows = [
        [data.draw(st.sampled_from(markers)) if data.draw(st.booleans()) else v for v in row]
        for row in rows
    ]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        path = out / "in.csv"
        with open(path, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            writer.writerows(rows)
        _same(model, CSVInputAdapter(path, block_size=1 << 10, null_values=markers), out)


TYPED = {
    "int": (pa.int32(), st.integers(-(2**31), 2**31 - 1)),
    "float": (pa.float64(), st.floats()),
    "str": (pa.string(), st.text(max_size=5)),
    "bool": (pa.bool_(), st.booleans()),
    "date": (pa.date32(), st.dates()),
    "datetime": (pa.timestamp("us"), st.datetimes()),
    "enum": (pa.string(), st.sampled_from(["red", "green", "Blue", "x"])),
    "plain": (pa.string(), st.sampled_from(["a", "b b", "b"])),
    "literal": (pa.string(), st.sampled_from(["x", "yy", "z", "w"])),
}


@settings(max_examples=settings().max_examples // 4 or 1)
@given(st.data())
def test_parquet_fast_path_equals_pydantic(data: st.DataObject) -> None:
    specs = data.draw(st.lists(field_specs(), min_size=1, max_size=4))
    fields = {f"f{i}": (annotation, info) for i, (_, annotation, info) in enumerate(specs)}
    model = create_model("Typed", **fields)  # type: ignore[call-overload]
    assert ColumnarValidator.compile(model) is not None
    n = data.draw(st.integers(0, 30))
    arrays = []
    for kind, _, _ in specs:
        arrow_type, values = TYPED[kind]
        arrays.append(
            pa.array(data.draw(st.lists(st.none() | values, min_size=n, max_size=n)), arrow_type)
        )
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        path = out / "in.parquet"
        pq.write_table(pa.table(arrays, names=list(fields)), path)
        _same(model, ParquetInputAdapter(path, batch_size=7), out)
