"""Progress reports: one :class:`PipeReport` per pipe and an aggregate for a whole manager."""

from __future__ import annotations

import copy
import enum
import logging
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from .errors import ArgumentTypeError

__all__ = ["PipeStatus", "PipeReport", "get_logger"]


def get_logger(name: str = "zoopipe_hpc") -> logging.Logger:
    """The logger ``name``, ready to print: as ZooPipe's ``get_logger``, the first call gives a
    logger without handlers one that writes ``time - name - level - message`` lines to stdout,
    at level INFO. Later calls return it unchanged.

    The package itself logs to ``zoopipe_hpc.*`` loggers without configuring them (a library
    leaves that to the application); call this to see those messages the way ZooPipe shows its.
    """
    logger = logging.getLogger(name)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(
            logging.Formatter("%(asctime)s - %(name)s - %(levelname)s - %(message)s")
        )
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    return logger


class PipeStatus(enum.Enum):
    """Where a pipe is in its life.

    ``ABORTED`` is ZooPipe's status of a pipe stopped by its own ``shutdown()``; ``CANCELLED``
    is a pipe an engine stopped (its shutdown, ``scancel``, a signal to the worker).
    """

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    ABORTED = "aborted"

    @property
    def is_final(self) -> bool:
        return self in _FINAL


_FINAL = frozenset(
    {PipeStatus.COMPLETED, PipeStatus.FAILED, PipeStatus.CANCELLED, PipeStatus.ABORTED}
)
_STOPPED = frozenset({PipeStatus.FAILED, PipeStatus.CANCELLED, PipeStatus.ABORTED})

#: What ``start_time`` and ``end_time`` accept: a datetime, epoch seconds, or None.
_TimeLike = datetime | float | None


def _timestamp(value: _TimeLike) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise ArgumentTypeError(f"a time must be a datetime or epoch seconds, got {value!r}")


def _datetime(timestamp: float | None) -> datetime | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp)


