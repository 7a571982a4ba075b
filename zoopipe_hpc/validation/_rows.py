"""Row validation with a pydantic model: valid rows out, invalid rows kept with their errors.

A row is valid when pydantic accepts it *and* what the model dumps can be written faithfully,
whatever the output format: as JSON (no ``str()`` of an unknown object) and in the column its
field has (see :func:`~zoopipe_hpc.validation._arrow.schema_for_model`). The checks are made on
the whole chunk at once, and only for a model that may dump something else than its fields'
types; rows are looked at one by one only in a chunk where the check failed.
"""

from __future__ import annotations

import inspect
import json
import logging
import reprlib
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    PlainValidator,
    PydanticUserError,
    TypeAdapter,
    ValidationError,
    WrapValidator,
)
from pydantic_core import PydanticSerializationError

from ..errors import OutputError, ValidatorError
from ._arrow import (
    arrow_type_for,
    column_fits,
    column_problem,
    json_problem,
    rows_to_table,
    schema_for_model,
)

__all__: list[str] = []

_log = logging.getLogger(__name__)

Record = dict[str, Any]


@dataclass
class ValidationResult:
    """The outcome of one chunk: valid rows in order, and (index, errors) of the invalid ones."""

    valid: list[Record] = field(default_factory=list)
    invalid: list[tuple[int, list[dict[str, Any]]]] = field(default_factory=list)


def error_list(exc: ValidationError) -> list[dict[str, Any]]:
    """pydantic's error list in a JSON-safe form (type, loc, msg, input).

    That form is pydantic's JSON of the errors read back. When every error's input is
    already JSON's own and immutable (ASCII text, ``None``, a bool, an int), reading back only
    turns each ``loc`` into a list, which is done here without the text: a third of the cost,
    for what CSV rows produce (``tests/unit/test_error_list.py`` compares both).
    """
    details = exc.errors(include_url=False, include_context=False)
    if all(_plain(e["input"]) for e in details):
        return [{**e, "loc": list(e["loc"])} for e in details]
    errors: list[dict[str, Any]] = json.loads(exc.json(include_url=False, include_context=False))
    return errors


def _runs_functions(schema: Any) -> bool:
    """True if a core schema holds a function of the model's own (a validator or serializer
    written in Python), anywhere in it."""
    if isinstance(schema, dict):
        kind = schema.get("type")
        if isinstance(kind, str) and kind.startswith("function"):
            return True
        return any(_runs_functions(v) for k, v in schema.items() if k != "metadata")
    if isinstance(schema, list | tuple):
        return any(_runs_functions(v) for v in schema)
    return False


def _plain(value: Any) -> bool:
    """True if ``value`` reads back from pydantic's JSON as an equal value of its own type
    (and, being immutable, may be shared with the record)."""
    kind = type(value)
    if kind is str:
        return bool(value.isascii())
    return value is None or kind is bool or kind is int


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


# -- what a model can dump --------------------------------------------------------------------

#: Core schema kinds whose values are of a type pydantic-core writes, given input read from
#: CSV, JSON or Parquet. Any other kind (``any``, an arbitrary type, an after/wrap/plain
#: validator or serializer function, ``bytes`` that may not be UTF-8, ...) may put something
#: else in a row, so the rows of its model are also checked as JSON.
_KNOWN_KINDS = frozenset(
    {
        "none",
        "bool",
        "int",
        "float",
        "str",
        "decimal",
        "uuid",
        "date",
        "time",
        "datetime",
        "timedelta",
        "literal",
        "enum",
        "nullable",
        "default",
        "union",
        "tagged-union",
        "lax-or-strict",
        "json-or-python",
        "custom-error",
        "function-before",
        "model",
        "model-fields",
        "model-field",
        "typed-dict",
        "typed-dict-field",
        "definitions",
        "definition-ref",
        "list",
        "set",
        "frozenset",
        "tuple",
        "dict",
    }
)
#: Keys of a core schema that hold no schema (a default value is dumped through the schema of
#: its field, so a wrong one is caught there).
_NOT_SCHEMAS = frozenset({"metadata", "config", "cls", "ref", "members", "default", "expected"})
#: The keys a container's schema has when its items are typed.
_ITEMS = {
    "list": ("items_schema",),
    "set": ("items_schema",),
    "frozenset": ("items_schema",),
    "tuple": ("items_schema",),
    "dict": ("keys_schema", "values_schema"),
}


