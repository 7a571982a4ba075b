"""Job files: a YAML description of one durable job, validated before anything runs.

A job file names the input, the outputs, the schema model, the number of workers and the engine::

    name: clean-users
    extends: /shared/site/zoopipe-base.yaml
    input:  {format: csv, path: data/users.csv}
    output: {format: parquet, path: out/users.parquet}
    errors: {format: jsonl, path: out/users.errors.jsonl}
    schema: "models:User"
    workers: 12
    engine: {kind: slurm, partition: debug, time: "00:30:00", mem: 2G, max_retries: 2}

:func:`load_job_file` reads it (following ``extends:``), validates it with :class:`JobConfig` and
turns every problem into a :class:`JobConfigError` that names the file, the line, the dotted key
and what was expected. See ``docs/job-file.md``.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import hashlib
import importlib
import importlib.util
import inspect
import os
import re
import sys
import sysconfig
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, get_args

import yaml  # type: ignore[import-untyped, unused-ignore]
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError, to_jsonable_python

from ..adapters import (
    BaseInputAdapter,
    BaseOutputAdapter,
    CSVInputAdapter,
    CSVOutputAdapter,
    JSONInputAdapter,
    JSONOutputAdapter,
    ParquetInputAdapter,
    ParquetOutputAdapter,
)
from ..engines.slurm.parameters import SlurmParameters
from ..errors import ConfigurationError, ZoopipeHPCError
from ..pipe import Pipe

__all__ = ["JobConfigError", "DataSpec", "EngineSpec", "JobConfig", "load_job_file"]

#: Where a key of the merged configuration was written: (file as displayed, 1-based line).
_Origin = tuple[str, int]
_Loc = tuple[str | int, ...]
_Origins = dict[_Loc, _Origin]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_MODULE = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*$")
_ATTRIBUTE = re.compile(r"^[A-Za-z_]\w*$")
#: pydantic's error type for the problems this module reports itself.
_OWN_ERROR = "job_config"
#: Keys a job file may not set: the loader derives them from the file's location.
_LOADER_KEYS = ("base_dir", "source")
#: Adapter constructor arguments that are the adapter's own business (sharding, format).
_INTERNAL_OPTIONS = frozenset({"byte_range", "record_range", "row_groups", "format"})
#: EngineSpec keys that are SlurmParameters keys, in the order of the docs.
_SLURM_KEYS = (
    "partition",
    "time",
    "mem",
    "cpus_per_task",
    "account",
    "qos",
    "constraint",
    "gres",
    "array_parallelism",
    "job_name",
    "extra",
    "setup",
    "signal_delay_s",
)
_SLURM_INT_KEYS = frozenset({"cpus_per_task", "array_parallelism", "signal_delay_s"})

_NAME_RULE = (
    "a name of 1 to 64 letters, digits, '.', '_' or '-' starting with a letter or digit "
    "(it names folders and Slurm jobs)"
)
_SCHEMA_RULE = "'module:Model' or 'path/to/file.py:Model'"
_DATA_RULE = "a mapping with 'format' and 'path' (and optionally 'options')"
#: What each key expects, in words; used for every error about that key.
_EXPECTED: dict[str, str] = {
    "name": _NAME_RULE,
    "input": _DATA_RULE,
    "output": _DATA_RULE,
    "errors": f"{_DATA_RULE}, or null",
    "format": "one of 'csv', 'jsonl', 'ndjson', 'json', 'parquet'",
    "path": "a file path (text)",
    "options": "a mapping of adapter options",
    "schema": _SCHEMA_RULE,
    "workers": "an integer >= 1",
    "engine": "a mapping with 'kind' ('local' or 'slurm') and engine options",
    "kind": "'local' or 'slurm'",
    "max_retries": "an integer >= 0",
    "jobs_dir": "a folder path (text)",
    "extends": "a file path or a list of file paths",
    "partition": "a Slurm partition name (text)",
    "time": (
        "a Slurm time limit like '00:30:00' (MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS) "
        "or a whole number of minutes"
    ),
    "mem": "a Slurm memory size like '2G'",
    "cpus_per_task": "an integer >= 1",
    "account": "a Slurm account name (text)",
    "qos": "a Slurm QOS name (text)",
    "constraint": "a Slurm constraint (text)",
    "gres": "a Slurm GRES specification like 'gpu:1' (text)",
    "array_parallelism": "an integer >= 1",
    "job_name": "a Slurm job name (text)",
    "extra": "a mapping of further sbatch options to values (not those the engine sets itself)",
    "setup": "a list of shell lines",
    "signal_delay_s": "an integer >= 0 (seconds)",
}
#: Fallbacks by pydantic error type, for keys not in _EXPECTED.
_EXPECTED_BY_TYPE: dict[str, str] = {
    "string_type": "text",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "list_type": "a list",
    "path_type": "a path",
}


# -- the error -------------------------------------------------------------------------------


class JobConfigError(ZoopipeHPCError):
    """A job file (or a stored job configuration) is unreadable or invalid.

    Attributes: ``path`` (the YAML file the problem is in), ``key`` (dotted, e.g. ``engine.mem``;
    empty for a problem with the whole file), ``expected`` (what would have been valid),
    ``line`` (1-based, where known) and ``errors`` (every problem found, as dicts with the same
    keys plus ``message``; the message of the exception is the first one).
    """

    path: str
    key: str
    expected: str
    line: int | None
    errors: list[dict[str, Any]]

    def __init__(
        self,
        path: str,
        key: str,
        problem: str,
        *,
        expected: str = "",
        line: int | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        message = _format_message(path, line, key, problem)
        if errors is None:
            errors = [_entry(path, line, key, expected, message)]
        super().__init__(message, path=path, key=key, expected=expected, line=line, errors=errors)


def _format_message(path: str, line: int | None, key: str, problem: str) -> str:
    where = path if line is None else f"{path}:{line}"
    return f"{where}: {key}: {problem}" if key else f"{where}: {problem}"


def _entry(path: str, line: int | None, key: str, expected: str, message: str) -> dict[str, Any]:
    return {"path": path, "line": line, "key": key, "expected": expected, "message": message}


def _problem(expected: str, message: str, key: str = "") -> PydanticCustomError:
    """A validation error this module words itself; ``key`` is relative to the failing model."""
    # "message" goes last: pydantic substitutes the context into the template in order.
    return PydanticCustomError(
        _OWN_ERROR, "{message}", {"key": key, "expected": expected, "message": message}
    )


def _show(value: Any) -> str:
    """A value as the user wrote it, short."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = "null"
    elif isinstance(value, Path):
        text = repr(str(value))
    else:
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _dotted(loc: _Loc) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _parse_key(key: str) -> _Loc:
    parts: list[str | int] = []
    for piece in key.split("."):
        if not piece:
            continue
        name, *indices = piece.split("[")
        if name:
            parts.append(name)
        parts.extend(int(index.rstrip("]")) for index in indices)
    return tuple(parts)


