"""Row validation with a pydantic model: valid rows out, invalid rows kept with their errors."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, ValidationError

from ._arrow import arrow_type_for

__all__: list[str] = []

Record = dict[str, Any]


@dataclass
class ValidationResult:
    """The outcome of one chunk: valid rows in order, and (index, errors) of the invalid ones."""

    valid: list[Record] = field(default_factory=list)
    invalid: list[tuple[int, list[dict[str, Any]]]] = field(default_factory=list)


def error_list(exc: ValidationError) -> list[dict[str, Any]]:
    """pydantic's error list in a JSON-safe form (type, loc, msg, input)."""
    errors: list[dict[str, Any]] = json.loads(exc.json(include_url=False, include_context=False))
    return errors


_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


def _int64_fields(model: type[BaseModel]) -> list[tuple[str, str]]:
    """(output key, field name) of the fields whose output column is a 64-bit integer."""
    found = []
    for name, info in model.model_fields.items():
        if pa.types.is_int64(arrow_type_for(info.annotation)):
            found.append((info.serialization_alias or name, name))
    return found


def _int64_errors(row: Record, fields: list[tuple[str, str]]) -> list[dict[str, Any]]:
    problems = []
    for key, name in fields:
        value = row.get(key)
        if isinstance(value, int) and not _INT64_MIN <= value <= _INT64_MAX:
            problems.append(
                {
                    "type": "int64_range",
                    "loc": [name],
                    "msg": "Input should fit in a signed 64-bit integer (the output column type)",
                    "input": value,
                }
            )
    return problems


class RowValidator:
    """Validates rows against ``model`` (or passes them through unchanged with no model).

    An integer pydantic accepts but no 64-bit column can hold (Python's ints are unbounded,
    Parquet's and Arrow's are not) makes its row invalid, with an ``int64_range`` error naming
    the field, rather than failing the whole output when it is written.
    """

    def __init__(self, model: type[BaseModel] | None) -> None:
        self.model = model
        if model is not None:
            self._validate = model.__pydantic_validator__.validate_python
            self._dump = model.__pydantic_serializer__.to_python
            self._int64 = _int64_fields(model)

    def __call__(self, rows: Sequence[Record], offset: int = 0) -> ValidationResult:
        result = ValidationResult()
        if self.model is None:
            result.valid = list(rows)
            return result
        validate = self._validate
        dump = self._dump
        valid = result.valid
        int64 = self._int64
        for index, row in enumerate(rows):
            try:
                clean = dump(validate(row), by_alias=True)
            except ValidationError as exc:
                result.invalid.append((offset + index, error_list(exc)))
                continue
            problems = _int64_errors(clean, int64) if int64 else None
            if problems:
                result.invalid.append((offset + index, problems))
            else:
                valid.append(clean)
        return result
