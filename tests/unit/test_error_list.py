"""``error_list`` gives exactly pydantic's JSON of the errors read back, with or without the
shortcut it takes for plain inputs."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field, ValidationError

from zoopipe_hpc.validation._rows import error_list


class Row(BaseModel):
    n: int
    price: float = Field(ge=0)
    day: dt.date
    name: str = Field(max_length=3)
    flag: bool
    tags: list[int] = []


_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.sampled_from(["x1", "NA", "1.5", "-1", "2024-02-30", "é", "\ud800", "true", "maybe"]),
    st.binary(max_size=4),
    st.lists(st.one_of(st.integers(), st.text(max_size=2)), max_size=3),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)


def _reference(exc: ValidationError) -> list[dict[str, Any]]:
    errors: list[dict[str, Any]] = json.loads(exc.json(include_url=False, include_context=False))
    return errors


@settings(max_examples=400)
@given(st.dictionaries(st.sampled_from(list(Row.model_fields)), _VALUES, max_size=6))
def test_error_list_is_pydantic_s_json_read_back(row: dict[str, Any]) -> None:
    try:
        Row.model_validate(row)
    except ValidationError as exc:
        try:
            expected = _reference(exc)
        except ValueError:  # pydantic cannot write the input (bytes that are not UTF-8)
            with pytest.raises(ValueError):
                error_list(exc)
            return
        ours = error_list(exc)
        assert ours == expected
        assert json.dumps(ours) == json.dumps(expected)  # same types, same key order
        assert all(type(e["loc"]) is list for e in ours)


def test_error_list_of_a_csv_like_row_is_taken_without_json() -> None:
    row = {"n": "x1", "price": "-1", "day": "2024-02-30", "name": "abcd", "flag": "maybe"}
    try:
        Row.model_validate(row)
    except ValidationError as exc:
        ours = error_list(exc)
        assert ours == _reference(exc)
        assert [e["loc"] for e in ours] == [["n"], ["price"], ["day"], ["name"], ["flag"]]
    else:
        raise AssertionError("the row should be invalid")
