"""Attempt ids: the one name of each run of one pipe, made and parsed here for every engine.

An *attempt* is one run of one pipe (one shard): a retried or requeued shard runs again as a
new attempt. Its id names the attempt's progress record (``progress-<index>.<attempt>.rec``)
and its part files (``part-<index>.<attempt><suffix>``), so that two attempts of a shard never
write into the same file, and the coordinator commits only the attempt that succeeded.

Rules every id follows (:func:`check_attempt_id`):

- only ``A-Z a-z 0-9 _ -``: it goes into file names (no ``.``, which separates it from the
  rest of the name, no ``/``, nothing a shell or a filesystem treats specially);
- 1 to :data:`ATTEMPT_ID_MAX` characters: the progress record stores it in a fixed field.

Two forms, both unique for as long as their files can meet:

- **local** ``<run>-<index>`` (processes, the pool, Ray, Dask, a durable job's local run):
  ``run`` is 12 random hex digits drawn once per ``start`` of an engine (48 bits, so two runs
  sharing a progress folder do not collide), ``index`` the pipe's index in that run. It has no
  ``_``, so a durable job's list of submissions never reads it as a Slurm ``<array>_<task>``;
- **Slurm** ``<job>-<task>-r<restart>``: the array job id, the task id in it, and Slurm's
  restart count (``SLURM_RESTART_COUNT``). Slurm never gives a job id twice on one cluster and
  counts every requeue, so each run of a task has its own id; the ids of one submitted task
  share the prefix ``<job>-<task>-r`` (:func:`slurm_attempt_prefix`), by which the Slurm engine
  finds that task's newest attempt among the records.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from ..errors import ConfigurationError
from ..progress._layout import ATTEMPT_ID_MAX

__all__ = [
    "ATTEMPT_ID_MAX",
    "LocalAttempt",
    "SlurmAttempt",
    "check_attempt_id",
    "local_attempt_ids",
    "parse_attempt_id",
    "parse_record_name",
    "record_name",
    "slurm_attempt_id",
    "slurm_attempt_id_from_environment",
    "slurm_attempt_prefix",
    "slurm_restart",
]

_SAFE: Final = re.compile(r"[A-Za-z0-9_-]+")
_LOCAL: Final = re.compile(r"(?P<run>[0-9a-f]{12})-(?P<index>[0-9]+)")
_SLURM: Final = re.compile(r"(?P<job>[A-Za-z0-9_]+)-(?P<task>[0-9]+)-r(?P<restart>[0-9]+)")
_RECORD: Final = re.compile(r"progress-(?P<index>[0-9]+)\.(?P<attempt>[A-Za-z0-9_-]+)\.rec")


@dataclass(frozen=True)
class LocalAttempt:
    """A parsed local attempt id: the engine run's random token and the pipe's index in it."""

    run: str
    index: int


@dataclass(frozen=True)
class SlurmAttempt:
    """A parsed Slurm attempt id: array job id, task id and restart count."""

    job: str
    task: int
    restart: int


def check_attempt_id(attempt_id: str) -> str:
    """``attempt_id`` itself if it is safe in a file name (see the module docstring)."""
    if not isinstance(attempt_id, str) or not _SAFE.fullmatch(attempt_id):
        raise ConfigurationError(
            f"an attempt id is made of A-Z, a-z, 0-9, '_' and '-' only, got {attempt_id!r}"
        )
    if len(attempt_id) > ATTEMPT_ID_MAX:
        raise ConfigurationError(
            f"an attempt id has at most {ATTEMPT_ID_MAX} characters, got {attempt_id!r}"
        )
    return attempt_id


def local_attempt_ids(count: int) -> list[str]:
    """The attempt ids of one run of ``count`` pipes: one fresh run token, then each index."""
    if count < 0:
        raise ConfigurationError(f"count must be 0 or more, got {count}")
    run = uuid.uuid4().hex[:12]
    return [check_attempt_id(f"{run}-{index}") for index in range(count)]


def slurm_attempt_prefix(job: str, task: int) -> str:
    """What every attempt id of Slurm task ``task`` of array ``job`` starts with."""
    return f"{job}-{task}-r"


def slurm_attempt_id(job: str, task: int, restart: int = 0) -> str:
    """The id of run number ``restart`` (0 first, then one per requeue) of a Slurm task."""
    if task < 0 or restart < 0:
        raise ConfigurationError(f"task and restart must be 0 or more, got {task}, {restart}")
    return check_attempt_id(f"{slurm_attempt_prefix(job, task)}{restart}")


def slurm_attempt_id_from_environment(environ: Mapping[str, str] | None = None) -> str:
    """The attempt id of the Slurm task this process runs in, from Slurm's variables.

    Outside an array the job id stands for the array (task 0); outside Slurm the job is
    ``local``.
    """
    env = os.environ if environ is None else environ
    job = env.get("SLURM_ARRAY_JOB_ID") or env.get("SLURM_JOB_ID") or "local"
    task = env.get("SLURM_ARRAY_TASK_ID") or "0"
    restart = env.get("SLURM_RESTART_COUNT") or "0"
    if not task.isdigit() or not restart.isdigit():
        raise ConfigurationError(
            f"unexpected Slurm task id {task!r} or restart count {restart!r} in the environment"
        )
    return slurm_attempt_id(job, int(task), int(restart))


def slurm_restart(attempt_id: str, job: str, task: int) -> int | None:
    """The restart count of ``attempt_id`` if it is an attempt of that task, else None."""
    prefix = slurm_attempt_prefix(job, task)
    if not attempt_id.startswith(prefix):
        return None
    rest = attempt_id[len(prefix) :]
    return int(rest) if rest.isdigit() else None


def parse_attempt_id(attempt_id: str) -> LocalAttempt | SlurmAttempt:
    """What an attempt id made by this module says; ConfigurationError for any other text."""
    check_attempt_id(attempt_id)
    slurm = _SLURM.fullmatch(attempt_id)
    if slurm is not None:
        return SlurmAttempt(slurm["job"], int(slurm["task"]), int(slurm["restart"]))
    local = _LOCAL.fullmatch(attempt_id)
    if local is not None:
        return LocalAttempt(local["run"], int(local["index"]))
    raise ConfigurationError(f"{attempt_id!r} is neither a local nor a Slurm attempt id")


def record_name(index: int, attempt_id: str) -> str:
    """The file name of the progress record of attempt ``attempt_id`` of pipe ``index``."""
    if index < 0:
        raise ConfigurationError(f"a pipe index is 0 or more, got {index}")
    return f"progress-{index:05d}.{check_attempt_id(attempt_id)}.rec"


def parse_record_name(name: str) -> tuple[int, str] | None:
    """``(pipe index, attempt id)`` of a progress record's file name, None for another file."""
    match = _RECORD.fullmatch(name)
    if match is None or len(match["attempt"]) > ATTEMPT_ID_MAX:
        return None
    return int(match["index"]), match["attempt"]
