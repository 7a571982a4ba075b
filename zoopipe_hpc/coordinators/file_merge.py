"""FileMergeCoordinator: the coordinator through which a run's transaction commits or rolls back.

ZooPipe's ``parallelize_pipe(merge=True)`` "automatically injects a FileMergeCoordinator". Here
every run has one: it drives the run's :class:`~zoopipe_hpc.commit.transaction.Transaction`
(every target of the run, whole outputs and shards' parts alike, published together or not at
all), at priority 100 so that a notification coordinator at 0 runs once the data is in place.
The strategies that commit each target (merged files, an Iceberg snapshot) live in
:mod:`zoopipe_hpc.commit.strategies`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..commit.transaction import Transaction
from ..errors import CommitError
from .base import BaseCoordinator

if TYPE_CHECKING:
    from ..engines.base import WorkerResult

__all__ = ["FileMergeCoordinator"]

log = logging.getLogger(__name__)


class FileMergeCoordinator(BaseCoordinator):
    """Begins the run's transaction on start, commits it from the workers' results on finish,
    rolls it back on error (once, whatever calls it)."""

    priority = 100

    def __init__(self, transaction: Transaction) -> None:
        self.transaction = transaction

    @property
    def run_id(self) -> str:
        return self.transaction.run_id

    def on_start(self, manager: Any) -> None:
        self.transaction.begin()

    def on_finish(self, manager: Any, results: list[WorkerResult]) -> None:
        outcomes = {}
        for result in results:
            if result.outcome is None:
                raise CommitError(
                    f"shard {result.pipe_index} reported {result.status.value} without a result "
                    f"file; nothing was committed",
                    shard=result.pipe_index,
                )
            outcomes[result.pipe_index] = result.outcome
        self.transaction.commit(outcomes)

    def on_error(self, manager: Any, error: BaseException) -> None:
        self.transaction.rollback(error)