# -- data specs ------------------------------------------------------------------------------


def _resolve_path(base: Path, path: str | os.PathLike[str]) -> Path:
    """``path`` with ``~`` expanded, relative to ``base`` unless absolute."""
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else Path(base) / candidate


_JSON_FORMATS: dict[str, str] = {"jsonl": "jsonl", "ndjson": "jsonl", "json": "json"}


def _adapter_class(role: Literal["input", "output"], format: str) -> type[Any]:
    if role == "input":
        inputs: dict[str, type[BaseInputAdapter]] = {
            "csv": CSVInputAdapter,
            "parquet": ParquetInputAdapter,
        }
        return inputs.get(format, JSONInputAdapter)
    outputs: dict[str, type[BaseOutputAdapter]] = {
        "csv": CSVOutputAdapter,
        "parquet": ParquetOutputAdapter,
    }
    return outputs.get(format, JSONOutputAdapter)


def _adapter_options(cls: type[Any]) -> list[str]:
    """The keyword options a user may give an adapter through ``options``."""
    parameters = inspect.signature(cls.__init__).parameters.values()
    return sorted(
        p.name
        for p in parameters
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in _INTERNAL_OPTIONS
    )


class DataSpec(BaseModel):
    """One file the job reads or writes: its format, its path and adapter options."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["csv", "jsonl", "ndjson", "json", "parquet"]
    path: str
    #: Keyword arguments of the adapter, e.g. ``{"delimiter": ";"}`` for CSV.
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.strip():
            raise _problem(_EXPECTED["path"], f"expected {_EXPECTED['path']}, got an empty string")
        return value

    @field_validator("options", mode="before")
    @classmethod
    def _options(cls, value: Any) -> Any:
        return {} if value is None else value

    def resolve(self, base: Path) -> Path:
        """The file's path: relative to ``base`` (the job file's folder) unless absolute."""
        return _resolve_path(base, self.path)

    def input_adapter(self, base: Path) -> BaseInputAdapter:
        """The adapter that reads this file."""
        path = self.resolve(base)
        if self.format == "csv":
            return CSVInputAdapter(path, **self.options)
        if self.format == "parquet":
            return ParquetInputAdapter(path, **self.options)
        return JSONInputAdapter(path, format=_JSON_FORMATS[self.format], **self.options)

    def output_adapter(self, base: Path) -> BaseOutputAdapter:
        """The adapter that writes this file (``jsonl``/``ndjson`` one object a line, ``json``
        an array)."""
        path = self.resolve(base)
        if self.format == "csv":
            return CSVOutputAdapter(path, **self.options)
        if self.format == "parquet":
            return ParquetOutputAdapter(path, **self.options)
        return JSONOutputAdapter(path, format=_JSON_FORMATS[self.format], **self.options)

    def _check(self, role: Literal["input", "output"], key: str) -> None:
        """Raise a validation problem if the options do not build the adapter."""
        cls = _adapter_class(role, self.format)
        allowed = _adapter_options(cls)
        listed = ", ".join(allowed) if allowed else "none"
        unknown = sorted(set(self.options) - set(allowed))
        if unknown:
            raise _problem(
                f"one of the options of a {self.format} {role} ({listed})",
                f"unknown option {unknown[0]!r} for a {self.format} {role}; "
                f"allowed options: {listed}",
                key=f"{key}.options.{unknown[0]}",
            )
        try:
            if role == "input":
                self.input_adapter(Path("."))
            else:
                self.output_adapter(Path("."))
        except (TypeError, ValueError, ZoopipeHPCError) as exc:
            raise _problem(
                f"options accepted by {cls.__name__} ({listed})",
                f"invalid options for a {self.format} {role} {_show(self.options)}: {exc}",
                key=f"{key}.options",
            ) from exc


# -- the engine ------------------------------------------------------------------------------


class EngineSpec(BaseModel):
    """Where the job runs: ``kind: local`` (processes on this machine) or ``kind: slurm``.

    Every key other than ``kind`` and ``max_retries`` is a Slurm parameter (see
    :class:`~zoopipe_hpc.engines.slurm.parameters.SlurmParameters`); they are validated when
    ``kind`` is ``slurm`` and refused when it is ``local``. A key set to null is not set.
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["local", "slurm"] = "local"
    max_retries: int = Field(default=0, ge=0, strict=True)
    partition: Any = None
    time: Any = None
    mem: Any = None
    cpus_per_task: Any = None
    account: Any = None
    qos: Any = None
    constraint: Any = None
    gres: Any = None
    array_parallelism: Any = None
    job_name: Any = None
    extra: Any = None
    setup: Any = None
    signal_delay_s: Any = None

    @field_validator(*_SLURM_KEYS)
    @classmethod
    def _slurm_key(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return None
        name = info.field_name or ""
        kind = info.data.get("kind")
        if kind == "local":
            raise _problem(
                "no Slurm parameters with kind: local",
                "is a Slurm parameter and only applies to kind: slurm (this engine is "
                "kind: local); remove it, set it to null, or set engine.kind: slurm",
            )
        if kind != "slurm":  # kind itself is invalid and reported on its own
            return value
        expected = _EXPECTED[name]
        if isinstance(value, bool) and name in _SLURM_INT_KEYS:
            raise _problem(expected, f"expected {expected}, got {_show(value)}")
        try:
            parameters = SlurmParameters.validate_kwargs(**{name: value})
        except ConfigurationError as exc:
            key, reason = "", ""
            cause = exc.__cause__
            if isinstance(cause, ValidationError) and cause.errors():
                first = cause.errors()[0]
                key = _dotted(tuple(first["loc"])[1:])
                reason = str(first["msg"]).removeprefix("Value error, ")
            message = f"expected {expected}, got {_show(value)}"
            if name == "extra" and reason:
                message += f": {reason}"
            raise _problem(expected, message, key=key) from exc
        return getattr(parameters, name)

    @model_validator(mode="after")
    def _slurm_together(self) -> EngineSpec:
        if self.kind == "slurm":
            try:
                SlurmParameters.validate_kwargs(**self.slurm_parameters())
            except ConfigurationError as exc:
                raise _problem("valid Slurm parameters", str(exc)) from exc
        return self

    def slurm_parameters(self) -> dict[str, Any]:
        """The Slurm parameters that were set (none with ``kind: local``), for ``SlurmEngine``."""
        if self.kind != "slurm":
            return {}
        return {key: getattr(self, key) for key in _SLURM_KEYS if getattr(self, key) is not None}


# -- the job ---------------------------------------------------------------------------------


class JobConfig(BaseModel):
    """A whole job file, after ``extends:`` is applied; ``base_dir`` and ``source`` are set by
    :func:`load_job_file` from the file's location."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str
    input: DataSpec
    output: DataSpec
    errors: DataSpec | None = None
    schema_: str | None = Field(default=None, alias="schema")
    workers: int = Field(default=1, ge=1, strict=True)
    engine: EngineSpec = Field(default_factory=EngineSpec)
    jobs_dir: str = "zoopipe-jobs"
    base_dir: Path
    source: Path

    _origins: _Origins = PrivateAttr(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise _problem(_NAME_RULE, f"expected {_NAME_RULE}, got {_show(value)}")
        return value

    @field_validator("schema_")
    @classmethod
    def _schema(cls, value: str | None) -> str | None:
        if value is None:
            return None
        target, colon, attribute = value.rpartition(":")
        good_target = target.endswith(".py") or bool(_MODULE.match(target))
        if not (colon and good_target and _ATTRIBUTE.match(attribute)):
            raise _problem(_SCHEMA_RULE, f"expected {_SCHEMA_RULE}, got {_show(value)}")
        return value

    @field_validator("jobs_dir")
    @classmethod
    def _jobs_dir(cls, value: str) -> str:
        if not value.strip():
            rule = _EXPECTED["jobs_dir"]
            raise _problem(rule, f"expected {rule}, got an empty string")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> JobConfig:
        self.input._check("input", "input")
        self.output._check("output", "output")
        if self.errors is not None:
            self.errors._check("output", "errors")
        base = self.base_dir
        source = self.input.resolve(base)
        target = self.output.resolve(base)
        if target == source:
            raise _problem(
                "a path different from input.path",
                f"the output would overwrite the input {str(source)!r}",
                key="output.path",
            )
        if self.errors is not None and self.errors.resolve(base) in (source, target):
            raise _problem(
                "a path different from input.path and output.path",
                f"the error output would overwrite {str(self.errors.resolve(base))!r}",
                key="errors.path",
            )
        return self

    # -- what the job needs ------------------------------------------------------------------

    def jobs_path(self) -> Path:
        """The folder job directories are created in (absolute)."""
        return _resolve_path(self.base_dir, self.jobs_dir).absolute()

    def make_pipe(self) -> Pipe:
        """The :class:`~zoopipe_hpc.pipe.Pipe` this job runs, its schema model imported now."""
        return Pipe(
            self.input.input_adapter(self.base_dir),
            self.output.output_adapter(self.base_dir),
            self._schema_model(),
            self.errors.output_adapter(self.base_dir) if self.errors is not None else None,
        )

    def resolved(self) -> dict[str, Any]:
        """This configuration fully resolved (``extends`` applied, absolute paths), JSON-able.

        :meth:`from_resolved` turns it back into an equal configuration.
        """
        base = self.base_dir.absolute()

        def data(spec: DataSpec) -> dict[str, Any]:
            return {
                "format": spec.format,
                "path": str(spec.resolve(base)),
                "options": to_jsonable_python(spec.options),
            }

        schema = self.schema_
        if schema is not None:
            target, _, attribute = schema.rpartition(":")
            if target.endswith(".py"):
                schema = f"{_resolve_path(base, target)}:{attribute}"
        engine: dict[str, Any] = {"kind": self.engine.kind, "max_retries": self.engine.max_retries}
        for key in _SLURM_KEYS:
            value = getattr(self.engine, key)
            if value is not None:
                engine[key] = to_jsonable_python(value)
        return {
            "name": self.name,
            "input": data(self.input),
            "output": data(self.output),
            "errors": data(self.errors) if self.errors is not None else None,
            "schema": schema,
            "workers": self.workers,
            "engine": engine,
            "jobs_dir": str(self.jobs_path()),
            "base_dir": str(base),
            "source": str(self.source.absolute()),
        }

    @classmethod
    def from_resolved(cls, data: dict[str, Any]) -> JobConfig:
        """A configuration from what :meth:`resolved` returned (e.g. read back from a job
        directory).

        The engine kind of a stored configuration may have been overridden to ``local`` for a
        run (a Slurm job file run locally); its Slurm parameters are then dropped, not refused.
        """
        if not isinstance(data, dict):
            raise JobConfigError(
                "<resolved job config>",
                "",
                f"expected a mapping, got {type(data).__name__}",
                expected="a mapping",
            )
        source = str(data.get("source") or "<resolved job config>")
        payload = copy.deepcopy(data)
        engine = payload.get("engine")
        if isinstance(engine, dict) and engine.get("kind", "local") == "local":
            for key in _SLURM_KEYS:
                engine.pop(key, None)
        try:
            return cls.model_validate(payload)
        except ValidationError as exc:
            raise _translate(exc, source, {}) from exc

    # -- the schema model --------------------------------------------------------------------

    def _error(self, key: str, problem: str, expected: str) -> JobConfigError:
        path, line = _lookup(self._origins, _parse_key(key), str(self.source))
        return JobConfigError(path, key, problem, expected=expected, line=line)

    def _schema_model(self) -> type[BaseModel] | None:
        if self.schema_ is None:
            return None
        target, _, attribute = self.schema_.rpartition(":")
        base = self.base_dir.absolute()
        if target.endswith(".py"):
            module = self._import_file(_resolve_path(base, target))
        else:
            module = self._import_module(target, base)
        missing = object()
        model = getattr(module, attribute, missing)
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            where = getattr(module, "__file__", None) or target
            found = "nothing" if model is missing else f"{type(model).__name__} {_show(model)}"
            raise self._error(
                "schema",
                f"module {target!r} ({where}) has no pydantic model named {attribute!r} "
                f"(found {found})",
                f"{_SCHEMA_RULE} naming a pydantic BaseModel subclass",
            )
        return model

    def _import_module(self, name: str, base: Path) -> ModuleType:
        """Import ``name`` with the job file's folder first on ``sys.path``.

        A module of the same name imported earlier from another folder (another job file's
        ``models.py``) is dropped first, so that each job gets the module next to its file.
        """
        top = name.split(".")[0]
        local = (base / f"{top}.py").is_file() or (base / top).is_dir()
        cached = sys.modules.get(top)
        if local and cached is not None and _is_user_module(cached) and not _lives_in(cached, base):
            for loaded in [m for m in sys.modules if m == top or m.startswith(top + ".")]:
                del sys.modules[loaded]
        importlib.invalidate_caches()
        with _on_sys_path(base):
            try:
                return importlib.import_module(name)
            except Exception as exc:
                raise self._error(
                    "schema",
                    f"cannot import module {name!r} (looked in {base}, the job file's folder, "
                    f"and on sys.path): {type(exc).__name__}: {exc}",
                    f"an importable {_SCHEMA_RULE}",
                ) from exc

    def _import_file(self, file: Path) -> ModuleType:
        """Import a ``.py`` file as a module of its own (its folder on ``sys.path`` meanwhile)."""
        if not file.is_file():
            raise self._error(
                "schema", f"schema file {str(file)!r} does not exist", f"an existing {_SCHEMA_RULE}"
            )
        stem = re.sub(r"\W", "_", file.stem)
        digest = hashlib.sha256(str(file).encode()).hexdigest()[:10]
        name = f"_zoopipe_job_schema_{stem}_{digest}"
        cached = sys.modules.get(name)
        if cached is not None and getattr(cached, "__file__", None) == str(file):
            return cached
        spec = importlib.util.spec_from_file_location(name, file)
        if spec is None or spec.loader is None:
            raise self._error(
                "schema",
                f"cannot import {str(file)!r} as a module",
                f"a Python file {_SCHEMA_RULE}",
            )
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        with _on_sys_path(file.parent):
            try:
                spec.loader.exec_module(module)
            except Exception as exc:
                sys.modules.pop(name, None)
                raise self._error(
                    "schema",
                    f"cannot import schema file {str(file)!r}: {type(exc).__name__}: {exc}",
                    f"an importable {_SCHEMA_RULE}",
                ) from exc
        return module


@contextlib.contextmanager
def _on_sys_path(folder: Path) -> Iterator[None]:
    """``folder`` first on ``sys.path`` for the duration of a ``with`` block."""
    entry = str(folder)
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        if sys.path and sys.path[0] == entry:
            del sys.path[0]
        elif entry in sys.path:
            sys.path.remove(entry)


def _module_locations(module: ModuleType) -> list[str]:
    locations = [str(p) for p in getattr(module, "__path__", None) or []]
    file = getattr(module, "__file__", None)
    if file:
        locations.append(str(file))
    return locations


def _lives_in(module: ModuleType, folder: Path) -> bool:
    root = folder.resolve()
    return any(Path(p).resolve().is_relative_to(root) for p in _module_locations(module))


def _is_user_module(module: ModuleType) -> bool:
    """True for a module from a plain folder (not the standard library, not installed)."""
    if module.__name__ in sys.builtin_module_names or module.__name__ in sys.stdlib_module_names:
        return False
    locations = _module_locations(module)
    if not locations:
        return False
    roots = {
        os.path.abspath(sysconfig.get_paths()[k])
        for k in ("stdlib", "platstdlib", "purelib", "platlib")
    }
    return not any(os.path.abspath(p).startswith(root) for p in locations for root in roots)


# -- reading the files -----------------------------------------------------------------------

_STR_TAG = "tag:yaml.org,2002:str"
_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")


def _read_yaml(path: Path, display: str) -> tuple[dict[str, Any], _Origins]:
    """A YAML mapping and the line of each of its keys."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise JobConfigError(
            display, "", "no such file", expected="an existing YAML job file"
        ) from None
    except IsADirectoryError:
        raise JobConfigError(
            display, "", "is a folder, not a file", expected="a YAML job file"
        ) from None
    except OSError as exc:
        raise JobConfigError(
            display, "", f"cannot read: {exc.strerror}", expected="a readable YAML job file"
        ) from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise JobConfigError(
            display, "", f"not UTF-8 text: {exc.reason} at byte {exc.start}", expected="UTF-8 YAML"
        ) from exc
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        origins: _Origins = {}
        if node is not None:
            _walk(node, (), origins, display, set())
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        column = f" at column {mark.column + 1}" if mark is not None else ""
        context = f" ({exc.context})" if exc.context else ""
        raise JobConfigError(
            display,
            "",
            f"invalid YAML{column}: {exc.problem}{context}",
            expected="valid YAML",
            line=line,
        ) from exc
    except yaml.YAMLError as exc:
        raise JobConfigError(display, "", f"invalid YAML: {exc}", expected="valid YAML") from exc
    finally:
        loader.dispose()
    if data is None:
        return {}, origins
    if not isinstance(data, dict):
        raise JobConfigError(
            display,
            "",
            f"expected a mapping of keys at the top level, got {_yaml_kind(data)}",
            expected="a mapping of keys at the top level",
            line=1,
        )
    return data, origins