@dataclass(init=False)
class PipeReport:
    """Counters and state of one pipe (``pipe_index >= 0``) or of all pipes (``pipe_index == -1``).

    ``total_processed == success_count + error_count`` holds at every moment a report is taken.

    ``start_time`` and ``end_time`` are ``datetime`` objects in local time (naive, as ZooPipe's,
    so ``datetime.now() - report.start_time`` works); they are kept as epoch seconds in
    ``start_timestamp`` and ``end_timestamp``, which is what progress records and durations use.
    Both accept a ``datetime`` or epoch seconds when set. ``exception`` is what made the pipe
    fail, when it ran in this process (a report read from another process's progress record
    has only its ``message``).
    """

    pipe_index: int
    status: PipeStatus
    total_processed: int
    success_count: int
    error_count: int
    ram_bytes: int
    #: Epoch seconds of the start (None before it).
    start_timestamp: float | None
    #: Epoch seconds of the end (None while running).
    end_timestamp: float | None
    message: str
    host: str
    pid: int
    attempt_id: str
    is_alive: bool
    pipes_finished: int
    pipes_total: int
    extra: dict[str, str]
    exception: BaseException | None

    def __init__(
        self,
        pipe_index: int = 0,
        status: PipeStatus = PipeStatus.PENDING,
        total_processed: int = 0,
        success_count: int = 0,
        error_count: int = 0,
        ram_bytes: int = 0,
        start_time: _TimeLike = None,
        end_time: _TimeLike = None,
        message: str = "",
        host: str = "",
        pid: int = 0,
        attempt_id: str = "",
        is_alive: bool = False,
        pipes_finished: int = 0,
        pipes_total: int = 1,
        extra: dict[str, str] | None = None,
        exception: BaseException | None = None,
    ) -> None:
        self.pipe_index = pipe_index
        self.status = status
        self.total_processed = total_processed
        self.success_count = success_count
        self.error_count = error_count
        self.ram_bytes = ram_bytes
        self.start_timestamp = _timestamp(start_time)
        self.end_timestamp = _timestamp(end_time)
        self.message = message
        self.host = host
        self.pid = pid
        self.attempt_id = attempt_id
        self.is_alive = is_alive
        self.pipes_finished = pipes_finished
        self.pipes_total = pipes_total
        self.extra = {} if extra is None else extra
        self.exception = exception

    @property
    def start_time(self) -> datetime | None:
        """When the pipe started, in local time (None before the start)."""
        return _datetime(self.start_timestamp)

    @start_time.setter
    def start_time(self, value: _TimeLike) -> None:
        self.start_timestamp = _timestamp(value)

    @property
    def end_time(self) -> datetime | None:
        """When the pipe reached a final state, in local time (None until then)."""
        return _datetime(self.end_timestamp)

    @end_time.setter
    def end_time(self, value: _TimeLike) -> None:
        self.end_timestamp = _timestamp(value)

    @property
    def is_finished(self) -> bool:
        """True once the pipe (or, for an aggregate, every pipe) reached a final state."""
        return self.status.is_final

    @property
    def has_error(self) -> bool:
        """True if the pipe failed, was cancelled or aborted, or holds an exception (invalid
        records alone are not an error)."""
        return self.status in _STOPPED or self.exception is not None

    @property
    def duration(self) -> float:
        """Seconds between start and end (or now, while running); 0 before the start."""
        if self.start_timestamp is None:
            return 0.0
        end = self.end_timestamp if self.end_timestamp is not None else time.time()
        return max(0.0, end - self.start_timestamp)

    @property
    def items_per_second(self) -> float:
        duration = self.duration
        return self.total_processed / duration if duration > 0 else 0.0

    def copy(self) -> PipeReport:
        clone = copy.copy(self)
        clone.extra = dict(self.extra)
        return clone

    def __str__(self) -> str:
        where = "all pipes" if self.pipe_index < 0 else f"pipe {self.pipe_index}"
        text = (
            f"{where}: {self.status.value}, {self.total_processed} processed "
            f"({self.success_count} ok, {self.error_count} invalid), "
            f"{self.items_per_second:.0f} rows/s, {self.ram_bytes / 2**20:.1f} MiB RAM"
        )
        if self.pipe_index < 0:
            text += f", {self.pipes_finished}/{self.pipes_total} pipes finished"
        if self.message:
            text += f": {self.message}"
        return text

    @classmethod
    def aggregate(cls, reports: Iterable[PipeReport]) -> PipeReport:
        """Combine per-pipe reports into one (``pipe_index == -1``)."""
        items = list(reports)
        total = cls(pipe_index=-1, pipes_total=len(items))
        starts = [r.start_timestamp for r in items if r.start_timestamp is not None]
        ends = [r.end_timestamp for r in items if r.end_timestamp is not None]
        for report in items:
            total.total_processed += report.total_processed
            total.success_count += report.success_count
            total.error_count += report.error_count
            total.ram_bytes += report.ram_bytes
            total.is_alive = total.is_alive or report.is_alive
            if total.exception is None:
                total.exception = report.exception
            total.pipes_finished += int(report.is_finished)
        total.start_timestamp = min(starts) if starts else None
        statuses = {r.status for r in items}
        if not items or all(s.is_final for s in statuses):
            total.end_timestamp = max(ends) if ends else total.start_timestamp
            if PipeStatus.FAILED in statuses:
                total.status = PipeStatus.FAILED
            elif PipeStatus.CANCELLED in statuses:
                total.status = PipeStatus.CANCELLED
            elif PipeStatus.ABORTED in statuses:
                total.status = PipeStatus.ABORTED
            else:
                total.status = PipeStatus.COMPLETED
        elif statuses == {PipeStatus.PENDING}:
            total.status = PipeStatus.PENDING
        else:
            total.status = PipeStatus.RUNNING
        failed = [f"pipe {r.pipe_index}: {r.message}" for r in items if r.has_error and r.message]
        total.message = "; ".join(failed)
        return total