def _definitions(schema: Any) -> dict[str, Any]:
    """Every schema in the core ``schema`` that has a ``ref``, by it (what a
    ``definition-ref`` names)."""
    found: dict[str, Any] = {}
    stack = [schema]
    while stack:
        item = stack.pop()
        if isinstance(item, list | tuple):
            stack.extend(item)
        elif isinstance(item, dict):
            ref = item.get("ref")
            if isinstance(ref, str) and "type" in item:
                found.setdefault(ref, item)
            stack.extend(value for key, value in item.items() if key not in _NOT_SCHEMAS)
    return found


def _dumps_known_types(schema: Any, definitions: dict[str, Any]) -> bool:
    """True if every kind in the core ``schema`` (and in the definitions it refers to) is in
    :data:`_KNOWN_KINDS`, no model in it has a custom ``__init__`` or ``model_post_init`` (which
    may set anything) and every default can be written as JSON."""
    stack = [schema]
    followed: set[str] = set()
    while stack:
        item = stack.pop()
        if isinstance(item, list | tuple):
            stack.extend(item)
            continue
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if isinstance(kind, str):
            if kind not in _KNOWN_KINDS:
                return False
            if kind == "model" and (item.get("custom_init") or item.get("post_init")):
                return False
            if kind == "default" and json_problem(item.get("default")) is not None:
                return False  # a default that cannot be written, in every row that lacks it
            if any(key not in item for key in _ITEMS.get(kind, ())):
                return False  # untyped items: anything
            if kind == "definition-ref":
                ref = item.get("schema_ref")
                if ref not in definitions:
                    return False
                if ref not in followed:
                    followed.add(ref)
                    stack.append(definitions[ref])
        stack.extend(value for key, value in item.items() if key not in _NOT_SCHEMAS)
    return True


def _open_parts(model: type[BaseModel]) -> tuple[bool, list[str]]:
    """Whether ``model`` as a whole may dump values of other types than its fields declare (a
    model validator after or around it, a model serializer, computed fields, a custom
    ``__init__`` or ``model_post_init``) and, if not, which of its fields may."""
    schema = model.__pydantic_core_schema__
    definitions = _definitions(schema)
    node: Any = schema
    for _ in range(64):  # down the wrappers of the model to its own fields
        kind = node.get("type") if isinstance(node, dict) else None
        if kind == "definitions":
            node = node.get("schema")
        elif kind == "definition-ref":
            node = definitions.get(node.get("schema_ref"))
        elif kind == "model":
            if node.get("custom_init") or node.get("post_init") or "serialization" in node:
                return True, []
            node = node.get("schema")
        elif kind == "model-fields":
            extras = node.get("extras_schema")
            if node.get("computed_fields") or "serialization" in node:
                return True, []
            if extras is not None and not _dumps_known_types(extras, definitions):
                return True, []
            fields = node.get("fields", {})
            return False, [
                name
                for name, field_schema in fields.items()
                if not _dumps_known_types(field_schema, definitions)
            ]
        else:
            return True, []  # a model validator, or something not understood here
    return True, []


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 200


def _serialization_error(name: str | None, msg: str, value: Any = None) -> dict[str, Any]:
    """A ``serialization`` error; ``input`` is the value's ``repr`` (bounded), if there is one."""
    error: dict[str, Any] = {"type": "serialization", "loc": [name] if name else [], "msg": msg}
    if value is not None:
        error["input"] = _REPR.repr(value)
    return error


# -- validators that raise something else than ValueError -------------------------------------

_ANNOTATED = (AfterValidator, BeforeValidator, PlainValidator, WrapValidator)
_DECORATOR_GROUPS = ("field_validators", "validators", "model_validators", "root_validators")


