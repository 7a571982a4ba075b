"""What every engine that runs pipes somewhere else shares: records, attempts and final reports.

An engine launches each pipe as a task (a local process, a pool slot, a Ray or Dask task). The
task runs :func:`~zoopipe_hpc.engines._worker.run_pipe`, which publishes its counters into a
progress record; the engine only tells the tracker whether the task is waiting, running or gone
(and how it ended). The tracker turns the record plus that liveness into a :class:`PipeReport`,
and freezes a report once it is final, so a pipe's outcome never changes after it settled.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..commit.staged import WorkerOutcome, read_result, result_path
from ..progress import ProgressReader
from ..report import PipeReport, PipeStatus
from ._attempts import local_attempt_ids
from ._live import LiveReports
from ._worker import progress_path, report_from_snapshot
from .base import BaseEngine

__all__ = ["TrackedEngine", "PipeTracker", "TaskEnded", "TaskState", "WAITING", "RUNNING"]

#: The task of a pipe was not launched yet.
WAITING = "waiting"
#: The task of a pipe is running (or queued by the engine's scheduler).
RUNNING = "running"


@dataclass(frozen=True)
class TaskEnded:
    """The task of a pipe is gone. ``ok``: it ended normally; else ``reason`` says how it died."""

    ok: bool
    reason: str = ""


TaskState = str | TaskEnded


class PipeTracker:
    """Progress records, attempt ids and settled reports of one run of ``count`` pipes.

    ``progress_dir``: where the records go; ``None`` makes a private temporary folder, removed
    by :meth:`cleanup` once every pipe settled. Records must be on a filesystem both the engine
    and the tasks see (a shared one when tasks run on other machines).
    """

    def __init__(self, count: int, progress_dir: Path | None = None) -> None:
        if progress_dir is None:
            self.folder = Path(tempfile.mkdtemp(prefix="zoopipe-progress-"))
            self.owns_folder = True
        else:
            self.folder = progress_dir
            self.folder.mkdir(parents=True, exist_ok=True)
            self.owns_folder = False
        self.attempt_ids = local_attempt_ids(count)
        self._readers = [
            ProgressReader(self.record_path(index), expected_attempt_id=self.attempt_ids[index])
            for index in range(count)
        ]
        self._final: dict[int, PipeReport] = {}
        #: The result file of each pipe that settled COMPLETED, read when it settled.
        self._outcomes: dict[int, WorkerOutcome] = {}
        #: Every pipe's latest report; a poll (:meth:`poll`) looks only at unsettled ones.
        self.live = LiveReports(count)
        self.cancelled: set[int] = set()

    def __len__(self) -> int:
        return len(self.attempt_ids)

    def record_path(self, index: int) -> Path:
        return progress_path(self.folder, index, self.attempt_ids[index])

    def is_settled(self, index: int) -> bool:
        return index in self._final

    @property
    def all_settled(self) -> bool:
        return len(self._final) == len(self.attempt_ids)

    def cancel_unsettled(self) -> None:
        """Mark every pipe without a final report as cancelled (on shutdown)."""
        self.cancelled.update(i for i in range(len(self)) if i not in self._final)

    def outcome(self, index: int) -> WorkerOutcome | None:
        """The result file of pipe ``index``'s attempt, if it wrote a valid one (read once
        when the pipe settled COMPLETED, never again)."""
        known = self._outcomes.get(index)
        if known is not None:
            return known
        return read_result(result_path(self.record_path(index)), self.attempt_ids[index])

    def poll(self, state_of: Callable[[int], TaskState]) -> LiveReports:
        """Look once at every pipe not settled yet; ``state_of(index)`` is asked about those
        only. A settled pipe costs nothing: no record read, no question to the scheduler."""
        for index in self.live.watched:
            self.report(index, state_of(index))
        return self.live

    def report(self, index: int, state: TaskState) -> PipeReport:
        """A fresh report of pipe ``index`` whose task is in ``state``.

        Success is decided from the pipe's result file and the task's end, not from the live
        progress record: a record that is corrupt is named in ``extra["progress_record"]``
        and the report keeps its last good counters.
        """
        if index in self._final:
            return self._final[index].copy()
        reader = self._readers[index]
        report = report_from_snapshot(index, reader.poll())
        cancelled = index in self.cancelled
        outcome: WorkerOutcome | None = None
        if state == WAITING:
            if cancelled:
                report.status = PipeStatus.CANCELLED
                report.message = "cancelled before it started"
        elif isinstance(state, TaskEnded):
            # Read again now that the task is gone: it may have written its final record
            # between the read above and the engine's liveness check.
            report = report_from_snapshot(index, reader.poll())
            outcome = self.outcome(index) if state.ok else None
            if outcome is not None:
                _complete_from(report, outcome)
            elif not state.ok and not report.has_error:
                # Killed or crashed before it could write its own reason.
                report.status = PipeStatus.CANCELLED if cancelled else PipeStatus.FAILED
                report.message = state.reason
            elif not state.ok and report.status is PipeStatus.CANCELLED and not cancelled:
                # The pipe was stopped by something else than this engine (its worker or node
                # died and took it down): a failure, and the task's fate is the first reason.
                report.status = PipeStatus.FAILED
                report.message = f"{state.reason}; the pipe recorded: {report.message}"
            elif report.status is PipeStatus.COMPLETED or not report.is_finished:
                report.status = PipeStatus.CANCELLED if cancelled else PipeStatus.FAILED
                report.message = state.reason or (
                    f"the task ended without a result file ({result_path(reader.path).name})"
                )
        else:
            report.is_alive = True
            if report.status is PipeStatus.COMPLETED:
                outcome = self.outcome(index)
                if outcome is None:
                    report.status = PipeStatus.RUNNING  # finishing: its result is on the way
                    return self._unsettled(index, report, reader)
                _complete_from(report, outcome)
            if report.status is PipeStatus.CANCELLED and not cancelled:
                # Stopped by something else than this engine: the task's own end decides
                # (above) whether that was a failure, so do not settle on the record yet.
                report.status = PipeStatus.RUNNING
                return self._unsettled(index, report, reader)
        if not report.is_finished:
            return self._unsettled(index, report, reader)
        self._noting(report, reader)
        report.is_alive = False
        if report.end_timestamp is None:
            report.end_timestamp = time.time()
        self._final[index] = report.copy()
        if outcome is not None and report.status is PipeStatus.COMPLETED:
            self._outcomes[index] = outcome
        self.live.settle(index, self._final[index])
        return report

    def _unsettled(self, index: int, report: PipeReport, reader: ProgressReader) -> PipeReport:
        self.live.put(index, self._noting(report, reader))
        return report

    @staticmethod
    def _noting(report: PipeReport, reader: ProgressReader) -> PipeReport:
        if reader.problem is not None:
            report.extra["progress_record"] = f"{reader.path}: {reader.problem}"
        return report

    def cleanup(self) -> None:
        """Remove a private progress folder once every pipe settled."""
        if self.owns_folder and self.all_settled:
            shutil.rmtree(self.folder, ignore_errors=True)


class TrackedEngine(BaseEngine):
    """An engine whose pipes publish progress records through a :class:`PipeTracker`."""

    _tracker: PipeTracker | None = None
    _progress_dir: Path | None = None

    @property
    def progress_dir(self) -> Path | None:
        """The folder of the current run's progress records (or the one asked for)."""
        if self._tracker is not None:
            return self._tracker.folder
        return self._progress_dir

    @property
    def attempt_ids(self) -> list[str]:
        """The attempt id of each pipe of the current run (names its record and part files)."""
        return list(self._tracker.attempt_ids) if self._tracker is not None else []

    @property
    def pipe_reports(self) -> list[PipeReport]:
        live = self._look()
        return live.reports() if live is not None else []

    def _outcome(self, report: PipeReport) -> WorkerOutcome | None:
        tracker = self._tracker
        if tracker is None or not 0 <= report.pipe_index < len(tracker):
            return None
        return tracker.outcome(report.pipe_index)


def _complete_from(report: PipeReport, outcome: WorkerOutcome) -> None:
    """The pipe succeeded: its result file says so, with its final counters."""
    report.status = PipeStatus.COMPLETED
    report.total_processed = outcome.total_processed
    report.success_count = outcome.success_count
    report.error_count = outcome.error_count
    report.is_alive = False
