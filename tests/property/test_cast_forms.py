"""The proof of the fast path's cast-first checks: what pyarrow's cast accepts, pydantic accepts
with the same value.

A text column of an ``int``, ``float``, ``date`` or (all ending in ``Z``) zoned ``datetime``
field is first cast as it is (``_cast_whole``, ``_zulu_instants``); only a batch where that
fails is matched against the checked forms. That skips a pattern match a value, and it is
right only if every batch the cast takes holds only texts pydantic reads as the same value.
These properties draw batches of near-miss texts (signs, hex prefixes, underscores, spaces,
exponents, ``inf``/``nan``, short and long datetimes, lowercase ``t``/``z``, years 0 to 9999)
and check that fact for every batch the fast path's cast accepts.
"""

from __future__ import annotations

import datetime as dt
import math
import struct

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from zoopipe_hpc.validation._columnar import (
    _DAYS,
    _INT_REFUSED,
    _cast_whole,
    _within,
    _zulu_instants,
)

_INT = TypeAdapter(int)
_FLOAT = TypeAdapter(float)
_DATE = TypeAdapter(dt.date)
_DATETIME = TypeAdapter(dt.datetime)


def _near(alphabet: str, *forms: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Texts of ``forms``, random texts of ``alphabet``, and forms with one character changed."""
    form = st.one_of(*forms)
    edited = st.tuples(form, st.integers(0, 40), st.sampled_from(alphabet), st.booleans()).map(
        lambda t: t[0][: t[1]] + t[2] + t[0][t[1] + (1 if t[3] else 0) :]
    )
    return st.one_of(form, edited, st.text(alphabet, max_size=12))


_INTS = _near(
    "0123456789+-xXbBoO_ .eEaf",
    st.integers(-(2**64), 2**64).map(str),
    st.integers(0, 999).map(lambda i: f"{i:05d}"),
    st.integers(0, 999).map(lambda i: f"-0{i}"),
)
_FLOATS = _near(
    "0123456789+-.eE_ ,xpinfatyINFATY",
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(allow_nan=False).map(lambda f: f"{f:.17e}"),
    st.tuples(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(-400, 400)).map(
        lambda t: f"{t[0]}.{t[1]}e{t[2]}"
    ),
    st.tuples(st.integers(0, 999), st.integers(0, 999)).map(lambda t: f"{t[0]:03d}.{t[1]}"),
)
_DATES = _near(
    "0123456789-T :Z/",
    st.tuples(st.integers(0, 9999), st.integers(0, 13), st.integers(0, 32)).map(
        lambda t: f"{t[0]:04d}-{t[1]:02d}-{t[2]:02d}"
    ),
)


@st.composite
def _zulu_text(draw: st.DrawFn) -> str:
    year, month, day = (
        draw(st.integers(0, 9999)),
        draw(st.integers(0, 13)),
        draw(st.integers(0, 32)),
    )
    hour, minute, second = (
        draw(st.integers(0, 25)),
        draw(st.integers(0, 60)),
        draw(st.integers(0, 61)),
    )
    text = f"{year:04d}-{month:02d}-{day:02d}" + draw(st.sampled_from("T t_"))
    parts = [f"{hour:02d}", f"{minute:02d}", f"{second:02d}"][: draw(st.integers(1, 3))]
    text += ":".join(parts)
    digits = draw(st.integers(0, 9))
    if digits or draw(st.booleans()):
        text += draw(st.sampled_from(".,")) + "".join(
            draw(st.sampled_from("0123456789")) for _ in range(digits)
        )
    return text + draw(st.sampled_from(["Z", "Z", "Z", "z", "+00:00Z", "+0000Z"]))


_ZULUS = _near("0123456789-T :Z+.,", _zulu_text())


def _accepted(adapter: TypeAdapter[object], text: str) -> object:
    try:
        return adapter.validate_python(text)
    except ValidationError as exc:
        raise AssertionError(f"pyarrow's cast took {text!r}, pydantic refuses it") from exc


@given(st.lists(_INTS, min_size=1, max_size=4))
def test_every_int_text_the_cast_takes_is_pydantic_s_same_int(texts: list[str]) -> None:
    cast = _cast_whole(pa.array(texts, pa.string()), pa.int64(), _INT_REFUSED)
    if cast is None:
        return
    for text, value in zip(texts, cast.to_pylist(), strict=True):
        assert _accepted(_INT, text) == value, text


def _bits(value: float) -> bytes:
    return struct.pack("<d", value)


@given(st.lists(_FLOATS, min_size=1, max_size=4))
def test_every_finite_float_text_the_cast_takes_is_pydantic_s_same_double(texts: list[str]) -> None:
    cast = _cast_whole(pa.array(texts, pa.string()), pa.float64(), b"")
    if cast is None:
        return
    for text, value in zip(texts, cast.to_pylist(), strict=True):
        if not math.isfinite(value):
            continue  # not vouched for: is_finite is checked after the cast
        theirs = _accepted(_FLOAT, text)
        assert isinstance(theirs, float) and _bits(theirs) == _bits(value), text


@given(st.lists(_DATES, min_size=1, max_size=4))
def test_every_date_text_the_cast_takes_is_pydantic_s_same_day(texts: list[str]) -> None:
    cast = _cast_whole(pa.array(texts, pa.string()), pa.date32(), b"")
    if cast is None or not _within(cast, _DAYS):
        return
    for text, value in zip(texts, cast.to_pylist(), strict=True):
        assert _accepted(_DATE, text) == value, text


@given(st.lists(_ZULUS, min_size=1, max_size=4))
def test_every_zulu_text_the_cast_takes_is_pydantic_s_same_instant_in_utc(texts: list[str]) -> None:
    if not all(t.endswith("Z") for t in texts):
        return  # the cast is tried only when every text ends in Z
    instants = _zulu_instants(pa.array(texts, pa.string()))
    if instants is None:
        return
    for text, value in zip(texts, instants.to_pylist(), strict=True):
        theirs = _accepted(_DATETIME, text)
        assert isinstance(theirs, dt.datetime), text
        assert theirs.utcoffset() == dt.timedelta(0), text
        assert theirs == value, text


def test_the_forms_that_need_a_guard_are_refused() -> None:
    # pyarrow reads these, pydantic does not: the refused bytes and the lengths keep them out.
    assert pa.array(["0x10"]).cast(pa.int64()).to_pylist() == [16]
    assert _cast_whole(pa.array(["0x10"]), pa.int64(), _INT_REFUSED) is None
    assert pa.array(["2024-01-01T10Z"]).cast(pa.timestamp("us", tz="UTC")).null_count == 0
    assert _zulu_instants(pa.array(["2024-01-01T10Z"])) is None
    assert _zulu_instants(pa.array(["2024-01-01T10:00Z"])) is None
