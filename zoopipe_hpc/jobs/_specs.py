"""The parts of a job file: the files it reads and writes (:class:`DataSpec`) and where it runs
(:class:`EngineSpec`). The whole file is :class:`~zoopipe_hpc.jobs.config.JobConfig`."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ..adapters import (
    ArrowInputAdapter,
    ArrowOutputAdapter,
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
from ._config_errors import EXPECTED, problem
from ._yaml import dotted, resolve_path, show

__all__ = ["DataSpec", "EngineSpec", "PACKING_KEYS", "SLURM_KEYS"]

#: Adapter constructor arguments that are the adapter's own business (sharding, format).
_INTERNAL_OPTIONS = frozenset(
    {"byte_range", "record_range", "row_groups", "record_batches", "format"}
)
#: EngineSpec keys that are SlurmParameters keys, in the order of the docs.
SLURM_KEYS = (
    "partition",
    "time",
    "mem",
    "cpus_per_task",
    "exclusive",
    "nodes",
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
#: EngineSpec keys that are SlurmEngine's packing arguments (``max_tasks=``...), not sbatch's.
PACKING_KEYS = ("max_tasks", "workers_per_task")
_SLURM_INT_KEYS = frozenset({"cpus_per_task", "nodes", "array_parallelism", "signal_delay_s"})

_JSON_FORMATS: dict[str, str] = {"jsonl": "jsonl", "ndjson": "jsonl", "json": "json"}


def _adapter_class(role: Literal["input", "output"], format: str) -> type[Any]:
    if role == "input":
        inputs: dict[str, type[BaseInputAdapter]] = {
            "csv": CSVInputAdapter,
            "parquet": ParquetInputAdapter,
            "arrow": ArrowInputAdapter,
        }
        return inputs.get(format, JSONInputAdapter)
    outputs: dict[str, type[BaseOutputAdapter]] = {
        "csv": CSVOutputAdapter,
        "parquet": ParquetOutputAdapter,
        "arrow": ArrowOutputAdapter,
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

    format: Literal["csv", "jsonl", "ndjson", "json", "parquet", "arrow"]
    path: str
    #: Keyword arguments of the adapter, e.g. ``{"delimiter": ";"}`` for CSV.
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.strip():
            raise problem(EXPECTED["path"], f"expected {EXPECTED['path']}, got an empty string")
        return value

    @field_validator("options", mode="before")
    @classmethod
    def _options(cls, value: Any) -> Any:
        return {} if value is None else value

    def resolve(self, base: Path) -> Path:
        """The file's path: relative to ``base`` (the job file's folder) unless absolute."""
        return resolve_path(base, self.path)

    def input_adapter(self, base: Path) -> BaseInputAdapter:
        """The adapter that reads this file."""
        path = self.resolve(base)
        if self.format == "csv":
            return CSVInputAdapter(path, **self.options)
        if self.format == "parquet":
            return ParquetInputAdapter(path, **self.options)
        if self.format == "arrow":
            return ArrowInputAdapter(path, **self.options)
        return JSONInputAdapter(path, format=_JSON_FORMATS[self.format], **self.options)

    def output_adapter(self, base: Path) -> BaseOutputAdapter:
        """The adapter that writes this file (``jsonl``/``ndjson`` one object a line, ``json``
        an array)."""
        path = self.resolve(base)
        if self.format == "csv":
            return CSVOutputAdapter(path, **self.options)
        if self.format == "parquet":
            return ParquetOutputAdapter(path, **self.options)
        if self.format == "arrow":
            return ArrowOutputAdapter(path, **self.options)
        return JSONOutputAdapter(path, format=_JSON_FORMATS[self.format], **self.options)

    def _check(self, role: Literal["input", "output"], key: str) -> None:
        """Raise a validation problem if the options do not build the adapter."""
        cls = _adapter_class(role, self.format)
        allowed = _adapter_options(cls)
        listed = ", ".join(allowed) if allowed else "none"
        unknown = sorted(set(self.options) - set(allowed))
        if unknown:
            raise problem(
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
            raise problem(
                f"options accepted by {cls.__name__} ({listed})",
                f"invalid options for a {self.format} {role} {show(self.options)}: {exc}",
                key=f"{key}.options",
            ) from exc


# -- the engine ------------------------------------------------------------------------------


def _refuse_with_kind_local(info: ValidationInfo) -> None:
    """A key of the Slurm engine (a Slurm parameter, the packing) set with ``kind: local``."""
    if info.data.get("kind") == "local":
        raise problem(
            "no Slurm parameters with kind: local",
            "is a Slurm parameter and only applies to kind: slurm (this engine is "
            "kind: local); remove it, set it to null, or set engine.kind: slurm",
        )


class EngineSpec(BaseModel):
    """Where the job runs: ``kind: local`` (processes on this machine) or ``kind: slurm``.

    Every key other than ``kind``, ``max_retries`` and the engine's :data:`PACKING_KEYS` is a
    Slurm parameter (see :class:`~zoopipe_hpc.engines.slurm.parameters.SlurmParameters`); they
    are validated when ``kind`` is ``slurm`` and refused when it is ``local``. A key set to
    null is not set.
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["local", "slurm"] = "local"
    max_retries: int = Field(default=0, ge=0, strict=True)
    partition: Any = None
    time: Any = None
    mem: Any = None
    cpus_per_task: Any = None
    exclusive: Any = None
    nodes: Any = None
    account: Any = None
    qos: Any = None
    constraint: Any = None
    gres: Any = None
    array_parallelism: Any = None
    job_name: Any = None
    extra: Any = None
    setup: Any = None
    signal_delay_s: Any = None
    #: Time limit and memory of a detached job's commit and recover jobs (kind: slurm); not
    #: set: ``SlurmParameters.for_follow_up``'s defaults (00:30:00, 1G).
    finish_time: Any = None
    finish_mem: Any = None
    #: Shards packed onto at most ``max_tasks`` array tasks, ``workers_per_task`` at a time
    #: (``SlurmEngine``'s arguments of the same names; kind: slurm).
    max_tasks: int | None = Field(default=None, ge=1, strict=True)
    workers_per_task: int | None = Field(default=None, ge=1, strict=True)

    @field_validator(*PACKING_KEYS)
    @classmethod
    def _packing_key(cls, value: int | None, info: ValidationInfo) -> int | None:
        """Refused with kind: local, whose shards are processes of this machine, not tasks."""
        if value is not None:
            _refuse_with_kind_local(info)
        return value

    @field_validator("finish_time", "finish_mem")
    @classmethod
    def _finish_key(cls, value: Any, info: ValidationInfo) -> Any:
        """Checked as ``time`` and ``mem`` are and, like them, refused with kind: local."""
        if value is None:
            return None
        _refuse_with_kind_local(info)
        name = (info.field_name or "").removeprefix("finish_")
        expected = EXPECTED[name]
        try:
            parameters = SlurmParameters.validate_kwargs(**{name: value})
        except ConfigurationError as exc:
            raise problem(expected, f"expected {expected}, got {show(value)}") from exc
        return getattr(parameters, name)

    @field_validator(*SLURM_KEYS)
    @classmethod
    def _slurm_key(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return None
        name = info.field_name or ""
        kind = info.data.get("kind")
        _refuse_with_kind_local(info)
        if kind != "slurm":  # kind itself is invalid and reported on its own
            return value
        expected = EXPECTED[name]
        if isinstance(value, bool) and name in _SLURM_INT_KEYS:
            raise problem(expected, f"expected {expected}, got {show(value)}")
        try:
            parameters = SlurmParameters.validate_kwargs(**{name: value})
        except ConfigurationError as exc:
            key, reason = "", ""
            cause = exc.__cause__
            if isinstance(cause, ValidationError) and cause.errors():
                first = cause.errors()[0]
                key = dotted(tuple(first["loc"])[1:])
                reason = str(first["msg"]).removeprefix("Value error, ")
            message = f"expected {expected}, got {show(value)}"
            if name == "extra" and reason:
                message += f": {reason}"
            raise problem(expected, message, key=key) from exc
        return getattr(parameters, name)

    @model_validator(mode="after")
    def _slurm_together(self) -> EngineSpec:
        if self.kind == "slurm":
            try:
                SlurmParameters.validate_kwargs(**self.slurm_parameters())
            except ConfigurationError as exc:
                raise problem("valid Slurm parameters", str(exc)) from exc
        return self

    def slurm_parameters(self) -> dict[str, Any]:
        """The Slurm parameters that were set (none with ``kind: local``), for ``SlurmEngine``."""
        if self.kind != "slurm":
            return {}
        return {key: getattr(self, key) for key in SLURM_KEYS if getattr(self, key) is not None}
