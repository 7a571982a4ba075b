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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CommitError, ConfigurationError, ZoopipeHPCError
from ._atomic import atomic_write
from ._locks import locked_all
from ._staging import (
    RECORD_FILE,
    TRANSACTION_FILE,
    StagingArea,
    new_run_id,
    owner_is_dead,
    run_folders,
)
from .staged import StagedFile, WorkerOutcome
from .strategies import CommitStrategy, FileStrategy, strategy_for

if TYPE_CHECKING:
    from ..adapters.base import BaseOutputAdapter

__all__ = ["Slot", "Target", "Transaction", "clean_leftovers", "target_key"]

log = logging.getLogger(__name__)

RECORD_FORMAT = "zoopipe-hpc-commit/1"
_PUBLISH_ATTEMPTS = 3


def _step(name: str) -> None:
    """A named point between two steps of the commit (a test hook for crash injection)."""


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
            _step("prepared")
        except BaseException as exc:
            self.rollback(exc)
            raise _as_commit_error(exc, "prepare") from exc
        record = self._description() | {"state": "prepared", "targets": entries}
        try:
            with locked_all(_lock_paths(record)):
                _step("locked")
                self._write_record(record)
                _step("recorded-prepared")
                self._publish_external(record)
                record["state"] = "decided"
                record["decided"] = time.time()
                self._write_record(record)
                self.state = "decided"
                _step("recorded")
                _publish(record, self._strategies())
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
            _publish(record, strategies, external=True)
        except BaseException:
            if _any_external_landed(record, strategies):
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
            log.info(
                "rolled back %s (%s); the previous contents are untouched", target.name, reason
            )

    def recover(self, *, keep_undone: bool = False) -> bool | None:
        """Settle this run's own commit record, left by a process that died while committing:
        True if the run was finished (every target new), False if it was undone (every target
        old), None if there was no record. ``keep_undone`` keeps the staged files of an undone
        run so that its commit can be run again (a durable job's shards need not rerun)."""
        record = _read_record(self.primary.record_path)
        if record is None:
            return None
        finished = _settle_record(record, self._strategies())
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


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise CommitError(
            f"the commit record {path} cannot be read ({exc}); its run's targets may be "
            "partly published: look at the record and the staging folder next to it",
            path=str(path),
        ) from exc
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        raise CommitError(f"{path} is not a commit record", path=str(path))
    return record


def _lock_paths(record: dict[str, Any]) -> list[Path]:
    """The targets whose commit locks a record's publication takes: the files (a catalog
    orders concurrent commits itself, and a table's writers must not wait on each other)."""
    return [Path(t["key"]) for t in record["targets"] if not t.get("external")]


def _any_external_landed(record: dict[str, Any], strategies: Mapping[str, CommitStrategy]) -> bool:
    """Whether any catalog target of a record already has the run (True when unsure)."""
    for item in record["targets"]:
        if not item.get("external"):
            continue
        strategy = strategies.get(item["key"])
        if strategy is None:
            return True
        try:
            if strategy.landed(item["entry"]):
                return True
        except Exception as exc:  # noqa: BLE001 - cannot tell: treat as landed, finish it later
            log.error("cannot tell whether %s has run %s: %s", item["name"], record["run_id"], exc)
            return True
    return False


def _settle_record(record: dict[str, Any], strategies: Mapping[str, CommitStrategy]) -> bool:
    """Finish (True) or undo (False) the run of a commit record whose process died; the
    caller discards the run's staging folders afterwards."""
    with locked_all(_lock_paths(record)):
        if record.get("state") != "decided" and not _any_external_landed(record, strategies):
            log.warning("undoing run %s: it died before its commit was decided", record["run_id"])
            return False
        log.warning("finishing the commit of run %s from its record", record["run_id"])
        _publish(record, strategies)
        return True


def _publish(
    record: dict[str, Any],
    strategies: Mapping[str, CommitStrategy],
    external: bool | None = None,
) -> None:
    """Publish the entries of a record (all, or only the catalog ones / only the files); the
    caller holds the locks. Each entry is idempotent."""
    for index, item in enumerate(record["targets"]):
        if external is not None and bool(item.get("external")) is not external:
            continue
        entry = item["entry"]
        strategy = strategies.get(item["key"])
        if strategy is None:
            if entry.get("kind") != FileStrategy.name:
                raise CommitError(
                    f"run {record['run_id']}: {item['name']} needs its adapter to be finished; "
                    f"rerun the job that wrote it (commit record {record['primary']})",
                    path=item["key"],
                )
            publish: Callable[[dict[str, Any]], None] = FileStrategy.publish_entry
        else:
            publish = strategy.publish
        if item.get("external"):
            publish(entry)  # a catalog retries conflicts itself; a failure is reported as is
        else:
            _retrying(publish, entry, item["name"])
        log.info("committed %s (run %s)", item["name"], record["run_id"])
        _step(f"published:{index}")


def _retrying(publish: Callable[[dict[str, Any]], None], entry: dict[str, Any], name: str) -> None:
    for attempt in range(_PUBLISH_ATTEMPTS):
        try:
            publish(entry)
            return
        except (OSError, CommitError) as exc:
            if attempt + 1 == _PUBLISH_ATTEMPTS:
                raise
            log.warning("publishing %s failed (%s); retrying", name, exc)
            time.sleep(0.2 * (attempt + 1))


def clean_leftovers(
    target: str | os.PathLike[str],
    *,
    keep: set[Path] | frozenset[Path] = frozenset(),
    strategies: Mapping[str, CommitStrategy] | None = None,
) -> list[Path]:
    """Finish or discard the runs of ``target`` whose owner is provably gone.

    A dead run's folders with a commit record are published from the record (all of the run's
    targets, under their locks); without one they are discarded (with the run's folders next
    to its other targets). A live run's folders, and ``keep``, are left alone. Returns the
    folders removed.
    """
    removed: list[Path] = []
    for folder in run_folders(Path(target).absolute()):
        if folder in keep or not folder.exists() or not owner_is_dead(folder):
            continue
        removed.extend(_settle_dead_run(folder, strategies or {}))
    return removed


def _settle_dead_run(folder: Path, strategies: Mapping[str, CommitStrategy]) -> list[Path]:
    try:
        description = json.loads((folder / TRANSACTION_FILE).read_bytes())
        primary = Path(description["primary"])
        folders = [Path(p) for p in description["folders"]]
    except FileNotFoundError:
        primary, folders = folder, [folder]  # a folder of an older version: nothing to finish
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning(
            "leaving the staging folder %s alone: unreadable %s (%s)", folder, TRANSACTION_FILE, exc
        )
        return []
    record = _read_record(primary / RECORD_FILE)
    if record is not None:
        _settle_record(record, strategies)
    removed = []
    for path in [*[p for p in folders if p != primary], primary]:
        if path.exists():
            StagingArea.discard_folder(path)
            removed.append(path)
            log.info("removed leftover staging folder %s", path)
    return removed
