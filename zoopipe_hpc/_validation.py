"""Row validation with a pydantic model: valid rows out, invalid rows kept with their errors."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

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


class RowValidator:
    """Validates rows against ``model`` (or passes them through unchanged with no model)."""

    def __init__(self, model: type[BaseModel] | None) -> None:
        self.model = model
        if model is not None:
            self._validate = model.__pydantic_validator__.validate_python
            self._dump = model.__pydantic_serializer__.to_python

    def __call__(self, rows: Sequence[Record], offset: int = 0) -> ValidationResult:
        result = ValidationResult()
        if self.model is None:
            result.valid = list(rows)
            return result
        validate = self._validate
        dump = self._dump
        valid = result.valid
        for index, row in enumerate(rows):
            try:
                valid.append(dump(validate(row), by_alias=True))
            except ValidationError as exc:
                result.invalid.append((offset + index, error_list(exc)))
        return result
