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

This module is the public face: the whole job file (:class:`JobConfig`) and its loader. The parts
live in private modules by role: ``_yaml`` (YAML that keeps line numbers, ``extends:``),
``_specs`` (:class:`DataSpec`, :class:`EngineSpec`), ``_config_errors`` (what each key expects
and pydantic's errors in words) and ``zoopipe_hpc._model_import`` (the ``schema:`` import,
shared with :class:`~zoopipe_hpc.pipe.Pipe`).
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import to_jsonable_python

from .._model_import import MODEL_RULE, import_model, is_model_reference
from .._paths import Role, collisions
from ..errors import JobConfigError, SchemaError
from ..pipe import Pipe
from ._config_errors import EXPECTED, LOADER_KEYS, NAME_RULE, parse_key, problem, translate
from ._specs import PACKING_KEYS, SLURM_KEYS, DataSpec, EngineSpec
from ._yaml import Origins, load_tree, lookup, resolve_path, show

__all__ = ["JobConfigError", "DataSpec", "EngineSpec", "JobConfig", "load_job_file"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


_ROLE_NAMES = {
    "input.path": "the input",
    "output.path": "the output",
    "errors.path": "the error output",
}


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

    _origins: Origins = PrivateAttr(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise problem(NAME_RULE, f"expected {NAME_RULE}, got {show(value)}")
        return value

    @field_validator("schema_")
    @classmethod
    def _schema(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not is_model_reference(value):
            raise problem(MODEL_RULE, f"expected {MODEL_RULE}, got {show(value)}")
        return value

    @field_validator("jobs_dir")
    @classmethod
    def _jobs_dir(cls, value: str) -> str:
        if not value.strip():
            rule = EXPECTED["jobs_dir"]
            raise problem(rule, f"expected {rule}, got an empty string")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> JobConfig:
        self.input._check("input", "input")
        self.output._check("output", "output")
        if self.errors is not None:
            self.errors._check("output", "errors")
        base = self.base_dir
        roles = [
            Role("input.path", self.input.resolve(base), "input"),
            Role("output.path", self.output.resolve(base), "output"),
        ]
        if self.errors is not None:
            roles.append(Role("errors.path", self.errors.resolve(base), "output"))
        # The same test as every run's (symbolic links, '..' and hard links resolved).
        for first, second in collisions(roles):
            writer = second if second.writes else first
            other = first if writer is second else second
            raise problem(
                f"a path that is not the same file as {other.what}",
                f"{writer.what} {str(writer.path)!r} is the same file as {other.what} "
                f"{str(other.path)!r} ({os.path.realpath(other.path)}): "
                f"{_ROLE_NAMES[writer.what]} would overwrite {_ROLE_NAMES[other.what]}",
                key=writer.what,
            )
        return self

    # -- what the job needs ------------------------------------------------------------------

    def jobs_path(self) -> Path:
        """The folder job directories are created in (absolute)."""
        return resolve_path(self.base_dir, self.jobs_dir).absolute()

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
                schema = f"{resolve_path(base, target)}:{attribute}"
        engine: dict[str, Any] = {"kind": self.engine.kind, "max_retries": self.engine.max_retries}
        for key in (*SLURM_KEYS, "finish_time", "finish_mem", *PACKING_KEYS):
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
            for key in (*SLURM_KEYS, "finish_time", "finish_mem", *PACKING_KEYS):
                engine.pop(key, None)
        try:
            return cls.model_validate(payload)
        except ValidationError as exc:
            raise translate(exc, source, {}, cls) from exc

    # -- the schema model --------------------------------------------------------------------

    def _error(self, key: str, words: str, expected: str) -> JobConfigError:
        path, line = lookup(self._origins, parse_key(key), str(self.source))
        return JobConfigError(path, key, words, expected=expected, line=line)

    def _schema_model(self) -> type[BaseModel] | None:
        if self.schema_ is None:
            return None
        base = self.base_dir.absolute()
        try:
            return import_model(self.schema_, base=base, base_name="the job file's folder")
        except SchemaError as exc:
            expected = str(exc.details.get("expected", ""))
            raise self._error("schema", exc.message, expected) from exc


def load_job_file(path: str | os.PathLike[str]) -> JobConfig:
    """Read, merge (``extends:``) and validate a job file; every problem is a JobConfigError."""
    file = Path(path)
    display = os.fspath(path)
    data, origins = load_tree(file, display)
    for key in [k for k in LOADER_KEYS if k in data]:
        where, line = lookup(origins, (key,), display)
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
        raise translate(exc, display, origins, JobConfig) from exc
    config._origins = origins
    return config
