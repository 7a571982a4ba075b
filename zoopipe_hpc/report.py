"""Progress reports: one :class:`PipeReport` per pipe and an aggregate for a whole manager."""

from __future__ import annotations

import enum
import logging
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

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
    """Where a pipe is in its life."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in (PipeStatus.COMPLETED, PipeStatus.FAILED, PipeStatus.CANCELLED)


@dataclass
class PipeReport:
    """Counters and state of one pipe (``pipe_index >= 0``) or of all pipes (``pipe_index == -1``).

    ``total_processed == success_count + error_count`` holds at every moment a report is taken.
    """

    pipe_index: int = 0
    status: PipeStatus = PipeStatus.PENDING
    total_processed: int = 0
    success_count: int = 0
    error_count: int = 0
    ram_bytes: int = 0
    start_time: float | None = None
    end_time: float | None = None
    message: str = ""
    host: str = ""
    pid: int = 0
    attempt_id: str = ""
    is_alive: bool = False
    pipes_finished: int = 0
    pipes_total: int = 1
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def is_finished(self) -> bool:
        """True once the pipe (or, for an aggregate, every pipe) reached a final state."""
        return self.status.is_final

    @property
    def has_error(self) -> bool:
        """True if the pipe failed or was cancelled (invalid records alone are not an error)."""
        return self.status in (PipeStatus.FAILED, PipeStatus.CANCELLED)

    @property
    def duration(self) -> float:
        """Seconds between start and end (or now, while running); 0 before the start."""
        if self.start_time is None:
            return 0.0
        end = self.end_time if self.end_time is not None else time.time()
        return max(0.0, end - self.start_time)

    @property
    def items_per_second(self) -> float:
        duration = self.duration
        return self.total_processed / duration if duration > 0 else 0.0

    def copy(self) -> PipeReport:
        return replace(self, extra=dict(self.extra))

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
        starts = [r.start_time for r in items if r.start_time is not None]
        ends = [r.end_time for r in items if r.end_time is not None]
        for report in items:
            total.total_processed += report.total_processed
            total.success_count += report.success_count
            total.error_count += report.error_count
            total.ram_bytes += report.ram_bytes
            total.is_alive = total.is_alive or report.is_alive
            total.pipes_finished += int(report.is_finished)
        total.start_time = min(starts) if starts else None
        statuses = {r.status for r in items}
        if not items or all(s.is_final for s in statuses):
            total.end_time = max(ends) if ends else total.start_time
            if PipeStatus.FAILED in statuses:
                total.status = PipeStatus.FAILED
            elif PipeStatus.CANCELLED in statuses:
                total.status = PipeStatus.CANCELLED
            else:
                total.status = PipeStatus.COMPLETED
        elif statuses == {PipeStatus.PENDING}:
            total.status = PipeStatus.PENDING
        else:
            total.status = PipeStatus.RUNNING
        failed = [f"pipe {r.pipe_index}: {r.message}" for r in items if r.has_error and r.message]
        total.message = "; ".join(failed)
        return total
