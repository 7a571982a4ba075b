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

from zoopipe_hpc.validation._rows import RowValidator, error_list


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


def _one_by_one(rows: list[dict[str, Any]]) -> tuple[list[Any], list[Any]]:
    valid, invalid = [], []
    for index, row in enumerate(rows):
        result = RowValidator(Row)([row])  # one row: never the list's validation
        valid.extend(result.valid)
        invalid.extend((index, errors) for _, errors in result.invalid)
    return valid, invalid


_ROWS = st.lists(
    st.dictionaries(st.sampled_from(list(Row.model_fields)), _VALUES, max_size=6)
    | st.just({"n": "1", "price": "2.5", "day": "2024-01-31", "name": "ab", "flag": "yes"}),
    min_size=2,
    max_size=12,
)


@settings(max_examples=300)
@given(_ROWS)
def test_mostly_invalid_rows_found_by_one_list_validation_are_those_of_rows_one_by_one(
    rows: list[dict[str, Any]],
) -> None:
    try:
        expected = _one_by_one(rows)
    except ValueError:  # an input pydantic cannot write as JSON: not this property's matter
        return
    validator = RowValidator(Row)
    validator._mostly_invalid = True  # as after a call where most rows were invalid
    result = validator(rows)
    assert (result.valid, result.invalid) == expected
    assert json.dumps(result.invalid, default=repr) == json.dumps(expected[1], default=repr)


def test_the_list_validation_is_taken_after_a_mostly_invalid_call_only() -> None:
    bad = [{"n": "x"}] * 5
    good = {"n": "1", "price": "2.5", "day": "2024-01-31", "name": "ab", "flag": "yes"}
    validator = RowValidator(Row)
    assert validator._list_ok
    assert not validator._mostly_invalid
    first = validator([*bad, good])
    assert validator._mostly_invalid
    assert validator([*bad, good]).invalid == first.invalid
    validator([good, good, good, bad[0]])
    assert not validator._mostly_invalid


def test_a_model_with_a_validator_of_its_own_is_validated_row_by_row() -> None:
    from pydantic import field_validator

    class Counted(BaseModel):
        n: int

        @field_validator("n")
        @classmethod
        def _count(cls, value: int) -> int:
            return value

    assert not RowValidator(Counted)._list_ok
    assert RowValidator(Row)._list_ok
