"""Which models the columnar fast path covers, and the plan of each field (private).

:func:`compile_model` reads a pydantic model once: its config, its decorators and every field
(annotation, aliases, constraints). It returns one :class:`FieldPlan` a field, or raises
:class:`NotCompiled` saying why the model is not covered. The checks run on a table from those
plans are in :mod:`._columnar`, whose docstring lists what is covered.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import re
import types
import typing
import uuid
from dataclasses import dataclass, field
from typing import Any

import annotated_types
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, RootModel, TypeAdapter

from ._arrow import arrow_type_for

__all__ = ["FieldPlan", "NotCompiled", "compile_model", "pattern_ok"]

#: Config keys that do not change what validation accepts or produces for the covered fields.
_HARMLESS_CONFIG = {
    "title",
    "frozen",
    "protected_namespaces",
    "json_schema_extra",
    "json_schema_mode_override",
    "hide_input_in_errors",
    "validate_assignment",
    "use_attribute_docstrings",
    "defer_build",
    "arbitrary_types_allowed",
    "plugin_settings",
}

#: Patterns both RE2 (pyarrow) and Rust's regex crate (pydantic) read the same way.
_PATTERN_TOKEN = re.compile(
    r"""
    \\[!-/:-@\[-`{-~]        # an escaped ASCII punctuation character
  | \[\^?\]?(?:[ !-Z\]^-~]|\\[!-/:-@\[-`{-~])*?\]   # a class of ASCII characters and ranges
  | \{[0-9]{1,3}(?:,[0-9]{0,3})?\}                  # a counted repetition
  | [ !-'*-Z^-z|~]           # a literal or metacharacter (not \ [ { } ( ))
  | \((?!\?)                 # a plain group (no (?...) extensions)
  | \)
    """,
    re.VERBOSE,
)


class NotCompiled(Exception):
    """Why a model (or a field) is not covered by the fast path."""


def pattern_ok(pattern: str) -> bool:
    if not pattern.isascii() or "[:" in pattern or "[[" in pattern:
        return False
    pos = 0
    while pos < len(pattern):
        m = _PATTERN_TOKEN.match(pattern, pos)
        if m is None or m.end() == pos:
            return False
        pos = m.end()
    try:
        pc.match_substring_regex(pa.array(["x"]), pattern)
        re.compile(pattern)
    except (pa.ArrowInvalid, re.error):
        return False
    return True


@dataclass
class FieldPlan:
    name: str  # the attribute
    key: str  # input key (the validation alias, or the name)
    out: str  # output key (as schema_for_model names it)
    kind: str  # int, float, str, bool, date, datetime, uuid, choice; pydantic (by_pydantic)
    optional: bool
    arrow_type: pa.DataType
    bounds: list[tuple[str, int | float]] = field(default_factory=list)
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    choices: pa.Array | None = None
    #: The field alone (annotation and constraints) over a list of values: validates a column
    #: in one call where the column checks cannot vouch for it (kind ``pydantic``, or a column
    #: whose type the kind does not cover).
    adapter: TypeAdapter[list[Any]] | None = None


#: Types whose values pydantic validates column by column (``by_pydantic``): scalars that are
#: written to a column of their own type, or as their ``str()`` to a text column.
_BY_PYDANTIC = (decimal.Decimal, uuid.UUID, dt.time, int, float, str, bool, dt.date, dt.datetime)


def _scalar(annotation: Any) -> bool:
    """True for a field type whose values the column-wide pydantic validation may vouch for."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        rest = [a for a in args if a is not type(None)]
        return len(rest) == 1 and len(args) == 2 and _scalar(rest[0])
    if origin is typing.Literal:
        return all(type(v) in (str, int, bool) for v in typing.get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return not issubclass(annotation, enum.Flag) and all(
            type(member.value) in (str, int) for member in annotation
        )
    return annotation in _BY_PYDANTIC


def _adapter(info: Any) -> TypeAdapter[list[Any]]:
    """A validator of a list of the field's values, with the field's constraints."""
    inner = info.annotation
    if info.metadata:
        inner = typing.Annotated[(inner, *info.metadata)]
    return TypeAdapter(list[inner])  # type: ignore[valid-type]


def _kind_of(annotation: Any) -> tuple[str, bool, pa.Array | None]:
    """(kind, optional, choices) of a field annotation, or NotCompiled."""
    optional = False
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1 or len(args) != 2:
            raise NotCompiled(f"union {annotation!r} is not covered")
        optional = True
        annotation = rest[0]
        origin = typing.get_origin(annotation)
    for kind, python in (
        ("int", int),
        ("float", float),
        ("str", str),
        ("bool", bool),
        ("date", dt.date),
        ("datetime", dt.datetime),
        ("uuid", uuid.UUID),
    ):
        if annotation is python:
            return kind, optional, None
    if origin is typing.Literal:
        values = typing.get_args(annotation)
        if values and all(type(v) is str for v in values):
            return "choice", optional, pa.array(sorted(set(values)), pa.string())
        raise NotCompiled(f"{annotation!r}: only Literal of strings is covered")
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        if issubclass(annotation, enum.Flag | int):
            raise NotCompiled(f"enum {annotation.__name__} is not covered (flag or int enum)")
        members = [member.value for member in annotation]
        if members and all(type(v) is str for v in members):
            return "choice", optional, pa.array(sorted(set(members)), pa.string())
        raise NotCompiled(f"enum {annotation.__name__}: only enums of string values are covered")
    raise NotCompiled(f"type {annotation!r} is not covered")


def _compile_field(model: type[BaseModel], name: str, info: Any) -> FieldPlan:
    if info.exclude:
        raise NotCompiled("excluded from the output")
    if info.discriminator is not None:
        raise NotCompiled("has a discriminator")
    key = name
    alias = info.alias
    validation_alias = info.validation_alias
    if validation_alias is not None:
        if not isinstance(validation_alias, str):
            raise NotCompiled("validation alias is not a plain string")
        key = validation_alias
    elif alias is not None:
        key = alias
    if alias is not None and validation_alias not in (None, alias):
        raise NotCompiled("alias and validation alias differ")
    for meta in info.metadata:
        module = type(meta).__module__
        if module.startswith("pydantic.functional") or not (
            module == "annotated_types" or module.startswith("pydantic.")
        ):
            raise NotCompiled(f"annotation {meta!r} may run code")
    adapter = _adapter(info)
    try:
        plan = _native(name, key, info)
    except NotCompiled:
        if not _scalar(info.annotation):
            raise
        # Not covered by the column checks: pydantic validates the column (see by_pydantic).
        plan = FieldPlan(
            name=name,
            key=key,
            out=info.serialization_alias or name,
            kind="pydantic",
            optional=False,
            arrow_type=arrow_type_for(info.annotation),
        )
    plan.adapter = adapter
    return plan


def _native(name: str, key: str, info: Any) -> FieldPlan:
    """The plan of a field the column checks cover, or NotCompiled."""
    kind, optional, choices = _kind_of(info.annotation)
    plan = FieldPlan(
        name=name,
        key=key,
        out=info.serialization_alias or name,
        kind=kind,
        optional=optional,
        arrow_type=arrow_type_for(info.annotation),
        choices=choices,
    )
    for meta in info.metadata:
        if isinstance(
            meta, annotated_types.Ge | annotated_types.Gt | annotated_types.Le | annotated_types.Lt
        ):
            op = type(meta).__name__.lower()
            bound = getattr(meta, op)
            if kind == "int" and type(bound) is int and abs(bound) < 2**63:
                plan.bounds.append((op, bound))
            elif kind == "float" and type(bound) in (int, float) and abs(bound) < 2**53:
                plan.bounds.append((op, float(bound)))
            else:
                raise NotCompiled(f"bound {meta!r} on a {kind} field is not covered")
        elif isinstance(meta, annotated_types.MinLen | annotated_types.MaxLen) and kind == "str":
            if isinstance(meta, annotated_types.MinLen):
                plan.min_length = meta.min_length
            else:
                plan.max_length = meta.max_length
        elif type(meta).__name__ == "_PydanticGeneralMetadata" and kind == "str":
            attrs = dict(vars(meta))
            pattern = attrs.pop("pattern", None)
            if attrs or not isinstance(pattern, str):
                raise NotCompiled(f"constraint {meta!r} is not covered")
            if not pattern_ok(pattern):
                raise NotCompiled(f"pattern {pattern!r} may not read the same in RE2 and Rust")
            plan.pattern = pattern
        else:
            raise NotCompiled(f"constraint or annotation {meta!r} is not covered")
    return plan


def compile_model(model: type[BaseModel]) -> list[FieldPlan]:
    if issubclass(model, RootModel):
        raise NotCompiled("root models are not covered")
    config = dict(model.model_config)
    for key, value in config.items():
        if key == "extra" and value in (None, "ignore"):
            continue
        if key == "regex_engine" and value == "rust-regex":
            continue
        if key not in _HARMLESS_CONFIG:
            raise NotCompiled(f"model_config sets {key}={value!r}")
    decorators = model.__pydantic_decorators__
    for kind in (
        "validators",
        "field_validators",
        "root_validators",
        "field_serializers",
        "model_serializers",
        "model_validators",
        "computed_fields",
    ):
        if getattr(decorators, kind, None):
            raise NotCompiled(f"the model has {kind.replace('_', ' ')}")
    for cls in model.__mro__:
        if cls is BaseModel:
            break
        if "model_post_init" in cls.__dict__:
            raise NotCompiled("the model defines model_post_init")
    if not model.model_fields:
        raise NotCompiled("the model has no fields")
    plans = []
    for name, info in model.model_fields.items():
        try:
            plans.append(_compile_field(model, name, info))
        except NotCompiled as exc:
            raise NotCompiled(f"field {name!r}: {exc}") from None
    return plans
