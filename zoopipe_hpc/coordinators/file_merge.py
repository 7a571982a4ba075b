"""FileMergeCoordinator: merge the shards' part files into each target, or roll everything back."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..adapters.base import BaseOutputAdapter
from ..commit._staging import StagingArea, clean_leftovers, fsync_path, locked, new_run_id
from ..errors import CommitError
from .base import BaseCoordinator

if TYPE_CHECKING:
    from ..engines.base import WorkerResult

__all__ = ["FileMergeCoordinator", "MergeTarget"]

log = logging.getLogger(__name__)


@dataclass
class MergeTarget:
    """One output (valid records or error records) whose shards write parts into ``staging``."""

    adapter: BaseOutputAdapter
    staging: StagingArea
    parts: list[BaseOutputAdapter]


class FileMergeCoordinator(BaseCoordinator):
    """Merges part files into their targets once every shard succeeded; discards them otherwise.

    Supports CSV (one header), JSON Lines, JSON arrays and Parquet (one valid file). Parts are
    merged into a file inside the staging folder, fsynced, and every target is then replaced
    with ``os.replace`` while holding the commit lock of each target (taken in path order, so
    two managers committing to the same targets never interleave). A reader sees the old target
    or the whole new one. Leftovers of crashed runs are removed by the next run's ``on_start``.
    """

    priority = 100

    def __init__(
        self,
        output_adapter: BaseOutputAdapter,
        workers: int,
        error_output_adapter: BaseOutputAdapter | None = None,
        run_id: str | None = None,
        job_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.run_id = run_id or new_run_id()
        self.job_dir = Path(job_dir).absolute() if job_dir is not None else None
        self.targets: list[MergeTarget] = []
        for adapter in (output_adapter, error_output_adapter):
            if adapter is None:
                continue
            staging = StagingArea(adapter.path, self.run_id)
            self.targets.append(MergeTarget(adapter, staging, adapter.split(workers, staging)))

    def part_adapters(self, index: int) -> tuple[BaseOutputAdapter, BaseOutputAdapter | None]:
        """(output part, error output part or None) for shard ``index``."""
        output = self.targets[0].parts[index]
        errors = self.targets[1].parts[index] if len(self.targets) > 1 else None
        return output, errors

    def on_start(self, manager: Any) -> None:
        for target in self.targets:
            clean_leftovers(target.adapter.path)
            target.staging.create(job_dir=self.job_dir)

    def on_finish(self, manager: Any, results: list[WorkerResult]) -> None:
        merged = self._merge(self.targets, results)
        self._publish(merged)
        self._discard()

    def _target_name(self, target: MergeTarget) -> str:
        """How errors name a target."""
        return str(target.adapter.path)

    def _part_paths(self, target: MergeTarget, results: list[WorkerResult]) -> list[Path]:
        """The part file of the successful attempt of each shard, checked to exist, in order."""
        attempts = {result.pipe_index: result.report.attempt_id for result in results}
        paths = [
            part.for_attempt(attempts.get(index, "")).path
            for index, part in enumerate(target.parts)
        ]
        missing = [(i, p) for i, p in enumerate(paths) if not p.exists()]
        if missing:
            index, path = missing[0]
            raise CommitError(
                f"shard {index} reported success but its part file {path} is missing; "
                f"nothing was committed to {self._target_name(target)}",
                path=str(target.adapter.path),
                shard=index,
            )
        return paths

    def _merge(
        self, targets: Sequence[MergeTarget], results: list[WorkerResult]
    ) -> list[tuple[MergeTarget, Path]]:
        """Merge each target's parts into a fsynced file in its staging folder (not yet visible)."""
        merged: list[tuple[MergeTarget, Path]] = []
        for target in targets:
            paths = self._part_paths(target, results)
            destination = target.staging.temp_path(target.adapter.path.name)
            target.adapter.merge(paths, destination)
            fsync_path(destination)
            merged.append((target, destination))
        return merged

    def _publish(self, merged: Sequence[tuple[MergeTarget, Path]]) -> None:
        """Replace each target with its merged file, holding every target's commit lock."""
        with contextlib.ExitStack() as stack:
            for target, _ in sorted(merged, key=lambda item: str(item[0].adapter.path)):
                stack.enter_context(locked(target.staging.target))
            for target, destination in merged:
                os.replace(destination, target.staging.target)
                fsync_path(target.staging.target.parent)
                log.info("committed %s from %d parts", target.adapter.path, len(target.parts))

    def _discard(self) -> None:
        for target in self.targets:
            target.staging.discard()

    def on_error(self, manager: Any, error: BaseException) -> None:
        for target in self.targets:
            target.staging.discard()
            log.info(
                "rolled back %s (%s); the previous file is untouched", target.adapter.path, error
            )

    def staged_paths(self) -> Sequence[Path]:
        return [target.staging.path for target in self.targets]
