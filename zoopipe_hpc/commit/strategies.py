"""Commit strategies: how the staged files of one target become that target.

The :class:`~zoopipe_hpc.commit.transaction.Transaction` of a run drives every target through
two steps, the same for every strategy:

1. ``prepare(files)``: turn the workers' staged files into what will be published (merge the
   parts of a file, check the parts against a table's schema) *without making anything
   visible*; returns the target's entry of the commit record, a JSON object. It may fail: the
   run is then rolled back and every target stays as it was.
2. ``publish(entry)``: make it visible. Runs after the commit record is durable, under every
   target's lock, and must be idempotent: after a crash, recovery runs it again from the record
   (an entry may be half done: a rename that already happened, a snapshot already appended).

A strategy is chosen by the output adapter's ``commit_strategy`` name through
:func:`strategy_for`; :func:`register_strategy` adds one (a database table, an object store).
Targets whose strategies name one :meth:`~CommitStrategy.group` (the tables of one DuckDB file)
are joined after ``prepare``, so that one ``publish`` can commit them together.
The adapters never import this module, so the commit layer can import them.
"""

from __future__ import annotations

import abc
import errno
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import CommitError, ConfigurationError
from ._atomic import fsync_path
from ._staging import StagingArea, publish_staged, publish_staged_folder
from .staged import StagedFile

if TYPE_CHECKING:
    from ..adapters.base import BaseOutputAdapter

__all__ = [
    "CommitStrategy",
    "DatasetStrategy",
    "FileStrategy",
    "register_strategy",
    "standalone_strategy",
    "strategy_for",
]

log = logging.getLogger(__name__)