def _code_of(function: Any) -> types.CodeType | None:
    function = getattr(function, "__func__", function)  # a classmethod, bound or not
    try:
        function = inspect.unwrap(function)
    except ValueError:
        pass  # a cycle of __wrapped__: keep the outer function
    code = getattr(function, "__code__", None)
    return code if isinstance(code, types.CodeType) else None


def _annotation_parts(annotation: Any) -> tuple[list[type[BaseModel]], list[Any]]:
    """The models and the ``Annotated`` validators anywhere in ``annotation``."""
    models: list[type[BaseModel]] = []
    validators: list[Any] = []
    stack = [annotation]
    while stack:
        item = stack.pop()
        if isinstance(item, type) and issubclass(item, BaseModel):
            models.append(item)
            continue
        if typing.get_origin(item) is typing.Annotated:
            validators.extend(
                m for m in getattr(item, "__metadata__", ()) if isinstance(m, _ANNOTATED)
            )
        stack.extend(typing.get_args(item))
    return models, validators


def _validator_sites(model: type[BaseModel]) -> dict[types.CodeType, tuple[str, tuple[str, ...]]]:
    """The code of each validator of ``model`` and of the models in its fields: the name of the
    validator and the (dotted) fields it validates, none for a model validator."""
    sites: dict[types.CodeType, tuple[str, tuple[str, ...]]] = {}

    def add(function: Any, name: str, fields: tuple[str, ...]) -> None:
        code = _code_of(function)
        if code is not None:
            known = sites.get(code)
            sites[code] = (name, known[1] + fields if known else fields)

    seen: set[type[BaseModel]] = set()
    todo: list[tuple[type[BaseModel], str]] = [(model, "")]
    while todo:
        cls, prefix = todo.pop()
        if cls in seen:
            continue
        seen.add(cls)
        decorators = cls.__pydantic_decorators__
        for group in _DECORATOR_GROUPS:
            for name, decorator in getattr(decorators, group, {}).items():
                fields = tuple(prefix + f for f in getattr(decorator.info, "fields", ()))
                add(decorator.func, f"{cls.__name__}.{name}", fields)
        for name, info in cls.model_fields.items():
            models, annotated = _annotation_parts(info.annotation)
            for validator in [*info.metadata, *annotated]:
                if isinstance(validator, _ANNOTATED):
                    label = getattr(validator.func, "__qualname__", repr(validator.func))
                    add(validator.func, label, (prefix + name,))
            todo.extend((nested, f"{prefix}{name}.") for nested in models)
    return sites


def _field_of(frame: types.FrameType, fields: tuple[str, ...]) -> str | None:
    """The field a validator's ``frame`` was validating: its ``ValidationInfo`` says, or the
    validator has one field; ``a or b`` when that cannot be told."""
    for value in frame.f_locals.values():
        name = getattr(value, "field_name", None)
        if type(value).__name__ == "ValidationInfo" and isinstance(name, str):
            prefix = fields[0].rpartition(".")[0] if fields else ""
            return f"{prefix}.{name}" if prefix else name
    named = [f for f in fields if not f.endswith("*")]
    return " or ".join(named) if named else None


def validator_error(model: type[BaseModel], exc: Exception, index: int) -> ValidatorError:
    """A :class:`ValidatorError` for ``exc``, raised while validating row ``index``: the
    validator and field are found from the innermost frame of the traceback that runs one of
    the model's validators."""
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    sites = _validator_sites(model)
    validator = field_name = None
    for frame in reversed(frames):
        site = sites.get(frame.f_code)
        if site is not None:
            validator = site[0]
            field_name = _field_of(frame, site[1])
            break
    return ValidatorError(
        model=model.__name__,
        error_type=type(exc).__name__,
        error_message=str(exc),
        field=field_name,
        validator=validator,
        index=index,
    )


# -- the validator ----------------------------------------------------------------------------


