"""The facts the fast path's shortcuts rest on, checked against the installed pyarrow/pydantic.

Each shortcut skips a check only where it is proven redundant; these tests are that proof:

* a cast of date/datetime texts of the checked forms fails on a day that is not in its month
  (so a batch whose cast succeeds needs no day arithmetic), and succeeds on every real day;
* a float text of the checked form is finite (no ``is_finite`` pass over such a column);
* an ASCII data buffer is valid UTF-8 without Arrow's full validation.
"""

from __future__ import annotations

import calendar
import datetime as dt
import math

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zoopipe_hpc.validation._columnar import (
    _DATE_RE,
    _DATETIME_RE,
    _FLOAT_RE,
    _ZONED_RE,
    _cast_days,
    _real_day_mask,
)

YEARS = (1000, 1600, 1900, 1999, 2000, 2023, 2024, 2100, 2400, 2999)
SUFFIXES = ("", "Z", "+05:30", "-00:00")
TIMES = ("T00:00:00", " 23:59:59.5", "T12:30:00.123456")


def _texts(year: int, month: int, day: int) -> list[tuple[str, pa.DataType]]:
    date = f"{year:04d}-{month:02d}-{day:02d}"
    out: list[tuple[str, pa.DataType]] = [(date, pa.date32())]
    for time in TIMES:
        for suffix in SUFFIXES:
            to = pa.timestamp("us", tz="UTC") if suffix else pa.timestamp("us")
            out.append((date + time + suffix, to))
    return out


def _form(text: str, to: pa.DataType) -> str:
    if pa.types.is_date32(to):
        return _DATE_RE
    return _ZONED_RE if getattr(to, "tz", None) else _DATETIME_RE


@pytest.mark.parametrize("year", YEARS)
def test_the_cast_refuses_every_day_outside_its_month_and_takes_every_real_day(year: int) -> None:
    # Grouped by target type and checked form: one array per group for the form and for the
    # real days (a cast of an array succeeds only if every element casts), one cast per text
    # for the days that are not in their month (each must fail on its own).
    real: dict[tuple[pa.DataType, str], list[str]] = {}
    unreal: list[tuple[str, pa.DataType]] = []
    for month in range(1, 13):
        last = calendar.monthrange(year, month)[1]
        for day in range(1, 32):
            for text, to in _texts(year, month, day):
                if day <= last:
                    real.setdefault((to, _form(text, to)), []).append(text)
                else:
                    unreal.append((text, to))
    for (to, form), texts in real.items():
        assert pc.all(pc.match_substring_regex(pa.array(texts), form)).as_py(), form
        assert pa.array(texts).cast(to).null_count == 0  # every real day: cast
    for text, to in unreal:
        assert pc.match_substring_regex(pa.array([text]), _form(text, to))[0].as_py()
        with pytest.raises(pa.ArrowInvalid):
            pa.array([text]).cast(to)


def test_cast_days_narrows_to_real_days_when_one_is_not() -> None:
    text = pa.array(["2024-02-29", "2023-02-29", None, "2023-04-31", "2023-12-31", "bad"])
    form = pc.match_substring_regex(text, _DATE_RE)
    values, good = _cast_days(form, text, "2000-01-01", pa.date32())
    assert pc.fill_null(good, False).to_pylist() == [True, False, False, False, True, False]
    assert good.to_pylist() == _real_day_mask(text, form).to_pylist()
    assert good[2].as_py() is None
    assert values[0].as_py() == dt.date(2024, 2, 29)
    assert values[4].as_py() == dt.date(2023, 12, 31)
    assert values[2].as_py() is None  # a null stays null


@settings(max_examples=300)
@given(st.from_regex(_FLOAT_RE, fullmatch=True))
def test_a_float_text_of_the_checked_form_is_finite(text: str) -> None:
    value = pa.array([text]).cast(pa.float64())[0].as_py()
    assert math.isfinite(value)
    assert value == float(text)


def test_the_largest_float_text_of_the_checked_form_is_finite() -> None:
    text = "-" + "9" * 20 + "." + "9" * 20 + "e99"
    assert pc.match_substring_regex(pa.array([text]), _FLOAT_RE)[0].as_py()
    assert math.isfinite(pa.array([text]).cast(pa.float64())[0].as_py())


@given(st.lists(st.text(max_size=6), max_size=20))
def test_an_ascii_buffer_is_valid_utf8(values: list[str]) -> None:
    column = pa.array(values, pa.string())
    data = column.buffers()[2]
    if data is not None and data.to_pybytes().isascii():
        column.validate(full=True)