class CommitStrategy(abc.ABC):
    """How one target (``adapter``, staged in ``staging``) is committed."""

    #: The name adapters give in ``commit_strategy``.
    name: ClassVar[str] = ""
    #: Whether ``publish`` can fail for reasons other than the filesystem (a catalog, a
    #: database): such targets are published last, after every file target.
    external: ClassVar[bool] = False
    #: Whether an entry alone is enough to publish it and to tell whether it landed
    #: (:meth:`publish_alone`, :meth:`landed_alone`): then a run that settles a dead run's record
    #: finishes this target even when it does not write the target itself.
    standalone: ClassVar[bool] = False

    def __init__(self, adapter: BaseOutputAdapter, staging: StagingArea, parts: int) -> None:
        self.adapter = adapter
        self.staging = staging
        self.parts = parts

    @property
    def target_name(self) -> str:
        """How errors and logs name the target."""
        return str(self.adapter.path)

    def begin(self) -> None:
        """Called once before any worker writes (create folders, open a catalog)."""

    @abc.abstractmethod
    def prepare(self, files: Sequence[StagedFile]) -> dict[str, Any]:
        """Make ``files`` (one per part, in part order) ready to publish; nothing visible."""

    @abc.abstractmethod
    def publish(self, entry: dict[str, Any]) -> None:
        """Make the prepared result visible; idempotent (re-run from the record on recovery)."""

    def group(self) -> str | None:
        """Targets of one run whose strategies name the same group are one unit of publishing
        (the tables of one database): after every target is prepared, :meth:`join` gives each
        of them the entries of the whole group, so that publishing any one of them can commit
        them all at once and the others find the work done. ``None``: a target of its own."""
        return None

    def join(self, entry: dict[str, Any], group: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """This target's entry once ``group`` (every prepared entry of its group, in commit
        order, its own included) is known; must stay JSON and publishable on its own."""
        return entry

    def landed(self, entry: dict[str, Any]) -> bool:
        """For an external target: whether ``publish`` already took effect (recovery of a run
        that died while publishing it). Files are published only after the decision."""
        return False

    def rolled_back(self, reason: str) -> None:
        """Called once when the run is rolled back (nothing of it was published)."""

    @classmethod
    def publish_alone(cls, entry: dict[str, Any]) -> None:
        """``publish(entry)`` without an adapter (only for a ``standalone`` strategy)."""
        raise CommitError(f"the {cls.name} strategy needs its adapter to publish an entry")

    @classmethod
    def landed_alone(cls, entry: dict[str, Any]) -> bool:
        """``landed(entry)`` without an adapter (only for a ``standalone`` strategy)."""
        raise CommitError(f"the {cls.name} strategy needs its adapter to look at an entry")

    def published(self, entry: dict[str, Any]) -> str:
        """A line for the log once ``publish`` returned."""
        return f"committed {self.target_name} from {self.parts} part(s)"


class FileStrategy(CommitStrategy):
    """One file: the parts are merged into a file in the staging folder, which then replaces
    the target with ``os.replace`` (a reader sees the old file or the whole new one). A target
    with one part written in the final format is published as it is, without a copy."""

    name = "file"
    standalone = True

    def prepare(self, files: Sequence[StagedFile]) -> dict[str, Any]:
        target = self.staging.target
        if len(files) == 1 and self.adapter.sole_part_is_final:
            ready, size = Path(files[0].path), files[0].size
        else:
            ready = self.staging.temp_path(target.name)
            try:
                self.adapter.merge([Path(f.path) for f in files], ready)
                fsync_path(ready)
                size = os.lstat(ready).st_size
            except OSError as exc:
                ready.unlink(missing_ok=True)
                raise CommitError(
                    f"merging {len(files)} parts into {target} failed: {exc}; nothing was "
                    f"committed and {target} is untouched",
                    path=str(target),
                    operation="merge",
                ) from exc
        return {"kind": self.name, "target": str(target), "ready": str(ready), "size": size}

    def publish(self, entry: dict[str, Any]) -> None:
        self.publish_entry(entry)

    @classmethod
    def publish_alone(cls, entry: dict[str, Any]) -> None:
        cls.publish_entry(entry)

    @staticmethod
    def publish_entry(entry: dict[str, Any]) -> None:
        """Publish a file entry of a commit record; needs nothing but the entry (recovery of
        another run's record uses it). Only a checked file of the target's own private staging
        folder is renamed (``publish_staged``); one renamed already, before a crash, is done."""
        ready, target = Path(entry["ready"]), Path(entry["target"])
        try:
            publish_staged(ready, target, entry.get("size"))
        except OSError as exc:
            raise CommitError(
                f"replacing {target} with {ready} failed: {exc}",
                path=str(target),
                operation="rename",
            ) from exc


class DatasetStrategy(CommitStrategy):
    """A folder of part files, published whole: ``prepare`` hard-links (or copies, where the
    filesystem has no hard links) each part that has rows into a version folder
    ``<name>.v-<run id>/`` inside the run's staging folder, as ``part-NNNNN-<run id><suffix>``
    in part order (nothing is re-encoded); ``publish`` moves that folder next to the target,
    renames a new symbolic link ``<name> -> <name>.v-<run id>`` over the target (the atomic
    step) and removes the previous versions. The staged parts stay where they are, so that an
    undone commit can be prepared again. See ``docs/parquet-layouts.md``."""

    name = "dataset"
    standalone = True

    def begin(self) -> None:
        target = self.staging.target
        if target.is_dir() and not target.is_symlink():
            raise CommitError(
                f"cannot write the dataset {target}: it is a folder that is not a dataset "
                "version link (a dataset is a link to its version folder); move it away or "
                "choose another path",
                path=str(target),
                operation="begin",
            )

    def prepare(self, files: Sequence[StagedFile]) -> dict[str, Any]:
        target, run_id = self.staging.target, self.staging.run_id
        version = self.staging.path / f"{target.name}.v-{run_id}"
        suffix = self.adapter.part_suffix
        kept = [(i, f) for i, f in enumerate(files) if f.rows > 0] or [(0, files[0])]
        sizes: dict[str, int] = {}
        try:
            if version.exists():  # an earlier prepare of this run, undone: start again
                shutil.rmtree(version)
            os.mkdir(version)
            for index, staged in kept:
                name = f"part-{index:05d}-{run_id}{suffix}"
                _link_or_copy(Path(staged.path), version / name)
                sizes[name] = staged.size
            fsync_path(version)
            fsync_path(self.staging.path)
        except OSError as exc:
            shutil.rmtree(version, ignore_errors=True)
            raise CommitError(
                f"gathering {len(files)} parts into {version} failed: {exc}; nothing was "
                f"committed and {target} is untouched",
                path=str(target),
                operation="prepare",
            ) from exc
        return {
            "kind": self.name,
            "target": str(target),
            "ready": str(version),
            "files": sizes,
        }

    def publish(self, entry: dict[str, Any]) -> None:
        self.publish_entry(entry)

    @classmethod
    def publish_alone(cls, entry: dict[str, Any]) -> None:
        cls.publish_entry(entry)

    @staticmethod
    def publish_entry(entry: dict[str, Any]) -> None:
        """Publish a dataset entry of a commit record from the entry alone (recovery of
        another run's record uses it); each step already done before a crash is skipped."""
        ready, target = Path(entry["ready"]), Path(entry["target"])
        files = {str(name): int(size) for name, size in dict(entry["files"]).items()}
        try:
            publish_staged_folder(ready, target, files)
        except OSError as exc:
            raise CommitError(
                f"publishing the dataset {target} from {ready} failed: {exc}",
                path=str(target),
                operation="rename",
            ) from exc

    def published(self, entry: dict[str, Any]) -> str:
        return (
            f"committed the dataset {self.target_name} ({len(entry['files'])} files, "
            f"version {Path(entry['ready']).name})"
        )


def _link_or_copy(source: Path, destination: Path) -> None:
    try:
        os.link(source, destination, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        log.warning("no hard link for %s (%s): copying it", source, exc)
        shutil.copyfile(source, destination, follow_symlinks=False)
        fsync_path(destination)


_REGISTRY: dict[str, Callable[[], type[CommitStrategy]]] = {
    "file": lambda: FileStrategy,
    "dataset": lambda: DatasetStrategy,
}


def register_strategy(name: str, factory: Callable[[], type[CommitStrategy]]) -> None:
    """Make ``commit_strategy = name`` on an output adapter mean ``factory()``'s class.

    ``factory`` is called when a run needs the strategy, so registering imports nothing.
    """
    _REGISTRY[name] = factory


def _iceberg() -> type[CommitStrategy]:
    from ._iceberg import IcebergStrategy

    return IcebergStrategy


def _duckdb() -> type[CommitStrategy]:
    from ._duckdb import DuckDBStrategy

    return DuckDBStrategy


def _sql() -> type[CommitStrategy]:
    from ._sql import SQLStrategy

    return SQLStrategy


register_strategy("iceberg", _iceberg)
register_strategy("duckdb", _duckdb)
register_strategy("sql", _sql)


def standalone_strategy(kind: object) -> type[CommitStrategy] | None:
    """The registered strategy named ``kind`` (an entry's ``kind``) if it is ``standalone``."""
    factory = _REGISTRY.get(kind) if isinstance(kind, str) else None
    if factory is None:
        return None
    cls = factory()
    return cls if cls.standalone else None


def _python() -> type[CommitStrategy]:
    from ._python import PythonStrategy

    return PythonStrategy


register_strategy("python", _python)


def strategy_for(adapter: BaseOutputAdapter, staging: StagingArea, parts: int) -> CommitStrategy:
    name = getattr(adapter, "commit_strategy", "file")
    factory = _REGISTRY.get(name)
    if factory is None:
        raise ConfigurationError(
            f"{adapter.describe()} asks for commit strategy {name!r}, which is not registered "
            f"(known: {', '.join(sorted(_REGISTRY))})"
        )
    return factory()(adapter, staging, parts)
