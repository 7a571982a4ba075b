"""The columnar fast path: a pydantic model compiled to pyarrow compute, column by column.

:meth:`ColumnarValidator.compile` looks at a model once and, when every field is of a kind it
covers, returns a validator that takes a whole input table and says, row by row, whether it can
*vouch* for the row: that pydantic would accept it and produce exactly the values computed here.
Rows it cannot vouch for (a value outside the conservative forms below, a null where one is not
allowed, a column of a type it does not cover) go through pydantic one by one, so results are
identical by construction; the fast path never produces an error record itself.

What is covered (anything else: the model is not compiled, and a debug log says why):

* ``int``: text matching ``^(0|-?[1-9][0-9]{0,17})$``; integer columns (signed, or unsigned up
  to 32 bits). Constraints ``ge``, ``gt``, ``le``, ``lt`` with integer bounds.
* ``float``: text matching a plain decimal form (no leading zeros, no ``+``, no whitespace, no
  ``inf``/``nan``), finite; floating point columns, finite values. ``ge``/``gt``/``le``/``lt``.
* ``str``: text columns; ``min_length``/``max_length`` (characters) and ``pattern`` when the
  pattern uses only a syntax RE2 and Rust's regex crate read the same way (ASCII literals,
  classes of ASCII ranges, ``.``, anchors, groups, alternation, quantifiers, escaped punctuation).
* ``bool``: the spellings pydantic accepts, in lower, upper or title case; boolean columns.
* ``date``: ``YYYY-MM-DD`` (years 1000-2999) that is a real day; date32 columns.
* ``datetime``: naive ``YYYY-MM-DD[T ]HH:MM:SS[.f{1,6}]``; naive timestamp columns in s/ms/us.
* enums whose values are all strings, and ``Literal`` of strings: membership of text values.
* ``Optional[X]`` of the above: nulls (from typed inputs) become None; an empty CSV string is
  *not* None, exactly as for pydantic.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
import os
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any

import annotated_types
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, RootModel

from ._arrow import arrow_type_for, schema_for_model

__all__ = ["ColumnarValidator", "columnar_enabled"]

log = logging.getLogger(__name__)

ENV_VAR = "ZOOPIPE_HPC_COLUMNAR"

_INT_RE = r"^(0|-?[1-9][0-9]{0,17})$"
_FLOAT_RE = r"^-?(0|[1-9][0-9]{0,19})(\.[0-9]{1,20})?([eE]-?[0-9]{1,2})?$"
_DATE_RE = r"^[12][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"
_DATETIME_RE = (
    r"^[12][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"[T ]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?$"
)
_TRUE = ("1", "on", "t", "true", "y", "yes")
_FALSE = ("0", "off", "f", "false", "n", "no")


def _spellings(words: tuple[str, ...]) -> pa.Array:
    return pa.array(sorted({form for w in words for form in (w, w.upper(), w.title())}))


_TRUE_SET = _spellings(_TRUE)
_FALSE_SET = _spellings(_FALSE)

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


def columnar_enabled() -> bool:
    """False when ``ZOOPIPE_HPC_COLUMNAR`` is set to ``0``, ``false``, ``no`` or ``off``."""
    return os.environ.get(ENV_VAR, "1").strip().lower() not in ("0", "false", "no", "off")


class NotCompiled(Exception):
    """Why a model (or a field) is not covered by the fast path."""


def _pattern_ok(pattern: str) -> bool:
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
class _Field:
    name: str  # the attribute
    key: str  # input key (the validation alias, or the name)
    out: str  # output key (as schema_for_model names it)
    kind: str  # int, float, str, bool, date, datetime, choice
    optional: bool
    arrow_type: pa.DataType
    bounds: list[tuple[str, int | float]] = field(default_factory=list)
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    choices: pa.Array | None = None


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


def _compile_field(model: type[BaseModel], name: str, info: Any) -> _Field:
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
    kind, optional, choices = _kind_of(info.annotation)
    plan = _Field(
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
            if not _pattern_ok(pattern):
                raise NotCompiled(f"pattern {pattern!r} may not read the same in RE2 and Rust")
            plan.pattern = pattern
        else:
            raise NotCompiled(f"constraint or annotation {meta!r} is not covered")
    return plan


def _compile(model: type[BaseModel]) -> list[_Field]:
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


def _false(n: int) -> pa.Array:
    return pc.is_valid(pa.nulls(n))


def _fill(mask: Any) -> Any:
    return pc.fill_null(mask, False)


class ColumnarValidator:
    """A model compiled to column checks; :meth:`__call__` splits a table into vouched rows."""

    def __init__(self, model: type[BaseModel], fields: list[_Field]) -> None:
        self.model = model
        self.fields = fields
        self.schema = schema_for_model(model)

    @classmethod
    def compile(cls, model: type[BaseModel]) -> ColumnarValidator | None:
        """The fast path for ``model``, or None (logged at debug level) when it is not covered."""
        try:
            fields = _compile(model)
        except NotCompiled as exc:
            log.debug("columnar fast path off for %s: %s", model.__qualname__, exc)
            return None
        validator = cls(model, fields)
        if [f.out for f in fields] != validator.schema.names or any(
            f.arrow_type != t for f, t in zip(fields, validator.schema.types, strict=True)
        ):
            log.debug("columnar fast path off for %s: schema mismatch", model.__qualname__)
            return None
        return validator

    def __call__(self, table: pa.Table) -> tuple[pa.Table, pa.Array]:
        """(the vouched rows, converted, in order; a boolean mask of them over ``table``)."""
        n = table.num_rows
        ok: Any = None
        columns = []
        for plan in self.fields:
            indexes = table.schema.get_all_field_indices(plan.key)
            if len(indexes) != 1:
                return self.schema.empty_table(), _false(n)
            column = table.column(indexes[0])
            column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
            try:
                converted = self._field(plan, column)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                # pyarrow cannot convert this column at all: pydantic validates the whole
                # batch row by row, so the outcome is the row path's.
                log.debug("column %r left to pydantic: %s", plan.key, exc)
                return self.schema.empty_table(), _false(n)
            if converted is None:
                return self.schema.empty_table(), _false(n)
            values, good = converted
            ok = good if ok is None else pc.and_(ok, good)
            columns.append(values)
        accepted = pa.Table.from_arrays(columns, schema=self.schema)
        if ok is not None and not pc.all(ok).as_py():
            accepted = accepted.filter(ok)
        return accepted, ok

    # -- one column ---------------------------------------------------------------------------

    def _field(self, plan: _Field, column: pa.Array) -> tuple[pa.Array, pa.Array] | None:
        """(values of the output type, a mask without nulls of the values vouched for)."""
        typ = column.type
        if pa.types.is_large_string(typ) or pa.types.is_string_view(typ):
            column = column.cast(pa.string())
            typ = column.type
        text = pa.types.is_string(typ)
        kind = plan.kind
        if kind == "int":
            if text:
                good = _fill(pc.match_substring_regex(column, _INT_RE))
                values = _cast_where(good, column, "0", pa.int64())
            elif pa.types.is_signed_integer(typ) or (
                pa.types.is_unsigned_integer(typ) and typ.bit_width <= 32
            ):
                values = column.cast(pa.int64())
                good = pc.is_valid(values)
            else:
                return None
        elif kind == "float":
            if text:
                good = _fill(pc.match_substring_regex(column, _FLOAT_RE))
                values = _cast_where(good, column, "0", pa.float64())
            elif pa.types.is_floating(typ):
                values = column.cast(pa.float64())
                good = pc.is_valid(values)
            else:
                return None
            good = pc.and_(good, _fill(pc.is_finite(values)))
        elif kind in ("str", "choice"):
            if not text:
                return None
            values = column
            good = pc.is_valid(values)
            if plan.choices is not None:
                good = pc.and_(good, pc.is_in(values, value_set=plan.choices))
            if plan.min_length is not None or plan.max_length is not None:
                length = pc.utf8_length(values)
                if plan.min_length is not None:
                    good = pc.and_(good, _fill(pc.greater_equal(length, plan.min_length)))
                if plan.max_length is not None:
                    good = pc.and_(good, _fill(pc.less_equal(length, plan.max_length)))
            if plan.pattern is not None:
                good = pc.and_(good, _fill(pc.match_substring_regex(values, plan.pattern)))
        elif kind == "bool":
            if text:
                true = pc.is_in(column, value_set=_TRUE_SET)
                good = pc.or_(true, pc.is_in(column, value_set=_FALSE_SET))
                values = true
            elif pa.types.is_boolean(typ):
                values = column
                good = pc.is_valid(values)
            else:
                return None
        elif kind == "date":
            if text:
                good = _fill(pc.match_substring_regex(column, _DATE_RE))
                good, stamps = _real_days(column, good)
                values = stamps.cast(pa.date32())
            elif pa.types.is_date32(typ):
                values = column
                good = pc.is_valid(values)
            else:
                return None
        elif kind == "datetime":
            if text:
                good = _fill(pc.match_substring_regex(column, _DATETIME_RE))
                good, _ = _real_days(pc.utf8_slice_codeunits(column, 0, 10), good)
                values = _cast_where(good, column, "2000-01-01 00:00:00", pa.timestamp("us"))
            elif pa.types.is_timestamp(typ) and typ.tz is None and typ.unit in ("s", "ms", "us"):
                values = column.cast(pa.timestamp("us"))
                good = pc.is_valid(values)
            else:
                return None
        else:  # pragma: no cover - every kind is handled above
            return None
        for op, bound in plan.bounds:
            compare = {
                "ge": pc.greater_equal,
                "gt": pc.greater,
                "le": pc.less_equal,
                "lt": pc.less,
            }[op]
            good = pc.and_(good, _fill(compare(values, pa.scalar(bound, values.type))))
        if plan.optional and column.null_count:
            # A null input is None for pydantic; constraints do not apply to it.
            good = pc.or_(good, pc.is_null(column))
            values = pc.if_else(pc.is_null(column), pa.scalar(None, values.type), values)
        if values.type != plan.arrow_type:
            return None
        return values, good


def _cast_where(good: pa.Array, text: pa.Array, dummy: str, to: pa.DataType) -> pa.Array:
    """``text`` cast to ``to`` where ``good``; a value that casts elsewhere (then unused)."""
    if not pc.all(good).as_py():
        text = pc.if_else(good, text, dummy)
    return text.cast(to)


def _real_days(text: pa.Array, good: pa.Array) -> tuple[pa.Array, pa.Array]:
    """``good`` narrowed to the ``YYYY-MM-DD`` texts that are real days, and their timestamps."""
    candidates = pc.if_else(good, text, "2000-01-01")
    stamps = pc.strptime(candidates, format="%Y-%m-%d", unit="s", error_is_null=True)
    same = _fill(pc.equal(pc.strftime(stamps, format="%Y-%m-%d"), candidates))
    return pc.and_(good, same), pc.if_else(same, stamps, pa.scalar(0, pa.timestamp("s")))
