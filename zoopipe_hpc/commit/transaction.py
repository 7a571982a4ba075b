"""The transaction of a run: every target of the run is committed together, or none is.

A run (a ``PipeManager.run()``, a durable job, a single ``Pipe.run()``) has one
:class:`Transaction`. Its targets are the files and tables the run writes; each has a staging
folder (:class:`~zoopipe_hpc.commit._staging.StagingArea`) and a commit strategy. Workers write
only into staging and report what they staged (:mod:`~zoopipe_hpc.commit.staged`); only the
process that concludes the run commits:

1. **prepare** every target (merge parts, check a table's schema): nothing is visible yet; any
   failure rolls everything back (:meth:`rollback`) and every target stays as it was;
2. take every target's lock, in path order;
3. write the **commit record** (``commit.json`` in the primary staging folder, atomically): from
   here on the run is decided and will be published, whatever happens to this process;
4. **publish** every target (file renames first, catalog commits last), each idempotent;
5. remove the staging folders, the primary one (with the record) last.

A crash before step 3 leaves every target old: the next run of any of the targets (or a
``zoopipe-hpc`` command on the job) finds the dead run's staging folders without a record and
discards them. A crash after it leaves some targets new and some old until recovery, which
finds the record and publishes the rest: after recovery, all targets are new. See
``docs/commit.md`` for the crash-point table.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CommitError, ConfigurationError, ZoopipeHPCError
from ._atomic import atomic_write
from ._locks import locked_all
from ._record import (
    RECORD_FORMAT,
    any_external_landed,
    clean_leftovers,
    lock_paths,
    publish_record,
    read_record,
    settle_record,
)
from ._staging import StagingArea, new_run_id
from .staged import StagedFile, WorkerOutcome
from .strategies import CommitStrategy, strategy_for

if TYPE_CHECKING:
    from ..adapters.base import BaseOutputAdapter

__all__ = ["Slot", "Target", "Transaction", "clean_leftovers", "target_key"]

log = logging.getLogger(__name__)


def _step(name: str) -> None:
    """A named point between two steps of the commit (a test hook for crash injection)."""


def _hook(name: str) -> None:
    """Calls this module's ``_step`` as it is now (tests replace it)."""
    _step(name)


def target_key(adapter: BaseOutputAdapter) -> str:
    """What identifies a target: its path with ``..`` and symlinks resolved."""
    key = getattr(adapter, "commit_key", None)
    if callable(key):
        return str(key())
    return os.path.realpath(adapter.path)


@dataclass(frozen=True)
class Slot:
    """Part ``index`` of a target comes from pipe ``pipe_index``'s ``role`` output."""

    pipe_index: int
    role: str


@dataclass
class Target:
    """One target of a run: where it is staged, how it is committed, and its parts."""

    key: str
    adapter: BaseOutputAdapter
    staging: StagingArea
    slots: list[Slot]
    strategy: CommitStrategy = field(init=False)

    def __post_init__(self) -> None:
        self.strategy = strategy_for(self.adapter, self.staging, len(self.slots))

    @property
    def name(self) -> str:
        return self.strategy.target_name


