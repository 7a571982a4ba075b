"""The manifest of a durable job: one checksummed JSON file, changed only under a lock.

A durable job owns a job directory on the shared filesystem (seen by login and compute nodes) that
outlives the process that submitted it. ``manifest.json`` in that directory is the job's single
source of truth. Every change goes through :meth:`JobDirectory.update`, which

1. takes an exclusive :class:`filelock.StrictSoftFileLock` on ``.manifest.lock`` (hard-link
   claims, so it excludes across NFS clients; claims of dead processes on this host are reclaimed);
2. reads the manifest and verifies its checksum;
3. refuses with :class:`ManifestConflict` if the caller's ``expected_version`` is not the current
   one (optimistic locking: someone else changed the job since the caller read it);
4. applies the change, bumps ``version``, records an event, and writes the new file atomically
   (temporary file in the same folder, fsync, ``os.replace``, fsync of the folder).

Readers take no lock: thanks to the atomic replace they see either the previous or the new
manifest, never a mix. A manifest whose checksum does not match is refused with
:class:`ManifestError`. The file format is described in ``docs/job-directory.md``.

This module is the manifest's data model (:class:`Manifest`, :class:`ShardRecord`,
:class:`JobState`), its strict parser, and :class:`JobDirectory`'s rules for creating, reading
and changing it; the file itself (envelope and checksum, lock, atomic write) is
:mod:`zoopipe_hpc.jobs._manifest_file`'s. Why a little over 400 lines: the model and the
directory share the parser's internal ``_Invalid``, which :meth:`Manifest.from_json` and every
:class:`JobDirectory` operation turn into an error naming the file; what splits off cleanly
(the file) has been split off.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import enum
import json
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..commit._atomic import fsync_path
from ..errors import ConfigurationError, ManifestConflict, ManifestError
from ._manifest_file import CHECKSUM_PREFIX, FORMAT, decode, encode, locked, read_bytes, write

__all__ = [
    "ManifestError",
    "ManifestConflict",
    "JobState",
    "ShardRecord",
    "Manifest",
    "JobDirectory",
    "FORMAT",
    "CHECKSUM_PREFIX",
]


class JobState(enum.StrEnum):
    """The life cycle of a durable job (a ``str`` enum: ``JobState.RUNNING == "running"``)."""

    SUBMITTED = "submitted"
    RUNNING = "running"
    COMMITTING = "committing"
    COMMITTED = "committed"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        """True once nothing more will happen to the job; a FAILED job can still be retried."""
        return self in _FINAL_STATES


_FINAL_STATES = frozenset({JobState.COMMITTED, JobState.ROLLED_BACK, JobState.CANCELLED})


@dataclass
class ShardRecord:
    """What the job knows about one shard."""

    index: int
    source: str
    submissions: list[str]
    state: str = "pending"
    attempt_id: str = ""
    message: str = ""
    #: How many of ``submissions`` came before the current round. A round is the first
    #: submission or a ``zoopipe-hpc retry``, with the automatic retries that follow it; a round
    #: submits the shard at most ``1 + max_retries`` times.
    round_start: int = 0


@dataclass
class Manifest:
    """The durable record of one job. ``version``, ``created``, ``updated`` and ``events`` are
    maintained by :class:`JobDirectory`."""

    job_id: str
    name: str
    engine: str
    run_id: str
    config: dict[str, Any]
    shards: list[ShardRecord]
    state: JobState = JobState.SUBMITTED
    version: int = 0
    created: float = 0.0
    updated: float = 0.0
    arrays: list[str] = field(default_factory=list)
    finish_jobs: dict[str, str] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""
    #: Who may retry failed shards: ``{"kind": "attached", "host", "pid", "started"}`` (the
    #: ``run``, ``resume`` or ``retry`` process) or ``{"kind": "detached", "job": <recover job>}``;
    #: empty when nobody may (a new job, or one being cancelled).
    retry_owner: dict[str, str] = field(default_factory=dict)
    #: Submissions announced but not yet confirmed by ``sbatch``: token -> shard indices. They
    #: count as submissions until confirmed (then moved to the shards) or withdrawn.
    submitting: dict[str, list[int]] = field(default_factory=dict)

    def submissions_used(self, index: int) -> int:
        """How often shard ``index`` was submitted in its current round, announced ones included."""
        shard = self.shards[index]
        announced = sum(1 for indices in self.submitting.values() if index in indices)
        return len(shard.submissions) - shard.round_start + announced

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict of the manifest (a deep copy: changing it leaves ``self`` alone)."""
        return {
            "job_id": self.job_id,
            "name": self.name,
            "engine": self.engine,
            "run_id": self.run_id,
            "config": copy.deepcopy(self.config),
            "shards": [dataclasses.asdict(shard) for shard in self.shards],
            "state": JobState(self.state).value,
            "version": self.version,
            "created": self.created,
            "updated": self.updated,
            "arrays": list(self.arrays),
            "finish_jobs": dict(self.finish_jobs),
            "events": copy.deepcopy(self.events),
            "message": self.message,
            "retry_owner": dict(self.retry_owner),
            "submitting": {token: list(indices) for token, indices in self.submitting.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Manifest:
        """Build a manifest from :meth:`to_json` output; :class:`ManifestError` if it is invalid."""
        try:
            return _manifest_from_json(data)
        except _Invalid as exc:
            raise ManifestError(f"invalid manifest: {exc}", path="") from None


class _Invalid(Exception):
    """Internal: a manifest document does not have the expected shape."""


_PARSE_TYPES: dict[str, tuple[type, ...]] = {
    "job_id": (str,),
    "name": (str,),
    "engine": (str,),
    "run_id": (str,),
    "config": (dict,),
    "shards": (list,),
    "state": (str,),
    "version": (int,),
    "created": (int, float),
    "updated": (int, float),
    "arrays": (list,),
    "finish_jobs": (dict,),
    "events": (list,),
    "message": (str,),
    "retry_owner": (dict,),
    "submitting": (dict,),
}
_REQUIRED = ("job_id", "name", "engine", "run_id", "config", "shards")
_SHARD_TYPES: dict[str, tuple[type, ...]] = {
    "index": (int,),
    "source": (str,),
    "submissions": (list,),
    "state": (str,),
    "attempt_id": (str,),
    "message": (str,),
    "round_start": (int,),
}


def _check(where: str, value: Any, kinds: tuple[type, ...]) -> None:
    if isinstance(value, bool) or not isinstance(value, kinds):
        names = " or ".join(kind.__name__ for kind in kinds)
        raise _Invalid(f"{where} must be {names}, not {type(value).__name__}")


def _check_keys(where: str, data: Mapping[str, Any], known: Mapping[str, Any]) -> None:
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise _Invalid(
            f"{where} has unknown field(s) {', '.join(map(repr, unknown))} "
            f"(written by a newer zoopipe-hpc?)"
        )


def _shard_from_json(position: int, data: Any) -> ShardRecord:
    where = f"shards[{position}]"
    _check(where, data, (dict,))
    _check_keys(where, data, _SHARD_TYPES)
    for key in ("index", "source", "submissions"):
        if key not in data:
            raise _Invalid(f"{where} lacks the field {key!r}")
    for key, value in data.items():
        _check(f"{where}.{key}", value, _SHARD_TYPES[key])
    for number, submission in enumerate(data["submissions"]):
        _check(f"{where}.submissions[{number}]", submission, (str,))
    round_start = data.get("round_start", 0)
    if not 0 <= round_start <= len(data["submissions"]):
        raise _Invalid(
            f"{where}.round_start must be between 0 and the number of submissions, "
            f"not {round_start}"
        )
    return ShardRecord(
        index=data["index"],
        source=data["source"],
        submissions=list(data["submissions"]),
        state=data.get("state", "pending"),
        attempt_id=data.get("attempt_id", ""),
        message=data.get("message", ""),
        round_start=round_start,
    )


def _manifest_from_json(data: Any) -> Manifest:
    _check("the manifest", data, (dict,))
    _check_keys("the manifest", data, _PARSE_TYPES)
    for key in _REQUIRED:
        if key not in data:
            raise _Invalid(f"the field {key!r} is missing")
    for key, value in data.items():
        _check(key, value, _PARSE_TYPES[key])
    try:
        state = JobState(data.get("state", JobState.SUBMITTED.value))
    except ValueError:
        known = ", ".join(s.value for s in JobState)
        raise _Invalid(f"unknown job state {data['state']!r} (known: {known})") from None
    version = data.get("version", 0)
    if version < 0:
        raise _Invalid(f"version must not be negative, not {version}")
    arrays = data.get("arrays", [])
    for number, array in enumerate(arrays):
        _check(f"arrays[{number}]", array, (str,))
    finish_jobs = data.get("finish_jobs", {})
    for key, value in finish_jobs.items():
        _check(f"finish_jobs[{key!r}]", value, (str,))
    events = data.get("events", [])
    for number, event in enumerate(events):
        _check(f"events[{number}]", event, (dict,))
    retry_owner = data.get("retry_owner", {})
    for key, value in retry_owner.items():
        _check(f"retry_owner[{key!r}]", value, (str,))
    submitting = data.get("submitting", {})
    for token, indices in submitting.items():
        _check(f"submitting[{token!r}]", indices, (list,))
        for index in indices:
            _check(f"submitting[{token!r}][]", index, (int,))
            if not 0 <= index < len(data["shards"]):
                raise _Invalid(f"submitting[{token!r}] names shard {index}, which does not exist")
    return Manifest(
        job_id=data["job_id"],
        name=data["name"],
        engine=data["engine"],
        run_id=data["run_id"],
        config=copy.deepcopy(data["config"]),
        shards=[_shard_from_json(n, shard) for n, shard in enumerate(data["shards"])],
        state=state,
        version=version,
        created=float(data.get("created", 0.0)),
        updated=float(data.get("updated", 0.0)),
        arrays=list(arrays),
        finish_jobs=dict(finish_jobs),
        events=copy.deepcopy(events),
        message=data.get("message", ""),
        retry_owner=dict(retry_owner),
        submitting={token: list(indices) for token, indices in submitting.items()},
    )


def _serialise(manifest: Manifest) -> tuple[bytes, Manifest]:
    """The file content for ``manifest`` and the manifest a reader will get back from it."""
    try:
        data = encode(manifest.to_json())
    except (TypeError, ValueError) as exc:
        raise _Invalid(f"it is not plain JSON data ({exc})") from None
    return data, _manifest_from_json(json.loads(data)["manifest"])


def _who() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _event(version: int, what: str) -> dict[str, Any]:
    return {"time": time.time(), "version": version, "what": what, "by": _who()}


class JobDirectory:
    """A job directory and its manifest; the one place that changes a job's durable state."""

    MANIFEST = "manifest.json"
    LOCK = ".manifest.lock"
    #: Seconds :meth:`update` waits for the lock. It is held only for one read-modify-write, so
    #: a long wait means a holder on another host died; the error then names the claim to remove.
    LOCK_TIMEOUT = 120.0

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).absolute()
        self.lock_timeout = self.LOCK_TIMEOUT

    def __repr__(self) -> str:
        return f"JobDirectory({str(self.path)!r})"

    @property
    def manifest_path(self) -> Path:
        return self.path / self.MANIFEST

    @property
    def lock_path(self) -> Path:
        return self.path / self.LOCK

    def exists(self) -> bool:
        """True if the directory holds a manifest (it may still fail to verify in :meth:`read`)."""
        return os.path.lexists(self.manifest_path)

    # -- reading ----------------------------------------------------------------------------------

    def read(self) -> Manifest:
        """The current manifest, verified; :class:`ManifestError` naming the path and the reason."""
        where = str(self.manifest_path)
        body = decode(read_bytes(self.path, self.manifest_path), where)
        try:
            return _manifest_from_json(body)
        except _Invalid as exc:
            raise ManifestError(f"invalid manifest: {exc}", path=where) from None

    # -- writing ----------------------------------------------------------------------------------

    def create(self, manifest: Manifest) -> Manifest:
        """Create the directory (mode 0700) and write ``manifest`` as version 1.

        :class:`ManifestError` if the directory already holds a manifest; ``manifest`` itself is
        not modified, the written manifest is returned.
        """
        where = str(self.manifest_path)
        existed = self.path.is_dir()
        try:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ManifestError(
                f"cannot create the job directory: {exc.strerror or type(exc).__name__}",
                path=where,
            ) from exc
        if not existed:
            fsync_path(self.path.parent)
        with self._locked():
            if self.exists():
                raise ManifestError(
                    "the job directory already holds a manifest; refusing to overwrite it "
                    "(resume that job, or choose another job directory)",
                    path=where,
                )
            draft = copy.deepcopy(manifest)
            now = time.time()
            draft.version = 1
            draft.created = now
            draft.updated = now
            draft.events = [*draft.events, _event(1, "created")]
            try:
                data, written = _serialise(draft)
            except _Invalid as exc:
                raise ConfigurationError(f"cannot create job {manifest.job_id!r}: {exc}") from None
            self._write(data)
        return written

    def update(
        self,
        change: Callable[[Manifest], None],
        *,
        expected_version: int | None = None,
        what: str = "",
    ) -> Manifest:
        """Apply ``change`` to the current manifest under the job lock and write the result.

        ``change`` gets a copy of the verified manifest and modifies it in place; it must not touch
        ``job_id``, ``version``, ``created`` or ``events`` (update() maintains them) and must not
        call :meth:`update` of the same job (the lock is not re-entrant). If ``expected_version``
        is given and the manifest is at another version, :class:`ManifestConflict` is raised and
        nothing is written; if ``change`` raises, nothing is written either. Returns the new
        manifest.
        """
        where = str(self.manifest_path)
        if not self.path.is_dir():
            raise ManifestError("no such job directory", path=where)
        with self._locked():
            current = self.read()
            if expected_version is not None and current.version != expected_version:
                raise ManifestConflict(
                    path=where, expected_version=expected_version, actual_version=current.version
                )
            draft = copy.deepcopy(current)
            change(draft)
            for name in ("job_id", "version", "created", "events"):
                if getattr(draft, name) != getattr(current, name):
                    raise ConfigurationError(
                        f"{where}: a manifest change may not modify {name!r}; "
                        f"JobDirectory.update() maintains it"
                    )
            draft.version = current.version + 1
            draft.updated = time.time()
            draft.events = [*current.events, _event(draft.version, what or "update")]
            try:
                data, written = _serialise(draft)
            except _Invalid as exc:
                raise ConfigurationError(
                    f"{where}: the change left the manifest invalid: {exc}"
                ) from None
            self._write(data)
        return written

    def _write(self, data: bytes) -> None:
        """Atomically replace the manifest with ``data`` (the caller holds the lock)."""
        write(self.path, self.manifest_path, data)

    def _locked(self) -> contextlib.AbstractContextManager[None]:
        return locked(self.lock_path, self.lock_timeout, self.manifest_path)
