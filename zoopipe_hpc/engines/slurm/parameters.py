"""Slurm parameters in Slurm's own words, validated up front, and the job script they make."""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ...errors import ConfigurationError

__all__ = [
    "FOLLOW_UP_MEM",
    "FOLLOW_UP_TIME",
    "SlurmParameters",
    "parse_slurm_time",
    "render_job_script",
]

_TIME = re.compile(r"^(?:(?P<d>\d+)-)?(?P<a>\d+)(?::(?P<b>\d+))?(?::(?P<c>\d+))?$")
_MEM = re.compile(r"^\d+(?:\.\d+)?[KMGT]?B?$", re.IGNORECASE)
_FLAG = re.compile(r"^[a-z][a-z0-9-]*$")
#: Time limit and memory of a follow-up job (a durable job's commit or recover step) by default.
FOLLOW_UP_TIME = "00:30:00"
FOLLOW_UP_MEM = "1G"
#: Directives the engine sets itself; giving them in ``extra`` would break it.
_RESERVED = {"array", "output", "error", "open-mode", "signal", "job-name", "parsable", "wrap"}


def parse_slurm_time(value: str | int) -> int:
    """Minutes (rounded up) of a Slurm time limit: ``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH``,
    ``D-HH:MM``, ``D-HH:MM:SS``; an int is minutes."""
    if isinstance(value, int):
        if value <= 0:
            raise ConfigurationError("time must be positive")
        return value
    match = _TIME.match(value.strip())
    if not match:
        raise ConfigurationError(
            f"not a Slurm time limit: {value!r} (e.g. '30', '00:30:00', '1-12:00:00')"
        )
    d, b, c = (int(g) if g else None for g in match.group("d", "b", "c"))
    a = int(match.group("a"))
    if d is not None:  # D-HH[:MM[:SS]]
        seconds = d * 86400 + a * 3600 + (b or 0) * 60 + (c or 0)
    elif c is not None:  # HH:MM:SS
        seconds = a * 3600 + (b or 0) * 60 + c
    elif b is not None:  # MM:SS
        seconds = a * 60 + b
    else:  # MM
        seconds = a * 60
    if seconds <= 0:
        raise ConfigurationError("time must be positive")
    return math.ceil(seconds / 60)


