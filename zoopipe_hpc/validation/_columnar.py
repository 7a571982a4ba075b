"""The columnar fast path: a pydantic model compiled to pyarrow compute, column by column.

:meth:`ColumnarValidator.compile` looks at a model once and, when every field is of a kind it
covers, returns a validator that takes a whole input table and says, row by row, whether it can
*vouch* for the row: that pydantic would accept it and produce exactly the values computed here.
Rows it cannot vouch for (a value outside the conservative forms below, a null where one is not
allowed, a column of a type it does not cover) go through pydantic one by one, so results are
identical by construction; the fast path never produces an error record itself. Reading the
model into one plan a field is in ``_columnar_plan``; this module runs the plans on a table.

What is covered (anything else: the model is not compiled, and a debug log says why):

* ``int``: text matching ``^(0|-?[1-9][0-9]{0,17})$``; integer columns (signed, or unsigned up
  to 32 bits). Constraints ``ge``, ``gt``, ``le``, ``lt`` with integer bounds.
* ``float``: text matching a plain decimal form (no leading zeros, no ``+``, no whitespace, no
  ``inf``/``nan``), finite; floating point columns, finite values. ``ge``/``gt``/``le``/``lt``.
* ``str``: text columns; ``min_length``/``max_length`` (characters) and ``pattern`` when the
  pattern uses only a syntax RE2 and Rust's regex crate read the same way (ASCII literals,
  classes of ASCII ranges, ``.``, anchors, groups, alternation, quantifiers, escaped punctuation).
* ``bool``: the spellings pydantic accepts, in any case; boolean columns.
* ``date``: ``YYYY-MM-DD`` (years 1000-2999) that is a real day; date32 columns.
* ``datetime``: ``YYYY-MM-DD[T ]HH:MM:SS[.f{1,6}]``, naive or ending in ``Z`` or ``+HH:MM``
  (rows in another zone than most of the batch go to pydantic: one zone a column, see
  ``_datetimes``); naive timestamp columns in s/ms/us.
* ``UUID``: the hyphenated hex form, in any case (written in lowercase, as ``str(UUID)``).
* enums whose values are all strings, and ``Literal`` of strings: membership of text values.
* a text batch of ``int``, ``float`` or ``date`` values (or ``datetime`` values that all end
  in ``Z``) that pyarrow's cast reads whole is vouched for as cast, without the pattern match
  (``0x`` texts, infinities, NaN, years outside 1000-2999 and datetimes shorter than
  ``YYYY-MM-DDTHH:MM:SSZ`` aside): every text that cast reads, pydantic reads as the same
  value (``tests/property/test_cast_forms.py``). So ``007``, ``+1.5`` or ``.5`` are vouched
  for in such a batch, and go to pydantic in a batch holding a text that does not cast.
* ``Optional[X]`` of the above: nulls (from typed inputs) become None; an empty CSV string is
  *not* None, exactly as for pydantic.
* other scalar fields (``Decimal``, ``UUID``, ``time``, ints in ``Literal`` or enums, constraints
  the checks do not read), and columns of a type their kind does not cover: pydantic validates
  the column alone (:func:`by_pydantic`); only the rows it rejects go to pydantic whole.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import logging
import os
import uuid
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ValidationError

from ._arrow import _column, _data_buffer, schema_for_model
from ._columnar_plan import FieldPlan, NotCompiled, compile_model

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
_UUID_RE = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
#: A time zone pydantic reads as a fixed offset: ``Z`` or ``+HH:MM`` / ``-HH:MM``.
_ZONED_RE = _DATETIME_RE[:-1] + r"(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
_TRUE = ("1", "on", "t", "true", "y", "yes")
_FALSE = ("0", "off", "f", "false", "n", "no")


#: pydantic reads these words in any case (``tRuE``); no other letter lowercases into them.
_TRUE_SET = pa.array(_TRUE)
_FALSE_SET = pa.array(_FALSE)


def columnar_enabled() -> bool:
    """False when ``ZOOPIPE_HPC_COLUMNAR`` is set to ``0``, ``false``, ``no`` or ``off``."""
    return os.environ.get(ENV_VAR, "1").strip().lower() not in ("0", "false", "no", "off")


def _false(n: int) -> pa.Array:
    return pc.is_valid(pa.nulls(n))


def _fill(mask: Any) -> Any:
    return pc.fill_null(mask, False)


class ColumnarValidator:
    """A model compiled to column checks; :meth:`__call__` splits a table into vouched rows."""

    def __init__(self, model: type[BaseModel], fields: list[FieldPlan]) -> None:
        self.model = model
        self.fields = fields
        self.schema = schema_for_model(model)

    @classmethod
    def compile(cls, model: type[BaseModel]) -> ColumnarValidator | None:
        """The fast path for ``model``, or None (logged at debug level) when it is not covered."""
        try:
            fields = compile_model(model)
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
            converted = None
            if plan.kind != "pydantic":
                try:
                    converted = self._field(plan, column)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    log.debug("column %r: %s", plan.key, exc)
            if converted is None:
                # A column the checks do not cover: pydantic validates it alone, and only the
                # rows it cannot vouch for go to pydantic whole.
                converted = by_pydantic(plan, column)
            values, good = converted
            if good is not None:  # None: every row of the column is vouched for
                ok = good if ok is None else pc.and_(ok, good)
            columns.append(values)
        accepted = pa.Table.from_arrays(columns, names=self.schema.names)
        if ok is None:
            return accepted, _true(n)
        if not pc.all(ok).as_py():
            accepted = accepted.filter(ok)
        return accepted, ok

    # -- one column ---------------------------------------------------------------------------

    def _field(self, plan: FieldPlan, column: pa.Array) -> tuple[pa.Array, pa.Array | None] | None:
        """(values of the output type, a mask without nulls of the values vouched for, or None
        when every value is: no mask is built or combined for such a column).

        The checks leave nulls in the mask where the input is null, and they are settled once
        at the end: None for an ``Optional`` field, not vouched for otherwise.
        """
        typ = column.type
        if pa.types.is_large_string(typ) or pa.types.is_string_view(typ):
            column = column.cast(pa.string())
            typ = column.type
        text = pa.types.is_string(typ)
        kind = plan.kind
        if kind == "int":
            if text:
                cast = _cast_whole(column, pa.int64(), _INT_REFUSED)
                if cast is not None:
                    values, good = cast, None
                else:
                    good = pc.match_substring_regex(column, _INT_RE)
                    values = _cast_where(good, column, "0", pa.int64())
            elif pa.types.is_signed_integer(typ) or (
                pa.types.is_unsigned_integer(typ) and typ.bit_width <= 32
            ):
                values = column.cast(pa.int64())
                good = None
            else:
                return None
        elif kind == "float":
            if text:
                cast = _cast_whole(column, pa.float64(), b"")
                if cast is not None:
                    values, good = cast, pc.is_finite(cast)
                else:
                    # A text of this form is a finite number (at most 20 integer digits and
                    # an exponent of two digits): no check of the values is needed.
                    good = pc.match_substring_regex(column, _FLOAT_RE)
                    values = _cast_where(good, column, "0", pa.float64())
            elif pa.types.is_floating(typ):
                values = column.cast(pa.float64())
                good = pc.is_finite(values)
            else:
                return None
        elif kind in ("str", "choice"):
            if not text:
                return None
            values = column
            good = None
            if plan.choices is not None:
                good = pc.is_in(values, value_set=plan.choices)
            if plan.min_length is not None or plan.max_length is not None:
                length = pc.utf8_length(values)
                if plan.min_length is not None:
                    good = _and(good, pc.greater_equal(length, plan.min_length))
                if plan.max_length is not None:
                    good = _and(good, pc.less_equal(length, plan.max_length))
            if plan.pattern is not None:
                good = _and(good, pc.match_substring_regex(values, plan.pattern))
        elif kind == "uuid":
            # The hyphenated form, in any case: pydantic's value prints as its lowercase.
            if not text:
                return None
            good = pc.match_substring_regex(column, _UUID_RE)
            values = pc.ascii_lower(column)
        elif kind == "bool":
            if text:
                lower = pc.ascii_lower(column)
                true = pc.is_in(lower, value_set=_TRUE_SET, skip_nulls=True)
                good = pc.or_(true, pc.is_in(lower, value_set=_FALSE_SET, skip_nulls=True))
                values = true
            elif pa.types.is_boolean(typ):
                values = column
                good = None
            else:
                return None
        elif kind == "date":
            if text:
                cast = _cast_whole(column, pa.date32(), b"")
                if cast is not None and _within(cast, _DAYS):
                    values, good = cast, None
                else:
                    good = pc.match_substring_regex(column, _DATE_RE)
                    values, good = _cast_days(good, column, "2000-01-01", pa.date32())
            elif pa.types.is_date32(typ):
                values = column
                good = None
            else:
                return None
        elif kind == "datetime":
            if text:
                values, good = _datetimes(column)
            elif pa.types.is_timestamp(typ) and typ.tz is None and typ.unit in ("s", "ms", "us"):
                values = column.cast(pa.timestamp("us"))
                good = None
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
            good = _and(good, compare(values, pa.scalar(bound, values.type)))
        if values.type != plan.arrow_type and not (
            kind == "datetime" and values.type.equals(pa.timestamp("us", tz=values.type.tz))
        ):
            return None
        if not column.null_count:
            return values, None if good is None else _fill(good)
        # A null input is None for pydantic (constraints do not apply to it), for an Optional
        # field; else the row goes to pydantic.
        if not plan.optional:
            valid = pc.is_valid(column)
            return values, valid if good is None else pc.and_(_fill(good), valid)
        if good is None and values.null_count == column.null_count:
            return values, None
        null = pc.is_null(column)
        # The values of every kind are null where the input is (a cast, a text column itself)
        # or nowhere (a bool's ``is_in``): the same count of nulls means the same places.
        if values.null_count != column.null_count:
            values = pc.if_else(null, pa.scalar(None, values.type), values)
        return values, None if good is None else pc.or_(_fill(good), null)


def _true(n: int) -> pa.Array:
    return pc.is_null(pa.nulls(n))


def _and(good: pa.Array | None, more: pa.Array) -> pa.Array:
    """``more`` narrowed by ``good`` (None: every value is good)."""
    return more if good is None else pc.and_(good, more)


#: Bytes that let pyarrow's cast of a text to an integer read a form pydantic refuses
#: (``0x10`` is 16 to pyarrow).
_INT_REFUSED = b"xX"


def _cast_whole(text: pa.Array, to: pa.DataType, refused: bytes) -> pa.Array | None:
    """``text`` cast to ``to`` as it is, or None when the cast fails or the texts' bytes hold
    one of ``refused``.

    Every text pyarrow's cast of a whole column to ``int64``, ``float64`` or ``date32``
    accepts (with none of the refused bytes) is accepted by pydantic with the same value, so
    a batch whose cast succeeds needs no pattern match (``tests/property/test_cast_forms.py``
    is the proof; the caller still checks a float for inf and NaN and a date's year, as
    pyarrow reads the year 0). A batch where
    one text does not cast is matched against the checked forms instead.
    """
    if refused:
        data = _data_buffer(text).to_pybytes()
        if any(byte in data for byte in refused):
            return None
    try:
        return text.cast(to)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _cast_where(good: pa.Array, text: pa.Array, dummy: str, to: pa.DataType) -> pa.Array:
    """``text`` cast to ``to`` where ``good`` (nulls stay null); a value that casts elsewhere
    (then unused)."""
    if not pc.all(good).as_py():  # nulls skipped: True when every non-null value is good
        text = pc.if_else(good, text, dummy)
    return text.cast(to)


def _cast_days(
    good: pa.Array, text: pa.Array, dummy: str, to: pa.DataType
) -> tuple[pa.Array, pa.Array]:
    """(``text`` cast to a date or timestamp type where ``good``, ``good`` narrowed to the real
    days), for texts whose form ``good`` checked (``YYYY-MM-DD`` first, month 01-12, day
    01-31).

    pyarrow's cast refuses a day that is not in its month (``2023-02-29``, ``2024-04-31``),
    so when the cast of the batch succeeds every day is real and is not checked again; when
    it fails, the days are checked by arithmetic and only the real ones are cast.
    """
    try:
        return _cast_where(good, text, dummy, to), good
    except pa.ArrowInvalid:
        good = _real_day_mask(text, good)
        return _cast_where(good, text, dummy, to), good


_DAYS_IN_MONTH = pa.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], pa.int8())


def _real_day_mask(text: pa.Array, good: pa.Array) -> pa.Array:
    """``good`` narrowed to the texts starting ``YYYY-MM-DD`` (where ``good``: the form is
    checked) with a real day, by arithmetic (parsing and printing dates costs more); null
    where ``good`` is."""
    if not len(text):
        return good
    if not pc.all(good).as_py():
        text = pc.if_else(_fill(good), text, "2000-01-01")

    def part(start: int, stop: int) -> pa.Array:
        return pc.utf8_slice_codeunits(text, start, stop).cast(pa.int16())

    year, month, day = part(0, 4), part(5, 7), part(8, 10)
    within = pc.less_equal(day, pc.take(_DAYS_IN_MONTH, month))

    def divisible(by: int) -> pa.Array:
        return pc.equal(pc.subtract(year, pc.multiply(pc.divide(year, by), by)), 0)

    leap = pc.and_(divisible(4), pc.or_(pc.invert(divisible(100)), divisible(400)))
    leap_day = pc.and_(pc.and_(pc.equal(month, 2), pc.equal(day, 29)), leap)
    return pc.and_(good, pc.or_(within, leap_day))


def _count(mask: pa.Array) -> int:
    return int(pc.sum(mask).as_py() or 0)


def _datetimes(text: pa.Array) -> tuple[pa.Array, pa.Array | None]:
    """Timestamps of the datetime texts of a batch, and the mask of those vouched for (null
    where the text is null; None when every text is).

    pydantic keeps each value's offset (``Z``, ``+00:00`` and ``-00:00`` are all UTC), and an
    Arrow column has one time zone: the batch's most common zone (or none) is that of the
    column, and rows in another zone go to pydantic. A zoned column holds the instants (in
    UTC), as the row path stores aware datetimes; the JSON text keeps the offset.

    Naive and zoned texts are told apart by two forms that no text has both of. When one
    form holds more than half of the batch's texts, that form wins whatever the others are,
    so the other form is not matched at all: the form the batch's ends suggest is matched
    first (``Z`` ends: zoned).
    """
    half = (len(text) - text.null_count) // 2
    zulu_ends = pc.ends_with(text, "Z")
    naive = zoned = None
    n_zulu = _count(zulu_ends)
    if n_zulu == len(text) - text.null_count:
        instants = _zulu_instants(text)
        if instants is not None:
            return instants, None
    if n_zulu > half:
        zoned = pc.match_substring_regex(text, _ZONED_RE)
        if _count(pc.and_(zoned, zulu_ends)) > half and _count(zoned) == _count(
            pc.and_(zoned, zulu_ends)
        ):
            # One zone, UTC, for most of the batch (the common case): no per-row zone keys.
            return _zoned_values(text, zoned, "+00:00")
    else:
        naive = pc.match_substring_regex(text, _DATETIME_RE)
        if _count(naive) > half:
            return _zoned_values(text, naive, "")
    if naive is None:
        naive = pc.match_substring_regex(text, _DATETIME_RE)
    if zoned is None:
        zoned = pc.match_substring_regex(text, _ZONED_RE)
    zoned, naive = _fill(zoned), _fill(naive)
    zone = ""
    good = naive
    n_zoned = _count(zoned)
    if n_zoned:
        zulu = pc.and_(zoned, zulu_ends)
        if _count(zulu) == n_zoned:
            if n_zoned >= _count(naive):
                zone, good = "+00:00", zoned
        else:
            suffix = pc.if_else(zulu, "+00:00", pc.utf8_slice_codeunits(text, -6, 2**31 - 1))
            suffix = pc.if_else(pc.equal(suffix, "-00:00"), "+00:00", suffix)
            key = pc.if_else(zoned, suffix, pc.if_else(naive, "", pa.scalar(None, pa.string())))
            counts = pc.value_counts(key).to_pylist()
            best = max(
                (c for c in counts if c["values"] is not None),
                key=lambda c: c["counts"],
                default=None,
            )
            if best is not None and best["values"]:
                zone = best["values"]
                good = _fill(pc.equal(key, zone))
    return _zoned_values(text, good, zone)


#: The lengths of the covered zoned forms ending in ``Z`` (``YYYY-MM-DDTHH:MM:SSZ``, with
#: 1 to 6 digits of a second's fraction: 20, 22 to 27).
_ZULU_LENGTHS = (20, 27)
#: The days and instants (UTC, in microseconds) of the years 1000 to 2999, those of the
#: checked forms (pyarrow's cast also reads the year 0, which pydantic refuses).
_DAYS = (
    (dt.date(1000, 1, 1) - dt.date(1970, 1, 1)).days,
    (dt.date(2999, 12, 31) - dt.date(1970, 1, 1)).days,
)
_INSTANTS = (_DAYS[0] * 86_400_000_000, (_DAYS[1] + 1) * 86_400_000_000 - 1)


def _within(values: pa.Array, span: tuple[int, int]) -> bool:
    """True if the dates or timestamps ``values`` (nulls aside) lie in ``span`` (days or
    microseconds since 1970)."""
    bounds = pc.min_max(values.cast(pa.int32() if pa.types.is_date32(values.type) else pa.int64()))
    low, high = bounds["min"].as_py(), bounds["max"].as_py()
    return low is None or (span[0] <= low and high <= span[1])


def _zulu_instants(text: pa.Array) -> pa.Array | None:
    """The UTC timestamps of a batch of texts that all end in ``Z``, cast as they are; None
    when a text is not 20 to 27 characters long, does not cast, or falls outside the years
    1000-2999.

    Every such text pyarrow's cast accepts is one pydantic reads as the same instant in UTC
    (``tests/property/test_cast_forms.py``): the pattern match is not needed. Shorter texts
    (``2024-01-01T10Z``, which pyarrow reads and pydantic refuses) are left to the checks.
    """
    lengths = pc.min_max(pc.binary_length(text)).as_py()
    low, high = _ZULU_LENGTHS
    if lengths["min"] is None or lengths["min"] < low or lengths["max"] > high:
        return None
    instants = _cast_whole(text, pa.timestamp("us", tz="UTC"), b"")
    if instants is None:
        return None
    return instants if _within(instants, _INSTANTS) else None


def _zoned_values(text: pa.Array, good: pa.Array, zone: str) -> tuple[pa.Array, pa.Array]:
    """(the timestamps of ``text`` where ``good``, in ``zone`` or naive, and ``good`` narrowed
    to the real days)."""
    if not zone:
        return _cast_days(good, text, "2000-01-01 00:00:00", pa.timestamp("us"))
    instants, good = _cast_days(good, text, "2000-01-01 00:00:00Z", pa.timestamp("us", tz="UTC"))
    return instants.cast(pa.timestamp("us", tz="UTC" if zone == "+00:00" else zone)), good


def by_pydantic(plan: FieldPlan, column: pa.Array) -> tuple[pa.Array, pa.Array]:
    """The column validated by pydantic alone (the field's type and constraints), in one call;
    the rows vouched for are those it accepts whose values are written as the row path writes
    them (see ``_written_alike``). Others go to pydantic whole, as rows."""
    n = len(column)
    adapter = plan.adapter
    if adapter is None:  # pragma: no cover - every plan has one
        return pa.nulls(n, plan.arrow_type), _false(n)
    values = column.to_pylist()
    keep: list[int] | range = range(n)
    try:
        out = adapter.validate_python(values)
    except ValidationError as exc:
        bad = {e["loc"][0] for e in exc.errors(include_url=False, include_input=False)}
        keep = [i for i in range(n) if i not in bad]
        try:
            out = adapter.validate_python([values[i] for i in keep])
        except Exception:  # noqa: BLE001 - pydantic decides on the whole row
            return pa.nulls(n, plan.arrow_type), _false(n)
    except Exception:  # noqa: BLE001 - pydantic decides on the whole row
        return pa.nulls(n, plan.arrow_type), _false(n)
    try:
        dumped = adapter.dump_python(out, by_alias=True, warnings=False)
    except Exception:  # noqa: BLE001 - the row path decides
        return pa.nulls(n, plan.arrow_type), _false(n)
    alike = _written_alike(plan.arrow_type)
    full: list[Any] = [None] * n
    good = [False] * n
    for i, value in zip(keep, dumped, strict=True):
        if alike(value):
            full[i] = value
            good[i] = True
    try:
        written = _column(full, plan.arrow_type)
    except Exception:  # noqa: BLE001 - the row path decides
        return pa.nulls(n, plan.arrow_type), _false(n)
    return written, pa.array(good, pa.bool_())


def _written_alike(arrow_type: pa.DataType) -> Callable[[Any], bool]:
    """A test of a dumped value: is its column value (and the JSON text the fast path writes
    from it) what the row path writes from the value itself?"""
    if pa.types.is_string(arrow_type):
        # Written as str(): the JSON text is that of a string for these only.
        return lambda v: (
            v is None
            or isinstance(v, str | decimal.Decimal | uuid.UUID)
            or (isinstance(v, enum.Enum) and isinstance(v.value, str))
        )
    if pa.types.is_int64(arrow_type):
        return lambda v: (
            v is None or type(v) is int or (isinstance(v, enum.Enum) and type(v.value) is int)
        )
    if pa.types.is_float64(arrow_type):
        return lambda v: v is None or type(v) is float
    if pa.types.is_boolean(arrow_type):
        return lambda v: v is None or type(v) is bool
    if pa.types.is_date32(arrow_type):
        return lambda v: v is None or type(v) is dt.date
    if pa.types.is_time64(arrow_type):
        # The column has no offset: only naive times are written alike.
        return lambda v: v is None or (type(v) is dt.time and v.tzinfo is None)
    if pa.types.is_timestamp(arrow_type) and arrow_type.tz is None:
        return lambda v: v is None or (type(v) is dt.datetime and v.tzinfo is None)
    return lambda v: False
