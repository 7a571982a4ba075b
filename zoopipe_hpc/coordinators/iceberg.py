"""IcebergCoordinator: append every shard's part to an Iceberg table in one snapshot, or none.

ZooPipe's ``IcebergCoordinator`` "collects the list of parquet files produced by each worker and
submits them to the Iceberg catalog in a single atomic transaction". This one does that through
:meth:`IcebergOutputAdapter.commit_files`, idempotently (the run id is in the snapshot summary),
and commits a file error output the way :class:`FileMergeCoordinator` does, from which it
inherits staging, leftover cleaning and rollback.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..adapters.base import BaseOutputAdapter
from ..adapters.iceberg import IcebergOutputAdapter
from ..errors import CommitError, ConfigurationError
from .file_merge import FileMergeCoordinator, MergeTarget

if TYPE_CHECKING:
    from ..engines.base import WorkerResult

__all__ = ["IcebergCoordinator"]

log = logging.getLogger(__name__)


class IcebergCoordinator(FileMergeCoordinator):
    """Commits the shards' Parquet parts to an Iceberg table as one snapshot, or not at all.

    On start, leftovers of dead runs are removed and the staging folders are created (next to
    the table's data folder, and next to the error output file if there is one). On finish:

    1. every successful shard's part (of the attempt that succeeded) must exist;
    2. the error output's parts are merged into a staged file (not visible yet);
    3. if the table's history already has this run id, nothing is appended (a rerun after a
       crash); otherwise the parts are moved into the data folder and added in one transaction,
       whose snapshot summary carries ``zoopipe.run-id``; a concurrent commit is refreshed and
       retried;
    4. the error output replaces its target; the staging folders are removed.

    On error (a failed shard, a failed commit) the staged parts are deleted and the table is
    left as it was. Errors are :class:`CommitError` naming the table, the run id and the shard.
    """

    def __init__(
        self,
        output_adapter: IcebergOutputAdapter,
        workers: int,
        error_output_adapter: BaseOutputAdapter | None = None,
        run_id: str | None = None,
        job_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if not isinstance(output_adapter, IcebergOutputAdapter):
            raise ConfigurationError(
                f"IcebergCoordinator needs an IcebergOutputAdapter, got {output_adapter!r}"
            )
        if isinstance(error_output_adapter, IcebergOutputAdapter):
            raise ConfigurationError("the error output of an Iceberg run must be a file adapter")
        super().__init__(output_adapter, workers, error_output_adapter, run_id, job_dir)
        self.table_adapter = output_adapter
        #: The id of the run's snapshot, once committed (or found already committed).
        self.snapshot_id: int | None = None

    @property
    def table(self) -> str:
        return self.table_adapter.identifier

    def _target_name(self, target: MergeTarget) -> str:
        if target.adapter is self.table_adapter:
            return f"Iceberg table {self.table} (run {self.run_id})"
        return super()._target_name(target)

    def on_start(self, manager: Any) -> None:
        self.snapshot_id = None
        self.table_adapter.prepare()
        super().on_start(manager)

    def on_finish(self, manager: Any, results: list[WorkerResult]) -> None:
        table_target, *file_targets = self.targets
        parts = self._part_paths(table_target, results)
        merged = self._merge(file_targets, results)
        self.snapshot_id = self._commit_table(parts)
        try:
            self._publish(merged)
        except (CommitError, OSError) as exc:
            raise CommitError(
                f"Iceberg table {self.table} has run {self.run_id} (snapshot {self.snapshot_id}) "
                f"but the error output could not be written: {exc}; rerun with "
                f"run_id={self.run_id!r} to write it (the table will not be appended twice)",
                table=self.table,
                run_id=self.run_id,
                shard=None,
            ) from exc
        self._discard()

    def _commit_table(self, parts: list[Path]) -> int:
        """The catalog commit of the run's parts, in shard order (idempotent)."""
        return self.table_adapter.commit_files(parts, self.run_id)

    def on_error(self, manager: Any, error: BaseException) -> None:
        self._discard()
        if self.snapshot_id is not None:
            log.warning(
                "Iceberg table %s keeps run %s (snapshot %d); removed the staged files (%s)",
                self.table,
                self.run_id,
                self.snapshot_id,
                error,
            )
            return
        log.info(
            "rolled back run %s: Iceberg table %s is untouched and the parts are removed (%s)",
            self.run_id,
            self.table,
            error,
        )
