"""Arrow schemas derived from pydantic models, and rows (dicts) turned into Arrow tables."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import re
import types
import typing
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pydantic_core
from pydantic import BaseModel

from ..errors import OutputError

__all__: list[str] = []

ERROR_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("line", pa.int64()),
        ("record", pa.string()),
        ("errors", pa.string()),
    ]
)

_SCALARS: dict[Any, pa.DataType] = {
    int: pa.int64(),
    float: pa.float64(),
    str: pa.string(),
    bool: pa.bool_(),
    bytes: pa.binary(),
    dt.date: pa.date32(),
    dt.datetime: pa.timestamp("us"),
    dt.time: pa.time64("us"),
    dt.timedelta: pa.duration("us"),
    decimal.Decimal: pa.string(),
    uuid.UUID: pa.string(),
}


def to_json_bytes(value: Any) -> bytes:
    """UTF-8 JSON of a row (NaN and infinities as Python's json writes them).

    There is no fallback: a value pydantic-core cannot serialize (an ``object()``, bytes that
    are not UTF-8, nesting deeper than it writes) raises :class:`OutputError` rather than being
    written as its ``str()``. Rows from a model are checked before they are counted valid
    (see :func:`json_problem`), so this only fires for what no check saw.
    """
    try:
        return pydantic_core.to_json(value, inf_nan_mode="constants", timedelta_mode="float")
    except pydantic_core.PydanticSerializationError as exc:
        raise OutputError(f"cannot write a value as JSON: {exc}") from exc


def to_json(value: Any) -> str:
    """JSON text of a row, as :func:`to_json_bytes` writes it."""
    return to_json_bytes(value).decode("utf-8")


def json_problem(value: Any) -> str | None:
    """Why :func:`to_json_bytes` cannot write ``value`` (pydantic-core's message), or None.

    One call in C for a whole list of rows: the check costs about what writing them does.
    """
    try:
        pydantic_core.to_json(value, inf_nan_mode="constants", timedelta_mode="float")
    except pydantic_core.PydanticSerializationError as exc:
        return str(exc)
    return None


def _strip_optional(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _strip_optional(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return _strip_optional(args[0])
    return annotation


def arrow_type_for(annotation: Any) -> pa.DataType:
    """The Arrow type a value of ``annotation`` is stored as; JSON text when nothing fits."""
    annotation = _strip_optional(annotation)
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    if typing.get_origin(annotation) is typing.Literal:
        kinds = {type(v) for v in typing.get_args(annotation)}
        if len(kinds) == 1 and next(iter(kinds)) in _SCALARS:
            return _SCALARS[next(iter(kinds))]
        return pa.string()
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        kinds = {type(member.value) for member in annotation}
        if len(kinds) == 1 and next(iter(kinds)) in (int, str, float):
            return _SCALARS[next(iter(kinds))]
        return pa.string()
    if isinstance(annotation, type):
        for base, arrow_type in _SCALARS.items():
            if issubclass(annotation, base) and base is not bool:
                return arrow_type
    return pa.string()


def schema_for_model(model: type[BaseModel]) -> pa.Schema:
    fields = []
    for name, info in model.model_fields.items():
        key = info.serialization_alias or name
        fields.append(pa.field(key, arrow_type_for(info.annotation), nullable=True))
    return pa.schema(fields)


def _converter(arrow_type: pa.DataType) -> Callable[[Any], Any] | None:
    """How a Python value is prepared for a column of ``arrow_type`` (None: as it is)."""
    if pa.types.is_string(arrow_type):

        def to_text(value: Any) -> Any:
            if value is None or isinstance(value, str):
                return value
            if isinstance(value, enum.Enum):
                value = value.value
                if isinstance(value, str):
                    return value
            if isinstance(value, decimal.Decimal | uuid.UUID | int | float | bool):
                return str(value)
            return to_json(value)

        return to_text

    def plain(value: Any) -> Any:
        return value.value if isinstance(value, enum.Enum) else value

    return plain


def rows_to_table(rows: Sequence[dict[str, Any]], schema: pa.Schema | None) -> pa.Table:
    """Build a table from ``rows``; with a schema, every column is converted to its type.

    ``rows`` may also be a table already (from the columnar fast path): it is cast if needed.
    """
    if isinstance(rows, pa.Table):
        if schema is None or rows.schema.equals(schema):
            return rows
        return rows.cast(schema)
    if schema is None:
        return pa.Table.from_pylist(list(rows))
    try:
        # The common case, all in C: values already of the column types.
        return pa.Table.from_pylist(list(rows), schema=schema)
    except (pa.ArrowTypeError, pa.ArrowInvalid, TypeError, ValueError):
        pass
    columns = []
    for field in schema:
        convert = _converter(field.type)
        values = [row.get(field.name) for row in rows]
        if convert is not None:
            values = [convert(v) for v in values]
        columns.append(pa.array(values, type=field.type))
    return pa.Table.from_arrays(columns, schema=schema)


#: What converting a value to a column of the wrong type raises.
_CONVERSION_ERRORS = (pa.ArrowException, OutputError, TypeError, ValueError, OverflowError)


def _column(values: list[Any], arrow_type: pa.DataType) -> pa.Array:
    """``values`` as a column of ``arrow_type``, converted as :func:`rows_to_table` does."""
    try:
        return pa.array(values, type=arrow_type)
    except _CONVERSION_ERRORS:
        pass
    convert = _converter(arrow_type)
    if convert is not None:
        values = [convert(v) for v in values]
    return pa.array(values, type=arrow_type)


def without_zones(table: pa.Table) -> pa.Table:
    """``table`` with its zoned timestamp columns as naive ones of the same instants (UTC),
    which is how a table of rows stores aware datetimes (see :func:`rows_to_table`)."""
    schema = original = table.schema
    for index, field in enumerate(original):
        if pa.types.is_timestamp(field.type) and field.type.tz is not None:
            schema = schema.set(index, field.with_type(pa.timestamp(field.type.unit)))
    return table if schema is original else table.cast(schema)


def column_fits(values: list[Any], arrow_type: pa.DataType) -> bool:
    """True if ``values`` (JSON-serializable) can be stored in a column of ``arrow_type``."""
    try:
        _column(values, arrow_type)
    except _CONVERSION_ERRORS:
        return False
    return True


def column_problem(value: Any, arrow_type: pa.DataType) -> str | None:
    """Why ``value`` (JSON-serializable) cannot be stored in a column of ``arrow_type`` as
    :func:`rows_to_table` converts it (containers and others as JSON text in a text column),
    or None.

    A Python ``int`` in an int64 column is left to the ``int64_range`` check of the row path.
    """
    if isinstance(value, int) and pa.types.is_int64(arrow_type):
        return None
    try:
        _column([value], arrow_type)
    except _CONVERSION_ERRORS as exc:
        return f"cannot be written as {arrow_type} (the output column type): {exc}"
    return None


def error_rows(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Error records with ``record`` and ``errors`` as JSON text, for tabular formats."""
    return [
        {
            "source": r.get("source"),
            "line": r.get("line"),
            "record": to_json(r.get("record")),
            "errors": to_json(r.get("errors")),
        }
        for r in records
    ]


_PLAIN_FLOAT = r"^-?(0|[1-9][0-9]{0,14})\.[0-9]{1,17}$"
_CONTROL = "[\x00-\x1f]"
#: pydantic-core writes a float below this magnitude with an exponent (``1e-6``), pyarrow in
#: plain decimal form down to 1e-6 (``0.000001``).
_SMALLEST_PLAIN = 1e-5
#: From here on pydantic-core writes an exponent, and a text may have over 15 integer digits.
_LARGEST_PLAIN = 1e15


class _Quoted:
    """Escaped text without nulls, to be written between quotes."""

    __slots__ = ("text",)

    def __init__(self, text: pa.Array) -> None:
        self.text = text


def _offsets(column: pa.Array) -> memoryview[int]:
    """The value offsets of a string array (int32, or int64 for large strings)."""
    view = memoryview(column.buffers()[1])
    return view.cast("q") if pa.types.is_large_string(column.type) else view.cast("i")


def _data_buffer(column: pa.Array) -> pa.Buffer:
    """The bytes of the values of a string array (of its slice), one after the other."""
    data = column.buffers()[2]
    if data is None or not len(column):
        return pa.py_buffer(b"")
    offsets = _offsets(column)
    first, last = offsets[column.offset], offsets[column.offset + len(column)]
    return data.slice(first, last - first)


def _smallest_byte(data: pa.Buffer) -> int:
    if not data.size:
        return 0xFF
    octets = pa.Array.from_buffers(pa.uint8(), data.size, [None, data])
    smallest: int = pc.min(octets).as_py()
    return smallest


def _json_string(column: pa.Array) -> pa.Array | _Quoted | None:
    """JSON text of a string column: checked for what needs escaping on its whole data buffer
    at once (quotes and backslashes are escaped; control characters: None)."""
    data = _data_buffer(column)
    if _smallest_byte(data) < 0x20:
        if pc.any(pc.match_substring_regex(column, _CONTROL)).as_py():
            return None  # a null's slot may hold bytes: only the values count
    raw = data.to_pybytes()
    text = column
    if b"\\" in raw:
        text = pc.replace_substring(text, "\\", "\\\\")
    if b'"' in raw:
        text = pc.replace_substring(text, '"', '\\"')
    if not text.null_count:
        return _Quoted(text)  # the quotes go into the literal parts around it
    return pc.fill_null(pc.binary_join_element_wise('"', text, '"', ""), "null")


def _json_float(column: pa.Array) -> pa.Array:
    """JSON text of a float64 column, as pydantic-core writes it.

    Both pyarrow and pydantic-core write the shortest text that reads back as the same double;
    in plain decimal form, from 1e-5 up to 15 integer digits, the two texts are the same.
    Other values (integral ones, which pyarrow writes without ``.0``, exponents, non-finite
    values) take pydantic-core's own text.
    """
    text = column.cast(pa.string())
    magnitude = pc.abs(column)
    largest = pc.max(magnitude).as_py()
    raw = _data_buffer(text).to_pybytes()
    if (
        largest is not None
        and largest < _LARGEST_PLAIN
        and b"e" not in raw
        and b"n" not in raw  # inf, nan
        and b"0.00000" not in raw  # plain text of a value below 1e-5
    ):
        # Every value is finite and in plain form from 1e-5 up: only integral ones (zero
        # included) lack the ``.0``.
        plain = pc.not_equal(pc.floor(column), column)
    else:
        plain = pc.and_(
            pc.match_substring_regex(text, _PLAIN_FLOAT),
            pc.greater_equal(magnitude, _SMALLEST_PLAIN),
        )
    plain = pc.fill_null(plain, True)  # nulls are written as null below
    if not pc.all(plain).as_py():
        others = pc.invert(plain)
        theirs = _pydantic_json(column.filter(others))
        text = pc.replace_with_mask(text, others, theirs)
    return pc.fill_null(text, "null")


def _json_column(column: pa.Array) -> pa.Array | _Quoted | None:
    """Each value's JSON text, as :func:`to_json` writes it; None when not sure of the form."""
    typ = column.type
    if pa.types.is_int64(typ):
        return pc.fill_null(column.cast(pa.string()), "null")
    if pa.types.is_boolean(typ):
        return pc.fill_null(pc.if_else(column, "true", "false"), "null")
    if pa.types.is_string(typ):
        return _json_string(column)
    if pa.types.is_float64(typ):
        return _json_float(column)
    if pa.types.is_timestamp(typ) and typ.unit == "us" and typ.tz is not None:
        return _json_zoned(column)
    if pa.types.is_date32(typ) or typ == pa.timestamp("us") or typ == pa.time64("us"):
        return _pydantic_json(column)
    return None


_ZONE = re.compile(r"([+-])([01][0-9]|2[0-3]):([0-5][0-9])")


def _json_zoned(column: pa.Array) -> pa.Array:
    """JSON text of a timestamp column in a fixed zone (``UTC`` or ``+HH:MM``), as pydantic-core
    writes aware datetimes: local time, microseconds only when not zero, then ``Z`` or the
    offset. Built with pyarrow (pyarrow's aware Python values cost microseconds each)."""
    zone = column.type.tz
    m = _ZONE.fullmatch(zone)
    if zone == "UTC":
        offset, suffix = 0, "Z"
    elif m is not None:
        minutes = int(m.group(2)) * 60 + int(m.group(3))
        offset = (-minutes if m.group(1) == "-" else minutes) * 60_000_000
        suffix = zone if offset else "Z"
    else:
        return _pydantic_json(column)
    local = pc.add(column.cast(pa.timestamp("us")), pa.scalar(offset, pa.duration("us")))
    span = pc.min_max(pc.year(local)).as_py()
    if span["min"] is not None and not 1000 <= span["min"] <= span["max"] <= 9999:
        return _pydantic_json(column)  # four-digit years only
    text = local.cast(pa.string())  # YYYY-MM-DD HH:MM:SS.ffffff
    fraction = pc.utf8_slice_codeunits(text, 19, 26)
    fraction = pc.if_else(pc.equal(fraction, ".000000"), "", fraction)
    date = pc.utf8_slice_codeunits(text, 0, 10)
    time = pc.utf8_slice_codeunits(text, 11, 19)
    joined = pc.binary_join_element_wise('"', date, "T", time, fraction, suffix + '"', "")
    return pc.fill_null(joined, "null")


def _pydantic_json(column: pa.Array) -> pa.Array:
    """pydantic-core's JSON text of each value (forms without commas), in one call."""
    values = column.to_pylist()
    if not values:
        return pa.array([], pa.string())
    text = pydantic_core.to_json(values, inf_nan_mode="constants").decode("utf-8")
    return pa.array(text[1:-1].split(","), pa.string())


def json_rows(table: pa.Table, end: str = "") -> pa.Array | None:
    """The rows of ``table`` as JSON objects, built column by column; None if a type is not
    covered (the caller then serializes row dicts)."""
    if not table.num_rows:
        return pa.array([], pa.string())
    parts: list[Any] = []
    for index, field in enumerate(table.schema):
        column = table.column(index).combine_chunks()
        text = _json_column(column)
        if text is None:
            return None
        key = pydantic_core.to_json(field.name).decode("utf-8")
        literal = ("{" if index == 0 else ",") + key + ":"
        if isinstance(text, _Quoted):
            parts.append(literal + '"')
            parts.append(text.text)
            parts.append('"')
        else:
            parts.append(literal)
            parts.append(text)
    if not parts:
        return None
    parts.append("}" + end)
    # Adjacent literal parts are merged: fewer inputs to join.
    merged: list[Any] = []
    for part in parts:
        if isinstance(part, str) and merged and isinstance(merged[-1], str):
            merged[-1] += part
        else:
            merged.append(part)
    parts = merged
    return pc.binary_join_element_wise(*parts, "")


def joined_lines(lines: pa.Array, start: int, stop: int) -> memoryview:
    """Lines ``[start, stop)`` of ``json_rows(table, "\\n")`` as one UTF-8 buffer, newlines
    included: a view of the array's data buffer, written as it is (no copy, no decoding)."""
    data = lines.buffers()[2]
    if stop <= start or data is None:
        return memoryview(b"")
    offsets = _offsets(lines)
    first, last = offsets[lines.offset + start], offsets[lines.offset + stop]
    return memoryview(data)[first:last]
