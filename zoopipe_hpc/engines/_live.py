"""The live reports of a run: a poll costs O(pipes not settled), not O(pipes) (private).

An engine keeps one :class:`LiveReports` per run. Each poll replaces the reports of the pipes
that are not settled yet (:meth:`LiveReports.put`) and settles those that ended
(:meth:`LiveReports.settle`); a settled pipe's report is folded once into running totals, so
the aggregate (:meth:`LiveReports.aggregate`, equal to ``PipeReport.aggregate`` of every
report) and ``is_running`` (:attr:`LiveReports.running`) only look at the unsettled pipes.
Settled reports are shared, not copied: treat the reports handed out as read-only.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from ..report import PipeReport, PipeStatus

__all__ = ["LiveReports"]

#: The status of an aggregate whose pipes are all final, the first one present of these.
_STOPPED_ORDER = (PipeStatus.FAILED, PipeStatus.CANCELLED, PipeStatus.ABORTED)


@dataclass
class _Totals:
    """What ``PipeReport.aggregate`` sums up, over the settled reports only."""

    total_processed: int = 0
    success_count: int = 0
    error_count: int = 0
    ram_bytes: int = 0
    is_alive: bool = False
    finished: int = 0
    start: float | None = None
    end: float | None = None
    statuses: set[PipeStatus] = field(default_factory=set)
    #: The first exception in pipe order: (position, exception).
    exception: tuple[int, BaseException] | None = None
    #: ``pipe N: message`` of each failed pipe, sorted by position.
    failures: list[tuple[int, str]] = field(default_factory=list)
    _message: str | None = None

    def add(self, position: int, report: PipeReport) -> None:
        self.total_processed += report.total_processed
        self.success_count += report.success_count
        self.error_count += report.error_count
        self.ram_bytes += report.ram_bytes
        self.is_alive = self.is_alive or report.is_alive
        self.finished += int(report.is_finished)
        if report.start_timestamp is not None:
            self.start = _min(self.start, report.start_timestamp)
        if report.end_timestamp is not None:
            self.end = _max(self.end, report.end_timestamp)
        self.statuses.add(report.status)
        if report.exception is not None and (
            self.exception is None or position < self.exception[0]
        ):
            self.exception = (position, report.exception)
        if report.has_error and report.message:
            bisect.insort(self.failures, (position, f"pipe {report.pipe_index}: {report.message}"))
            self._message = None

    def message(self) -> str:
        """The failures' messages joined in pipe order (kept until the next failure)."""
        if self._message is None:
            self._message = "; ".join(text for _, text in self.failures)
        return self._message

    def combined(self, other: _Totals, pipes: int) -> PipeReport:
        """The aggregate report of these pipes and ``other`` (``pipes`` in all)."""
        total = PipeReport(pipe_index=-1, pipes_total=pipes)
        total.total_processed = self.total_processed + other.total_processed
        total.success_count = self.success_count + other.success_count
        total.error_count = self.error_count + other.error_count
        total.ram_bytes = self.ram_bytes + other.ram_bytes
        total.is_alive = self.is_alive or other.is_alive
        total.pipes_finished = self.finished + other.finished
        starts = [t for t in (self.start, other.start) if t is not None]
        ends = [t for t in (self.end, other.end) if t is not None]
        total.start_timestamp = min(starts) if starts else None
        firsts = [e for e in (self.exception, other.exception) if e is not None]
        total.exception = min(firsts, key=lambda e: e[0])[1] if firsts else None
        statuses = self.statuses | other.statuses
        if not pipes or all(s.is_final for s in statuses):
            total.end_timestamp = max(ends) if ends else total.start_timestamp
            total.status = next((s for s in _STOPPED_ORDER if s in statuses), PipeStatus.COMPLETED)
        elif statuses == {PipeStatus.PENDING}:
            total.status = PipeStatus.PENDING
        else:
            total.status = PipeStatus.RUNNING
        if other.failures:
            total.message = "; ".join(text for _, text in sorted(self.failures + other.failures))
        else:
            total.message = self.message()
        return total


class LiveReports:
    """The reports of ``count`` pipes, by position; the unsettled ones in :attr:`unsettled`."""

    def __init__(self, count: int) -> None:
        self._reports = [PipeReport(pipe_index=i) for i in range(count)]
        #: Positions of the pipes not settled yet, in order (a dict: ordered, O(1) removal).
        self._unsettled: dict[int, None] = dict.fromkeys(range(count))
        self._totals: _Totals | None = _Totals()
        self._out_of_order = False

    def __len__(self) -> int:
        return len(self._reports)

    @property
    def unsettled(self) -> list[int]:
        """The positions of the pipes not settled yet, in order."""
        if self._out_of_order:  # reopened ones were added at the end
            self._unsettled = dict.fromkeys(sorted(self._unsettled))
            self._out_of_order = False
        return list(self._unsettled)

    def is_settled(self, position: int) -> bool:
        return position not in self._unsettled

    def get(self, position: int) -> PipeReport:
        return self._reports[position]

    def put(self, position: int, report: PipeReport) -> None:
        """The current report of an unsettled pipe."""
        self._reports[position] = report

    def settle(self, position: int, report: PipeReport) -> None:
        """Pipe ``position`` is over with ``report``, which no one changes afterwards."""
        self._reports[position] = report
        if position in self._unsettled:
            del self._unsettled[position]
            if self._totals is not None:
                self._totals.add(position, report)

    def reopen(self, position: int) -> None:
        """A settled pipe runs again (resubmitted): the totals are made again when next asked."""
        if position not in self._unsettled:
            self._unsettled[position] = None
            self._out_of_order = True
            self._totals = None

    def reports(self) -> list[PipeReport]:
        """Every pipe's report, in order (a new list; the reports are shared)."""
        return list(self._reports)

    @property
    def running(self) -> bool:
        """``BaseEngine.is_running`` over these reports: some pipe is not final yet."""
        return any(not self._reports[i].is_finished for i in self._unsettled)

    def aggregate(self) -> PipeReport:
        """``PipeReport.aggregate(self.reports())``, from the totals and the unsettled pipes."""
        active = _Totals()
        for position in self._unsettled:
            active.add(position, self._reports[position])
        return self._settled_totals().combined(active, len(self._reports))

    def _settled_totals(self) -> _Totals:
        if self._totals is None:
            totals = _Totals()
            for position, report in enumerate(self._reports):
                if position not in self._unsettled:
                    totals.add(position, report)
            self._totals = totals
        return self._totals


def _min(a: float | None, b: float) -> float:
    return b if a is None else min(a, b)


def _max(a: float | None, b: float) -> float:
    return b if a is None else max(a, b)
