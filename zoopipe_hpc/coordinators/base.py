"""Coordinators: the hooks that shard the input and commit or roll back the outcome."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..adapters.base import BaseInputAdapter

if TYPE_CHECKING:
    from ..engines.base import WorkerResult

__all__ = ["BaseCoordinator", "CompositeCoordinator"]

log = logging.getLogger(__name__)


class BaseCoordinator:
    """Lifecycle hooks around a manager's run; override the ones you need.

    ``priority`` orders coordinators inside a :class:`CompositeCoordinator`: higher runs first
    (data commits use 100, so a notification at 0 runs after the data is in place).
    """

    priority: int = 0

    def prepare_shards(
        self, input_adapter: BaseInputAdapter, workers: int
    ) -> list[BaseInputAdapter]:
        """Split the input into ``workers`` shards that hold every record exactly once."""
        return input_adapter.split(workers)

    def on_start(self, manager: Any) -> None:
        """Called before any pipe starts."""

    def on_finish(self, manager: Any, results: list[WorkerResult]) -> None:
        """Called once every pipe succeeded: merge, commit, notify."""

    def on_error(self, manager: Any, error: BaseException) -> None:
        """Called when the run failed, timed out or was cancelled: roll back, clean up."""


class CompositeCoordinator(BaseCoordinator):
    """Runs several coordinators as one, in priority order.

    If one ``on_finish`` raises, every coordinator's ``on_error`` is called and the error is
    re-raised. Every ``on_error`` runs even if an earlier one raised; the first such error is
    re-raised afterwards.
    """

    def __init__(self, coordinators: Sequence[BaseCoordinator]) -> None:
        self.coordinators: list[BaseCoordinator]
        flat: list[BaseCoordinator] = []
        for item in coordinators:
            flat.extend(item.coordinators if isinstance(item, CompositeCoordinator) else [item])
        self.coordinators = sorted(flat, key=lambda c: -c.priority)
        self.priority = max((c.priority for c in self.coordinators), default=0)

    def prepare_shards(
        self, input_adapter: BaseInputAdapter, workers: int
    ) -> list[BaseInputAdapter]:
        for coordinator in self.coordinators:
            if type(coordinator).prepare_shards is not BaseCoordinator.prepare_shards:
                return coordinator.prepare_shards(input_adapter, workers)
        return super().prepare_shards(input_adapter, workers)

    def on_start(self, manager: Any) -> None:
        for coordinator in self.coordinators:
            coordinator.on_start(manager)

    def on_finish(self, manager: Any, results: list[WorkerResult]) -> None:
        for coordinator in self.coordinators:
            try:
                coordinator.on_finish(manager, results)
            except BaseException as exc:
                self.on_error(manager, exc)
                raise

    def on_error(self, manager: Any, error: BaseException) -> None:
        first: BaseException | None = None
        for coordinator in self.coordinators:
            try:
                coordinator.on_error(manager, error)
            except BaseException as exc:  # noqa: BLE001 - every rollback must get its turn
                log.error("%s.on_error failed: %s", type(coordinator).__name__, exc)
                first = first or exc
        if first is not None:
            raise first