class RowValidator:
    """Validates rows against ``model`` (or passes them through unchanged with no model).

    An integer pydantic accepts but no 64-bit column can hold (Python's ints are unbounded,
    Parquet's and Arrow's are not) makes its row invalid, with an ``int64_range`` error naming
    the field, rather than failing the whole output when it is written. So does a value that
    cannot be written (an ``object()`` from a validator or in an ``Any`` field, a value its
    column cannot hold, a serializer that raises): a ``serialization`` error naming the field.
    Only what a model may dump of other types than its fields declare (see :func:`_open_parts`)
    is checked, a chunk at a time; rows are looked at one by one only in a chunk that failed.

    A validator that raises anything but ``ValueError``/``AssertionError`` (which pydantic turns
    into validation errors) is a bug in the model: :class:`ValidatorError`, naming the row.
    """

    def __init__(self, model: type[BaseModel] | None) -> None:
        self.model = model
        if model is not None:
            self._validate = model.__pydantic_validator__.validate_python
            self._dump = model.__pydantic_serializer__.to_python
            self._int64 = _int64_fields(model)
            self._schema = schema_for_model(model)
            self._columns = {f.name: f.type for f in self._schema}
            # What only the fields' types cannot vouch for is checked: the whole row, or the
            # keys of the fields that may hold other types.
            whole, fields = _open_parts(model)
            keys = {n: info.serialization_alias or n for n, info in model.model_fields.items()}
            self._check_rows = whole
            self._check_keys = [keys.get(name, name) for name in fields]
            self._check = whole or bool(self._check_keys)
            self._names = {
                info.serialization_alias or name: name for name, info in model.model_fields.items()
            }
        # Set when most rows of the last call were invalid (the columnar path's fallback rows):
        # the next call finds its invalid rows with one validation of the whole list.
        # Only for models that run no code of their own: a validator may count its calls.
        self._mostly_invalid = False
        self._list_ok = model is not None and not _runs_functions(model.__pydantic_core_schema__)
        self._validate_list: Callable[[list[Record]], object] | None = None

    def __call__(self, rows: Sequence[Record], offset: int = 0) -> ValidationResult:
        result = ValidationResult()
        model = self.model
        if model is None:
            result.valid = list(rows)
            return result
        validate = self._validate
        dump = self._dump
        valid = result.valid
        invalid = result.invalid
        int64 = self._int64
        known = None
        if self._mostly_invalid and self._list_ok and len(rows) > 1:
            known = self._errors_by_row(rows)
        for index, row in enumerate(rows):
            if known:
                errors = known.get(index)
                if errors is not None:
                    invalid.append((offset + index, errors))
                    continue
            try:
                instance = validate(row)
            except ValidationError as exc:
                invalid.append((offset + index, error_list(exc)))
                continue
            except Exception as exc:  # noqa: BLE001 - a bug in the model: named, then raised
                raise validator_error(model, exc, offset + index) from exc
            try:
                # No serializer warnings: what they would say is checked below, and under
                # ``-W error`` they would be raised from here.
                clean = dump(instance, by_alias=True, warnings=False)
            except Exception as exc:  # noqa: BLE001 - a serializer failed: an error record
                invalid.append((offset + index, self._serializer_problems(instance, exc)))
                continue
            problems = _int64_errors(clean, int64) if int64 else None
            if problems:
                invalid.append((offset + index, problems))
            else:
                valid.append(clean)
        self._mostly_invalid = 2 * len(invalid) > len(rows)
        if self._check and valid and not self._writable(valid):
            self._sort_out(result, range(offset, offset + len(rows)))
        return result

    def _errors_by_row(self, rows: Sequence[Record]) -> dict[int, list[dict[str, Any]]] | None:
        """The error lists of the invalid ``rows`` (by index), from one validation of the
        whole list, as :func:`error_list` gives them row by row; None when the list cannot
        tell (the rows are then validated one by one).

        pydantic validates each item of a list of the model exactly as the model validates a
        row, and puts the item's index before each error's ``loc``; a row whose errors have
        an input that is not plain (see :func:`error_list`) is left out, to be validated on
        its own. A raised exception hides which rows fail: None. The rows found valid are
        validated again one by one (their instances are not returned), so this is only worth
        it when most rows are invalid.
        """
        if self._validate_list is None:
            try:
                self._validate_list = TypeAdapter(list[self.model]).validate_python  # type: ignore[name-defined]
            except (PydanticUserError, TypeError) as exc:  # schema generation errors included
                # The model validates rows but pydantic cannot build a list of it: the rows
                # are validated one by one, as without this shortcut.
                _log.debug("no list validator for %s (%s): rows one by one", self.model, exc)
                self._list_ok = False
                return None
        try:
            self._validate_list(list(rows))
        except ValidationError as exc:
            found: dict[int, list[dict[str, Any]]] = {}
            unplain: set[int] = set()
            for e in exc.errors(include_url=False, include_context=False):
                where = e["loc"]
                if not where or type(where[0]) is not int:
                    return None
                if not _plain(e["input"]):
                    unplain.add(where[0])
                found.setdefault(where[0], []).append({**e, "loc": list(where[1:])})
            for index in unplain:
                del found[index]
            return found
        except Exception as exc:  # noqa: BLE001 - the row that raised is named by the loop
            # A validator raised something other than a ValidationError: which row did is not
            # said here; the row-by-row loop that follows meets it again and names the row.
            _log.debug("list validation of %d rows raised %r: rows one by one", len(rows), exc)
            return None
        return {}

    def _writable(self, rows: list[Record]) -> bool:
        """True if every row can be written as JSON and as a table of the output columns
        (only what the model's types cannot vouch for is looked at)."""
        if self._check_rows:
            if json_problem(rows) is not None:
                return False
            try:
                rows_to_table(rows, self._schema)
            except (pa.ArrowException, OutputError, TypeError, ValueError, OverflowError):
                return False
            return True
        for key in self._check_keys:
            values = [row.get(key) for row in rows]
            if json_problem(values) is not None:
                return False
            column = self._columns.get(key)
            # Any JSON value fits a text column: it is stored as JSON text.
            if column is not None and not pa.types.is_string(column):
                if not column_fits(values, column):
                    return False
        return True

    def _sort_out(self, result: ValidationResult, places: range) -> None:
        """Move the valid rows that cannot be written to the invalid ones, in input order."""
        rejected = {index for index, _ in result.invalid}
        kept = []
        for place, row in zip((p for p in places if p not in rejected), result.valid, strict=True):
            problems = self._problems(row)
            if problems:
                result.invalid.append((place, problems))
            else:
                kept.append(row)
        result.valid = kept
        result.invalid.sort(key=lambda item: item[0])

    def _problems(self, row: Record) -> list[dict[str, Any]]:
        """The serialization errors of the fields of ``row`` that cannot be written."""
        problems = []
        for key, value in row.items():
            name = self._names.get(key, key)
            reason = json_problem({key: value})
            if reason is not None:
                reason = f"cannot be serialized: {reason}"
            else:
                column = self._columns.get(key)
                reason = column_problem(value, column) if column is not None else None
            if reason is not None:
                problems.append(_serialization_error(name, reason, value))
        if not problems:
            reason = json_problem(row)
            if reason is not None:
                problems.append(_serialization_error(None, f"cannot be serialized: {reason}"))
        return problems

    def _serializer_problems(self, instance: BaseModel, exc: Exception) -> list[dict[str, Any]]:
        """The fields of ``instance`` whose serializer fails (a ``field_serializer`` or a
        computed field that raises)."""
        problems = []
        cls = type(instance)
        for name in [*cls.model_fields, *cls.model_computed_fields]:
            try:
                self._dump(instance, by_alias=True, warnings=False, include={name})
            except Exception as failed:  # noqa: BLE001 - reported in the error record
                problems.append(_serialization_error(name, _cannot_serialize(failed)))
        return problems or [_serialization_error(None, _cannot_serialize(exc))]


def _cannot_serialize(exc: Exception) -> str:
    if isinstance(exc, PydanticSerializationError):
        return f"cannot be serialized: {exc}"
    return f"cannot be serialized: {type(exc).__name__}: {exc}"
