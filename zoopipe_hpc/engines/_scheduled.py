"""The shared part of engines that hand pipes to another scheduler's tasks (Ray, Dask).

A subclass says how to submit one supervised pipe (:func:`~._remote.run_supervised`) and how
to look at, cancel and forget a submitted task; everything else (progress records, attempt
ids, stop files, reports, shutdown order) lives here once.
"""

from __future__ import annotations

import abc
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

from .._deadline import wait_until
from ..errors import StateError
from ._live import LiveReports
from ._pickling import dumps_with_user_code
from ._remote import request_stop
from ._tracking import RUNNING, WAITING, PipeTracker, TaskEnded, TaskState, TrackedEngine

if TYPE_CHECKING:
    from ..pipe import Pipe

__all__ = ["ScheduledEngine"]

log = logging.getLogger(__name__)

Handle = TypeVar("Handle")


class ScheduledEngine(TrackedEngine, Generic[Handle], abc.ABC):
    """Runs each pipe as one task of an external scheduler; progress from the records only.

    ``progress_dir`` must be visible from where the tasks run (the shared filesystem on a
    cluster); by default a private temporary folder, fine for a cluster on this machine.
    """

    def __init__(
        self, progress_dir: str | os.PathLike[str] | None = None, poll_interval: float = 0.1
    ) -> None:
        self.poll_interval = poll_interval
        self._progress_dir = Path(progress_dir) if progress_dir is not None else None
        self._tracker: PipeTracker | None = None
        self._handles: list[Handle | None] = []
        self._abandoned: set[int] = set()

    # -- what a scheduler provides ------------------------------------------------------------

    @abc.abstractmethod
    def _connect(self) -> None:
        """Join the scheduler or start a local one (called by every ``start``)."""

    @abc.abstractmethod
    def _submit(self, index: int, payload: bytes, record: str, attempt_id: str) -> Handle:
        """Submit ``run_supervised(payload, index, record, attempt_id, ...)`` as one task."""

    @abc.abstractmethod
    def _state(self, handle: Handle) -> TaskState:
        """RUNNING while the task is queued or running, else how it ended (a ``TaskEnded``)."""

    @abc.abstractmethod
    def _cancel(self, handle: Handle) -> None:
        """Cancel a task that did not end after its stop file (queued, or unresponsive)."""

    def _disconnect(self) -> None:
        """Leave the scheduler, stopping what this engine started (called by ``shutdown``)."""

    # -- the engine ---------------------------------------------------------------------------

    def start(self, pipes: Sequence[Pipe]) -> None:
        if self.is_running:
            raise StateError("this engine is already running")
        pipes = list(pipes)
        self._connect()
        tracker = PipeTracker(len(pipes), self._progress_dir)
        self._tracker = tracker
        self._handles = [None] * len(pipes)
        self._abandoned = set()
        for index, pipe in enumerate(pipes):
            pipe.pipe_index = index
            self._handles[index] = self._submit(
                index,
                dumps_with_user_code(pipe),
                str(tracker.record_path(index)),
                tracker.attempt_ids[index],
            )

    def _task_state(self, index: int) -> TaskState:
        handle = self._handles[index]
        if handle is None:
            return WAITING
        if index in self._abandoned:
            return TaskEnded(False, "cancelled: its task did not stop in time and was abandoned")
        return self._state(handle)

    def _look(self) -> LiveReports | None:
        tracker = self._tracker
        return tracker.poll(self._task_state) if tracker is not None else None

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop every pipe still running (stop file, then the scheduler's cancel) and leave."""
        tracker = self._tracker
        if tracker is not None:
            tracker.cancel_unsettled()
            live = [i for i in range(len(tracker)) if self._task_state(i) == RUNNING]
            for index in live:
                request_stop(tracker.record_path(index))

            def all_stopped() -> bool:
                live[:] = [i for i in live if self._task_state(i) == RUNNING]
                return not live

            wait_until(all_stopped, timeout, self.poll_interval)
            for index in live:
                handle = self._handles[index]
                if handle is not None:
                    log.warning(
                        "pipe %d did not stop within %.0f s: cancelling its task", index, timeout
                    )
                    self._cancel(handle)
                self._abandoned.add(index)
            tracker.poll(self._task_state)
            tracker.cleanup()
        self._disconnect()