def _yaml_kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the text {_show(value)}"
    return f"{type(value).__name__} {_show(value)}"


def _walk(node: Any, loc: _Loc, origins: _Origins, display: str, active: set[int]) -> None:
    """Record the line of every key and list item, refuse duplicate keys, and read
    ``00:30:00``-like plain scalars as text (not YAML 1.1 base-60 numbers)."""
    if id(node) in active:  # a recursive alias
        return
    active.add(id(node))
    try:
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    _walk(value_node, loc, origins, display, active)
                    continue
                key = key_node.value
                line = key_node.start_mark.line + 1
                if key in seen and key != "<<":
                    raise JobConfigError(
                        display,
                        _dotted((*loc, key)),
                        f"duplicate key (first given at line {seen[key]})",
                        expected="each key once",
                        line=line,
                    )
                seen[key] = line
                origins[(*loc, key)] = (display, line)
                _walk(value_node, (*loc, key), origins, display, active)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                origins[(*loc, index)] = (display, item.start_mark.line + 1)
                _walk(item, (*loc, index), origins, display, active)
        elif (
            isinstance(node, yaml.ScalarNode)
            and node.style is None
            and node.tag in _NUMBER_TAGS
            and ":" in node.value
        ):
            node.tag = _STR_TAG
    finally:
        active.discard(id(node))