class SlurmParameters(BaseModel):
    """What every task of the array asks Slurm for."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    partition: str | None = None
    time: str | int = "01:00:00"
    cpus_per_task: int = Field(1, ge=1)
    #: Whole nodes: each task gets its node to itself (``--exclusive``) ...
    exclusive: bool = False
    #: ... or asks for it by count (``--nodes``; an array task is one node, so only 1).
    nodes: int | None = Field(None, ge=1, le=1)
    mem: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    gres: str | None = None
    array_parallelism: int | None = Field(None, ge=1)
    job_name: str = "zoopipe"
    #: Further ``#SBATCH`` directives, e.g. ``{"mail-type": "END", "exclusive": True}``.
    extra: dict[str, str | int | bool] = Field(default_factory=dict)
    #: Shell lines run before the task starts, e.g. ``["module load python/3.11"]``.
    setup: list[str] = Field(default_factory=list)
    #: Seconds before the time limit at which the task is warned (USR2).
    signal_delay_s: int = Field(30, ge=0)

    @field_validator("time")
    @classmethod
    def _time(cls, value: str | int) -> str | int:
        parse_slurm_time(value)
        return value

    @field_validator("mem")
    @classmethod
    def _mem(cls, value: str | None) -> str | None:
        if value is not None and not _MEM.match(value):
            raise ConfigurationError(f"not a Slurm memory size: {value!r} (e.g. '500M', '2G')")
        return value

    @field_validator("extra")
    @classmethod
    def _extra(cls, value: dict[str, str | int | bool]) -> dict[str, str | int | bool]:
        for key in value:
            flag = key.lstrip("-").replace("_", "-")
            if not _FLAG.match(flag):
                raise ConfigurationError(f"not an sbatch option name: {key!r}")
            if flag in _RESERVED:
                raise ConfigurationError(
                    f"--{flag} is set by the engine and cannot be given in extra"
                )
        return value

    @property
    def whole_node(self) -> bool:
        """Each task has a whole node: ``exclusive``, ``nodes``, or either given in ``extra``."""
        given = {key.lstrip("-").replace("_", "-"): value for key, value in self.extra.items()}
        return bool(self.exclusive or self.nodes is not None or given.get("exclusive")) or (
            "nodes" in given
        )

    @property
    def minutes(self) -> int:
        return parse_slurm_time(self.time)

    def for_follow_up(
        self, *, job_name: str, time: str | int | None = None, mem: str | None = None
    ) -> SlurmParameters:
        """The parameters of a one-task job that follows the array (a durable job's commit or
        recover step): the same partition, account, qos, constraint, extra directives and setup
        lines, with its own name, time limit and memory (default :data:`FOLLOW_UP_TIME` and
        :data:`FOLLOW_UP_MEM`), one CPU, no whole node, no GRES and no array."""
        return SlurmParameters.validate_kwargs(
            **{
                **self.model_dump(),
                "job_name": job_name,
                "time": FOLLOW_UP_TIME if time is None else time,
                "mem": FOLLOW_UP_MEM if mem is None else mem,
                "cpus_per_task": 1,
                "exclusive": False,
                "nodes": None,
                "gres": None,
                "array_parallelism": None,
            }
        )

    @classmethod
    def validate_kwargs(cls, **kwargs: Any) -> SlurmParameters:
        """Build from keyword arguments, with an error that lists the valid keys."""
        unknown = sorted(set(kwargs) - set(cls.model_fields))
        if unknown:
            raise ConfigurationError(
                f"unknown Slurm parameter(s) {unknown}; valid keys: {sorted(cls.model_fields)}"
            )
        try:
            return cls(**kwargs)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            raise ConfigurationError(
                f"invalid Slurm parameters: {problems}; valid keys: {sorted(cls.model_fields)}"
            ) from exc

    def sbatch_directives(self) -> dict[str, str | int | bool]:
        """Directives in sbatch's long-option names (without the array, output and signal)."""
        directives: dict[str, str | int | bool] = {}
        for key in ("partition", "mem", "account", "qos", "constraint", "gres"):
            value = getattr(self, key)
            if value is not None:
                directives[key] = value
        directives["time"] = self.minutes
        directives["cpus-per-task"] = self.cpus_per_task
        if self.exclusive:
            directives["exclusive"] = True
        if self.nodes is not None:
            directives["nodes"] = self.nodes
        for key, value in self.extra.items():
            directives[key.lstrip("-").replace("_", "-")] = value
        return directives


def render_job_script(
    parameters: SlurmParameters,
    *,
    command: str,
    log_folder: Path,
    tasks: int | None,
    environment: dict[str, str],
    log_file: Path | None = None,
    directives: Mapping[str, str | int | bool] | None = None,
) -> str:
    """The sbatch script for an array of ``tasks`` tasks: a pure function of its arguments.

    ``tasks=None`` renders one job that is not an array (a durable job's commit or recover
    step): ``command`` then runs in the batch script itself, not as an ``srun`` step, with its
    stdout and stderr in ``log_file`` (sbatch patterns such as ``%j`` allowed). ``directives``
    are further ``#SBATCH`` options (e.g. ``dependency``); they override those of
    ``parameters``.
    """
    from submitit.slurm.slurm import _make_sbatch_string

    exports = [f"export {key}={shlex.quote(value)}" for key, value in sorted(environment.items())]
    additional: dict[str, Any] = {
        k: v for k, v in parameters.sbatch_directives().items() if k != "time"
    }
    additional.pop("cpus-per-task", None)
    kwargs: dict[str, Any] = {
        "job_name": parameters.job_name,
        "time": parameters.minutes,
        "cpus_per_task": parameters.cpus_per_task,
        "signal_delay_s": parameters.signal_delay_s,
        "setup": [*parameters.setup, *exports],
        "additional_parameters": additional,
    }
    if tasks is None:
        kwargs["use_srun"] = False
        kwargs["stderr_to_stdout"] = True
        if log_file is not None:
            additional["output"] = str(log_file)
    else:
        kwargs["map_count"] = tasks
        kwargs["array_parallelism"] = parameters.array_parallelism or tasks
    additional.update(directives or {})
    script: str = _make_sbatch_string(command=command, folder=log_folder, **kwargs)
    return script
