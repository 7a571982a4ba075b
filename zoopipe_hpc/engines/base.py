"""The engine interface: how a manager's pipes are run (processes, Slurm tasks, ...)."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._deadline import Deadline, wait_until
from ..errors import PipeIndexError, StateError
from ..report import PipeReport, PipeStatus

if TYPE_CHECKING:
    from ..commit.staged import WorkerOutcome
    from ..pipe import Pipe
    from ._live import LiveReports

__all__ = ["BaseEngine", "WorkerResult"]


@dataclass(frozen=True)
class WorkerResult:
    """The outcome of one pipe, handed to the coordinators' ``on_finish``."""

    pipe_index: int
    status: PipeStatus
    report: PipeReport
    message: str = ""
    #: What the pipe staged, from its result file (None if it wrote none: not a success).
    outcome: WorkerOutcome | None = None

    @property
    def succeeded(self) -> bool:
        return self.status is PipeStatus.COMPLETED


class BaseEngine(abc.ABC):
    """Runs pipes and reports on them. One engine instance runs one set of pipes at a time.

    Subclasses implement :meth:`start`, :meth:`shutdown` and :attr:`pipe_reports`; waiting,
    :attr:`is_running`, the aggregate report and the results are derived from those.
    """

    @abc.abstractmethod
    def start(self, pipes: Sequence[Pipe]) -> None:
        """Launch every pipe; returns at once. Raises ``RuntimeError`` if already running."""

    #: Seconds between two looks at the pipes while waiting.
    poll_interval: float = 0.2

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every pipe reached a final state; False if ``timeout`` expired first.

        Returns within ``timeout`` plus one look at the pipes: the last sleep is cut to what
        is left, and the pipes are looked at once more at the deadline, never after it.
        """
        deadline = Deadline(timeout)
        return wait_until(lambda: not self._running_within(deadline), deadline, self.poll_interval)

    def _running_within(self, deadline: Deadline) -> bool:
        """One look at the pipes for :meth:`wait`: True while any has not reached a final state.

        An engine whose look can be slow (a query to its scheduler) overrides this to put the
        slow part off when ``deadline`` leaves no time for it.
        """
        return self.is_running

    @abc.abstractmethod
    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop pipes still running (gracefully, then by force after ``timeout``)."""

    @property
    def is_running(self) -> bool:
        """True while any pipe has not reached a final state."""
        live = self._look()
        if live is not None:
            return live.running
        reports = self.pipe_reports
        return bool(reports) and not all(r.is_finished for r in reports)

    def _look(self) -> LiveReports | None:
        """Look at the pipes once and return the run's live reports, for an engine that keeps
        them (see ``_live``): ``is_running`` and ``report`` then cost O(pipes not settled), not
        O(pipes). None (the default, and before a run): both derive from ``pipe_reports``."""
        return None

    @property
    @abc.abstractmethod
    def pipe_reports(self) -> list[PipeReport]:
        """One fresh report per pipe, in pipe order."""

    def get_pipe_report(self, index: int) -> PipeReport:
        """The report of pipe ``index``; before :meth:`start` (no pipes yet) a
        :class:`~zoopipe_hpc.errors.StateError`, a ``RuntimeError`` as ZooPipe raises."""
        reports = self.pipe_reports
        if not reports:
            raise StateError("the engine has not been started: it has no pipe reports yet")
        if not 0 <= index < len(reports):
            raise PipeIndexError(f"pipe index {index} out of range (0..{len(reports) - 1})")
        return reports[index]

    @property
    def report(self) -> PipeReport:
        live = self._look()
        if live is not None:
            return live.aggregate()
        return PipeReport.aggregate(self.pipe_reports)

    def results(self) -> list[WorkerResult]:
        """Every pipe's outcome; a completed pipe carries what it staged (its result file)."""
        results = []
        for r in self.pipe_reports:
            outcome = self._outcome(r) if r.status is PipeStatus.COMPLETED else None
            results.append(WorkerResult(r.pipe_index, r.status, r, r.message, outcome))
        return results

    def _outcome(self, report: PipeReport) -> WorkerOutcome | None:
        """The result file of the attempt that ``report`` describes (engines that run pipes
        through the worker entry point read it from their progress folder)."""
        return None