def _merge(base: Mapping[str, Any], child: Mapping[str, Any]) -> dict[str, Any]:
    """Mappings merged recursively, the child winning; lists and scalars replaced."""
    merged = dict(base)
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _value_at(data: Any, loc: _Loc) -> Any:
    for part in loc:
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            return None
    return data


def _merge_origins(base: _Origins, child: _Origins, child_data: dict[str, Any]) -> _Origins:
    merged = dict(base)
    for loc, where in child.items():
        if not isinstance(_value_at(child_data, loc), dict):
            # Replaced whole: what the base said below this key is gone.
            for old in [k for k in merged if len(k) > len(loc) and k[: len(loc)] == loc]:
                del merged[old]
        merged[loc] = where
    return merged


def _extends_list(value: Any, display: str, origins: _Origins) -> list[str]:
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) and i.strip() for i in items):
        rule = _EXPECTED["extends"]
        path, line = _lookup(origins, ("extends",), display)
        raise JobConfigError(
            path, "extends", f"expected {rule}, got {_show(value)}", expected=rule, line=line
        )
    return list(items)


def _load_tree(
    path: Path, display: str, chain: tuple[tuple[Path, str], ...]
) -> tuple[dict[str, Any], _Origins]:
    """A file merged over the files it extends, and where each key came from."""
    real = path.resolve()
    data, origins = _read_yaml(path, display)
    extends = _extends_list(data.pop("extends", None), display, origins)
    own = {k: v for k, v in origins.items() if k[:1] != ("extends",)}
    merged: dict[str, Any] = {}
    merged_origins: _Origins = {}
    for index, reference in enumerate(extends):
        loc: _Loc = ("extends", index) if ("extends", index) in origins else ("extends",)
        where, line = _lookup(origins, loc, display)
        base_path = _resolve_path(path.parent, reference)
        shown = reference if Path(reference).expanduser().is_absolute() else None
        base_display = shown or os.path.normpath(_resolve_path(Path(display).parent, reference))
        base_real = base_path.resolve()
        if base_real == real or any(base_real == r for r, _ in chain):
            names = [d for _, d in chain] + [display, base_display]
            raise JobConfigError(
                where,
                "extends",
                f"cycle: {' -> '.join(names)}",
                expected="extends without a cycle",
                line=line,
            )
        if not base_path.is_file():
            looked = os.path.abspath(base_path)
            raise JobConfigError(
                where,
                "extends",
                f"base file {base_display} does not exist"
                + (f" ({looked})" if looked != base_display else ""),
                expected="the path of an existing YAML file, relative to the including file",
                line=line,
            )
        base_data, base_origins = _load_tree(base_path, base_display, (*chain, (real, display)))
        merged_origins = _merge_origins(merged_origins, base_origins, base_data)
        merged = _merge(merged, base_data)
    merged_origins = _merge_origins(merged_origins, own, data)
    return _merge(merged, data), merged_origins


