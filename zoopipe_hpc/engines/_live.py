"""The live reports of a run: a poll costs O(pipes watched), not O(pipes) (private).

An engine keeps one :class:`LiveReports` per run. Each poll replaces the reports of the pipes
it watches (:meth:`LiveReports.put`) and settles those that ended (:meth:`LiveReports.settle`);
a settled pipe's report is folded once into running totals, so the aggregate
(:meth:`LiveReports.aggregate`, equal to ``PipeReport.aggregate`` of every report) and
``is_running`` (:attr:`LiveReports.running`) only look at the pipes not settled.

A pipe not settled may also be set aside as *waiting* (:meth:`LiveReports.set_waiting`): its report
is blank (nothing processed, not started, no error: a task still queued) and stays so until the
engine learns something new about it (:meth:`LiveReports.wake`). A waiting pipe is not in
:attr:`LiveReports.watched` and counts only by its status in the aggregate, so the thousands of
shards a packed array has not reached yet cost a poll nothing.
Settled reports are shared, not copied: treat the reports handed out as read-only.
"""

from __future__ import annotations

import bisect
import collections
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
    """The reports of ``count`` pipes, by position; those a poll looks at in :attr:`watched`."""

    def __init__(self, count: int) -> None:
        self._reports = [PipeReport(pipe_index=i) for i in range(count)]
        #: Positions of the pipes watched (not settled, not waiting), in order (a dict:
        #: ordered, O(1) removal).
        self._watched: dict[int, None] = dict.fromkeys(range(count))
        #: Positions of the waiting pipes (see the module), and how many have each status.
        self._waiting: dict[int, PipeStatus] = {}
        self._waiting_statuses: collections.Counter[PipeStatus] = collections.Counter()
        self._totals: _Totals | None = _Totals()
        self._out_of_order = False

    def __len__(self) -> int:
        return len(self._reports)

    @property
    def watched(self) -> list[int]:
        """The positions of the pipes neither settled nor waiting, in order."""
        if self._out_of_order:  # reopened and woken ones were added at the end
            self._watched = dict.fromkeys(sorted(self._watched))
            self._out_of_order = False
        return list(self._watched)

    @property
    def waiting(self) -> list[int]:
        """The positions of the waiting pipes (a new list: O(waiting), for a rare look)."""
        return list(self._waiting)

    @property
    def waiting_count(self) -> int:
        return len(self._waiting)

    @property
    def all_settled(self) -> bool:
        return not self._watched and not self._waiting

    def is_settled(self, position: int) -> bool:
        return position not in self._watched and position not in self._waiting

    def is_waiting(self, position: int) -> bool:
        return position in self._waiting

    def get(self, position: int) -> PipeReport:
        return self._reports[position]

    def put(self, position: int, report: PipeReport) -> None:
        """The current report of an unsettled pipe (a waiting one is woken first)."""
        self.wake(position)
        self._reports[position] = report

    def set_waiting(self, position: int) -> bool:
        """Set the watched pipe ``position`` aside until :meth:`wake`; only while its report is
        blank (see the module). Whether it now waits."""
        report = self._reports[position]
        if position not in self._watched or not _blank(report):
            return False
        del self._watched[position]
        self._waiting[position] = report.status
        self._waiting_statuses[report.status] += 1
        return True

    def wake(self, position: int) -> None:
        """A waiting pipe is watched again (something about it may have changed)."""
        status = self._waiting.pop(position, None)
        if status is None:
            return
        self._waiting_statuses[status] -= 1
        self._watched[position] = None
        self._out_of_order = True

    def settle(self, position: int, report: PipeReport) -> None:
        """Pipe ``position`` is over with ``report``, which no one changes afterwards."""
        self.wake(position)
        self._reports[position] = report
        if position in self._watched:
            del self._watched[position]
            if self._totals is not None:
                self._totals.add(position, report)

    def reopen(self, position: int) -> None:
        """A settled pipe runs again (resubmitted): the totals are made again when next asked;
        a waiting one is watched again."""
        self.wake(position)
        if position not in self._watched:
            self._watched[position] = None
            self._out_of_order = True
            self._totals = None

    def reports(self) -> list[PipeReport]:
        """Every pipe's report, in order (a new list; the reports are shared)."""
        return list(self._reports)

    @property
    def running(self) -> bool:
        """``BaseEngine.is_running`` over these reports: some pipe is not final yet."""
        return bool(self._waiting) or any(not self._reports[i].is_finished for i in self._watched)

    def aggregate(self) -> PipeReport:
        """``PipeReport.aggregate(self.reports())``, from the totals, the waiting pipes'
        statuses and the watched pipes."""
        active = _Totals()
        for position in self._watched:
            active.add(position, self._reports[position])
        active.statuses.update(s for s, n in self._waiting_statuses.items() if n)
        return self._settled_totals().combined(active, len(self._reports))

    def _settled_totals(self) -> _Totals:
        if self._totals is None:
            totals = _Totals()
            for position, report in enumerate(self._reports):
                if self.is_settled(position):
                    totals.add(position, report)
            self._totals = totals
        return self._totals


def _blank(report: PipeReport) -> bool:
    """A report whose only part in an aggregate is its status (see ``_Totals.add``)."""
    return (
        not report.is_finished
        and not report.is_alive
        and not report.has_error
        and report.total_processed == report.success_count == report.error_count == 0
        and report.ram_bytes == 0
        and report.start_timestamp is None
        and report.end_timestamp is None
    )


def _min(a: float | None, b: float) -> float:
    return b if a is None else min(a, b)


def _max(a: float | None, b: float) -> float:
    return b if a is None else max(a, b)