class Transaction:
    """Commit-or-discard of every target of one run (see the module documentation).

    ``run_id`` names the staging folders (a durable job passes its own, so that any process can
    find them); ``job_dir`` marks them as owned by that job's directory rather than by this
    process.
    """

    def __init__(
        self, run_id: str | None = None, job_dir: str | os.PathLike[str] | None = None
    ) -> None:
        self.run_id = run_id or new_run_id()
        self.job_dir = Path(job_dir).absolute() if job_dir is not None else None
        self.targets: list[Target] = []
        #: ``begun`` -> ``committed`` or ``rolled_back`` (or ``decided`` if publishing failed).
        self.state = "new"
        self._keys: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"Transaction(run {self.run_id}, {len(self.targets)} targets, {self.state})"

    # -- planning ---------------------------------------------------------------------------

    def add(self, adapter: BaseOutputAdapter, slots: Sequence[Slot], what: str) -> Target:
        """Add a target written by ``slots``; ``what`` names its role in errors."""
        key = target_key(adapter)
        if key in self._keys:
            raise ConfigurationError(
                f"{what} and {self._keys[key]} are the same target {key}: one would overwrite "
                "the other's records; give each its own path"
            )
        self._keys[key] = what
        target = Target(key, adapter, StagingArea(adapter.path, self.run_id), list(slots))
        self.targets.append(target)
        return target

    @property
    def primary(self) -> StagingArea:
        """The staging folder that holds the commit record (the first target in key order)."""
        if not self.targets:
            raise ConfigurationError("a transaction needs at least one target")
        return min(self.targets, key=lambda t: t.key).staging

    def _description(self) -> dict[str, Any]:
        return {
            "format": RECORD_FORMAT,
            "run_id": self.run_id,
            "primary": str(self.primary.path),
            "folders": [str(t.staging.path) for t in self.targets],
            "job_dir": str(self.job_dir) if self.job_dir is not None else None,
        }

    # -- lifecycle --------------------------------------------------------------------------

    def begin(self) -> None:
        """Finish or discard what dead runs left next to the targets, then create this run's
        staging folders. Idempotent for one run id (a durable job calls it again on resume)."""
        description = self._description()
        for target in self.targets:
            target.staging.check()  # nothing in a staging folder another user could write
        if self.primary.record_path.exists():
            # A process of this same run id decided, then died: finish that first, so that
            # this run can never leave its targets half old, half new.
            self.recover()
        ours = {t.staging.path for t in self.targets}
        for target in self.targets:
            clean_leftovers(target.staging.target, keep=ours, strategies=self._strategies())
        for target in self.targets:
            target.strategy.begin()
            target.staging.create(job_dir=self.job_dir, transaction=description)
        self.state = "begun"

    def _strategies(self) -> dict[str, CommitStrategy]:
        return {t.key: t.strategy for t in self.targets}

    def files_for(self, target: Target, outcomes: Mapping[int, WorkerOutcome]) -> list[StagedFile]:
        """The staged file of every part of ``target``, checked to be there, in part order."""
        files = []
        for slot in target.slots:
            outcome = outcomes.get(slot.pipe_index)
            staged = None
            if outcome is not None:
                staged = next((f for f in outcome.files if f.role == slot.role), None)
            if staged is None:
                raise CommitError(
                    f"shard {slot.pipe_index} reported no staged {slot.role} file for "
                    f"{target.name}; nothing was committed",
                    path=target.key,
                    shard=slot.pipe_index,
                )
            staged.check(target.name, slot.pipe_index)
            files.append(staged)
        return files

    def commit(self, outcomes: Mapping[int, WorkerOutcome]) -> None:
        """Publish every target from the workers' ``outcomes`` (by pipe index), or none.

        Raises :class:`CommitError`: before the decision every target is untouched and the
        staging is gone; after it (publishing failed even after retries) the record is kept
        and the message says how the commit will be finished.
        """
        if self.state != "begun":
            raise CommitError(
                f"run {self.run_id}: cannot commit a transaction that is {self.state}"
            )
        ordered = sorted(self.targets, key=lambda t: (not t.strategy.external, t.key))
        try:
            entries = []
            for target in ordered:
                entry = target.strategy.prepare(self.files_for(target, outcomes))
                entries.append(
                    {
                        "key": target.key,
                        "name": target.name,
                        "external": target.strategy.external,
                        "entry": entry,
                    }
                )
            _join_groups(ordered, entries)
            _step("prepared")
        except BaseException as exc:
            self.rollback(exc)
            raise _as_commit_error(exc, "prepare") from exc
        record = self._description() | {"state": "prepared", "targets": entries}
        try:
            with locked_all(lock_paths(record)):
                _step("locked")
                self._write_record(record)
                _step("recorded-prepared")
                self._publish_external(record)
                record["state"] = "decided"
                record["decided"] = time.time()
                self._write_record(record)
                self.state = "decided"
                _step("recorded")
                publish_record(record, self._strategies(), step=_hook)
        except BaseException as exc:
            if self.state != "decided":
                # Not decided: this process withdraws its record and undoes the run itself.
                self.primary.record_path.unlink(missing_ok=True)
                self.rollback(exc)
                raise _as_commit_error(exc, "publish") from exc
            raise CommitError(
                f"run {self.run_id} was decided but publishing failed: {exc}; the commit record "
                f"{self.primary.record_path} is kept, and the next run on these targets (or "
                f"`zoopipe-hpc resume` for a durable job) finishes it",
                path=str(self.primary.record_path),
                operation="publish",
                run_id=self.run_id,
            ) from exc
        self.state = "committed"
        self._discard_all()

    def _write_record(self, record: dict[str, Any]) -> None:
        atomic_write(self.primary.record_path, json.dumps(record, indent=1).encode())

    def _publish_external(self, record: dict[str, Any]) -> None:
        """Publish the catalog (non-file) targets first, while the run can still be undone:
        if none of them landed, the record is withdrawn and the run rolled back."""
        strategies = self._strategies()
        try:
            publish_record(record, strategies, external=True, step=_hook)
        except BaseException:
            if any_external_landed(record, strategies):
                record["state"] = "decided"
                self._write_record(record)
                self.state = "decided"
            else:
                self.primary.record_path.unlink(missing_ok=True)
            raise

    def rollback(self, reason: BaseException | str = "") -> None:
        """Discard every staged file of the run; the targets stay as they were. Idempotent;
        refuses once the run is decided (it can only be finished then, see :meth:`recover`)."""
        if self.state in ("rolled_back", "committed"):
            return
        if self.state == "decided" or self.primary.record_path.exists():
            log.error(
                "run %s is decided (commit record %s): not rolling back; it will be finished",
                self.run_id,
                self.primary.record_path,
            )
            return
        self._discard_all()
        self.state = "rolled_back"
        for target in self.targets:
            target.strategy.rolled_back(str(reason))
            log.info(
                "rolled back %s (%s); the previous contents are untouched", target.name, reason
            )

    def recover(self, *, keep_undone: bool = False) -> bool | None:
        """Settle this run's own commit record, left by a process that died while committing:
        True if the run was finished (every target new), False if it was undone (every target
        old), None if there was no record. ``keep_undone`` keeps the staged files of an undone
        run so that its commit can be run again (a durable job's shards need not rerun)."""
        record = read_record(self.primary.record_path)
        if record is None:
            return None
        finished = settle_record(record, self._strategies(), step=_hook)
        if finished:
            self.state = "committed"
            self._discard_all()
        else:
            self.primary.record_path.unlink(missing_ok=True)
            if keep_undone:
                self.state = "begun"
            else:
                self.state = "rolled_back"
                self._discard_all()
        return finished

    def _discard_all(self) -> None:
        primary = self.primary
        for target in self.targets:
            if target.staging.path != primary.path:
                target.staging.discard()
        _step("cleaning")
        primary.discard()


def _join_groups(targets: Sequence[Target], items: Sequence[dict[str, Any]]) -> None:
    """Give every target of a group (:meth:`CommitStrategy.group`) the entries of the whole
    group, so that publishing any one of them can commit them all (``items[i]`` is the record
    item of ``targets[i]``)."""
    groups: dict[str, list[tuple[CommitStrategy, dict[str, Any]]]] = {}
    for target, item in zip(targets, items, strict=True):
        key = target.strategy.group()
        if key is not None:
            groups.setdefault(key, []).append((target.strategy, item))
    for members in groups.values():
        prepared = [item["entry"] for _, item in members]
        for strategy, item in members:
            item["entry"] = strategy.join(item["entry"], prepared)


def _as_commit_error(exc: BaseException, operation: str) -> BaseException:
    if isinstance(exc, ZoopipeHPCError) or not isinstance(exc, Exception):
        return exc
    path = getattr(exc, "filename", None)
    return CommitError(
        f"commit failed during {operation}"
        + (f" on {path}" if path else "")
        + f": {type(exc).__name__}: {exc}; nothing was committed",
        path=str(path) if path else None,
        operation=operation,
    )