def _lookup(origins: _Origins, loc: _Loc, default: str) -> tuple[str, int | None]:
    """Where ``loc`` (or its nearest written parent) was written."""
    for end in range(len(loc), 0, -1):
        where = origins.get(loc[:end])
        if where is not None:
            return where
    return default, None


def _model_at(loc: _Loc) -> type[BaseModel] | None:
    model: type[BaseModel] = JobConfig
    for part in loc:
        found: type[BaseModel] | None = None
        for name, field in model.model_fields.items():
            if (field.alias or name) == part:
                found = _model_in(field.annotation)
                break
        if found is None:
            return None
        model = found
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in get_args(annotation):
        found = _model_in(argument)
        if found is not None:
            return found
    return None


def _allowed_keys(model: type[BaseModel]) -> list[str]:
    keys = [
        field.alias or name
        for name, field in model.model_fields.items()
        if name not in _LOADER_KEYS
    ]
    return [*keys, "extends"] if model is JobConfig else keys


def _describe(error: Mapping[str, Any]) -> tuple[_Loc, str, str]:
    """The dotted location, the problem in words and what was expected, of one pydantic error."""
    loc: _Loc = tuple(error["loc"])
    kind = error["type"]
    context = error.get("ctx") or {}
    if kind == _OWN_ERROR:
        return (
            (*loc, *_parse_key(str(context.get("key", "")))),
            context["message"],
            context["expected"],
        )
    field = next((p for p in reversed(loc) if isinstance(p, str)), "")
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        allowed = _allowed_keys(model) if model is not None else []
        unknown = str(loc[-1])
        close = difflib.get_close_matches(unknown, allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        listed = ", ".join(allowed)
        return loc, f"unknown key{hint}; allowed keys here: {listed}", f"one of: {listed}"
    expected = _EXPECTED.get(field) or _EXPECTED_BY_TYPE.get(kind) or str(error["msg"])
    if kind == "missing":
        return loc, f"required key is missing; expected {expected}", expected
    return loc, f"expected {expected}, got {_show(error.get('input'))}", expected


def _translate(exc: ValidationError, display: str, origins: _Origins) -> JobConfigError:
    """One JobConfigError for all of pydantic's errors: the first in the message, all in
    ``errors``; each is located in the file (base file or job file) that wrote its key.
    Unknown keys come first, then the others in pydantic's (field) order."""
    entries: list[dict[str, Any]] = []
    problems: list[str] = []
    # An unknown key first: it is often a misspelt key, which pydantic also reports as missing.
    errors = sorted(exc.errors(include_url=False), key=lambda e: e["type"] != "extra_forbidden")
    for error in errors:
        loc, problem, expected = _describe(error)
        path, line = _lookup(origins, loc, display)
        if path != display:
            problem += f" (inherited by {display})"
        key = _dotted(loc)
        problems.append(problem)
        entries.append(_entry(path, line, key, expected, _format_message(path, line, key, problem)))
    first = entries[0]
    problem = problems[0]
    if len(entries) > 1:
        others = ", ".join(e["key"] or e["path"] for e in entries[1:])
        problem += f" (and {len(entries) - 1} more: {others})"
    return JobConfigError(
        first["path"],
        first["key"],
        problem,
        expected=first["expected"],
        line=first["line"],
        errors=entries,
    )


def load_job_file(path: str | os.PathLike[str]) -> JobConfig:
    """Read, merge (``extends:``) and validate a job file; every problem is a JobConfigError."""
    file = Path(path)
    display = os.fspath(path)
    data, origins = _load_tree(file, display, ())
    for key in [k for k in _LOADER_KEYS if k in data]:
        where, line = _lookup(origins, (key,), display)
        raise JobConfigError(
            where,
            key,
            "is set from the job file's location and cannot be given in a job file",
            expected=f"no {key!r} key",
            line=line,
        )
    absolute = file.absolute()
    try:
        config = JobConfig.model_validate({**data, "base_dir": absolute.parent, "source": absolute})
    except ValidationError as exc:
        raise _translate(exc, display, origins) from exc
    config._origins = origins
    return config
