"""What both progress displays share: the estimate of a run, formatting, and the redraw rule."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol, TextIO, runtime_checkable

from ..report import PipeReport, PipeStatus

__all__ = ["ProgressDisplay", "format_rate", "format_eta"]

# Until at least one shard finished, or past this, the ETA is shown as unknown / ">99d".
_MAX_ETA = 99 * 86400.0
# Percent shown while some shard is still running, whatever the estimate says.
_RUNNING_CAP = 0.99

_RED = "\x1b[31m"
_GREEN = "\x1b[32m"
_RESET = "\x1b[0m"
_CLEAR_EOL = "\x1b[K"

_FAILED_PIPE = re.compile(r"(?:^|; )pipe (\d+): ")


@runtime_checkable
class ProgressDisplay(Protocol):
    """Something that shows the progress of a run."""

    def update(self, report: PipeReport, shards: Sequence[PipeReport] | None = None) -> None:
        """Show ``report`` (the aggregate of a run, or one pipe's report) and its shards."""
        ...

    def close(self, report: PipeReport) -> None:
        """Render the final state (success or failure). Later calls do nothing."""
        ...


# -- formatting helpers ---------------------------------------------------------------------


def format_rate(x: float) -> str:
    """Rows per second for humans: ``"98,765 rows/s"``, ``"12.3 rows/s"``, ``"0.25 rows/s"``.

    Negative, NaN and infinite rates show as ``"0 rows/s"`` and ``"? rows/s"``.
    """
    if math.isnan(x) or x <= 0:
        return "0 rows/s"
    if math.isinf(x):
        return "? rows/s"
    if x >= 100:
        return f"{x:,.0f} rows/s"
    if x >= 10:
        return f"{x:.1f} rows/s"
    return f"{x:.2f} rows/s"


def format_eta(seconds: float | None) -> str:
    """``"0:01:23"``, ``"27:46:40"`` for long runs, ``"?"`` when unknown, ``">99d"`` when absurd.

    Negative values (clocks skew between nodes) show as ``"0:00:00"``.
    """
    if seconds is None or math.isnan(seconds):
        return "?"
    if seconds > _MAX_ETA:
        return ">99d"
    total = max(0, int(round(seconds)))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


# -- estimation -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Estimate:
    """What every display shows, computed once from a report and its shards."""

    fraction: float  # 0.0 .. 1.0
    eta: float | None  # seconds, None when unknown
    rows: int
    errors: int
    rate: float
    elapsed: float
    finished: int
    total: int
    failed: int
    cancelled: int
    done: bool
    status: PipeStatus


def _estimate(report: PipeReport, shards: Sequence[PipeReport] | None = None) -> _Estimate:
    """Percent done and ETA of ``report``; see ``docs/progress-display.md`` for the method.

    With ``shards``, the finished shards' row counts give the expected rows per shard. Without
    them (the aggregate alone), the rows of the finished shards are unknown: every row seen so
    far is counted as theirs, which reduces to percent = shards finished / shards, an estimate
    that can only err on the pessimistic side.
    """
    if shards is None and report.pipe_index >= 0:
        shards = [report]  # a single pipe's own report
    rows = max(0, report.total_processed)
    elapsed = report.duration
    rate = rows / elapsed if elapsed > 0 else 0.0

    if shards is not None and len(shards) > 0:
        total = len(shards)
        finished = sum(1 for s in shards if s.is_finished)
        failed = sum(1 for s in shards if s.status is PipeStatus.FAILED)
        cancelled = sum(1 for s in shards if s.status is PipeStatus.CANCELLED)
        completed = [s for s in shards if s.status is PipeStatus.COMPLETED]
        basis_shards = len(completed)
        basis_rows = sum(max(0, s.total_processed) for s in completed)
    else:
        total = max(0, report.pipes_total)
        finished = min(max(0, report.pipes_finished), total)
        failed = len(set(_FAILED_PIPE.findall(report.message)))
        if report.status is PipeStatus.FAILED:
            failed = max(failed, 1)
        cancelled = 1 if report.status is PipeStatus.CANCELLED and failed == 0 else 0
        basis_shards = finished
        basis_rows = rows

    done = report.is_finished or (total > 0 and finished >= total)
    if done:
        return _Estimate(
            fraction=1.0,
            eta=0.0,
            rows=rows,
            errors=report.error_count,
            rate=rate,
            elapsed=elapsed,
            finished=total if report.is_finished and shards is None else finished,
            total=total,
            failed=failed,
            cancelled=cancelled,
            done=True,
            status=report.status,
        )

    fraction = finished / total if total > 0 else 0.0
    eta: float | None = None
    if basis_shards > 0 and basis_rows > 0 and total > 0:
        expected = basis_rows / basis_shards * total
        fraction = rows / expected
        remaining = expected - rows
        if rate > 0 and remaining > 0:
            eta = remaining / rate
    fraction = min(_RUNNING_CAP, max(0.0, fraction))
    if eta is not None and (math.isnan(eta) or eta < 0):
        eta = None
    return _Estimate(
        fraction=fraction,
        eta=eta,
        rows=rows,
        errors=report.error_count,
        rate=rate,
        elapsed=elapsed,
        finished=finished,
        total=total,
        failed=failed,
        cancelled=cancelled,
        done=False,
        status=report.status,
    )


def _final_estimate(report: PipeReport, seen: _Estimate | None) -> _Estimate:
    """The estimate of a final ``report`` given alone, keeping the failures seen in updates.

    Not when the report says the run completed: every shard did, so a failure an update saw
    was retried since (or misread for a moment), and a committed run must not end in red.
    """
    est = _estimate(report)
    if seen is None or seen.total != est.total or report.status is PipeStatus.COMPLETED:
        return est
    return replace(
        est, failed=max(est.failed, seen.failed), cancelled=max(est.cancelled, seen.cancelled)
    )


def _succeeded(est: _Estimate) -> bool:
    return est.status is PipeStatus.COMPLETED and est.failed == 0 and est.cancelled == 0


def _outcome_word(est: _Estimate) -> str:
    if _succeeded(est):
        return "done"
    if est.failed or est.status is PipeStatus.FAILED:
        return "FAILED"
    if est.cancelled or est.status is PipeStatus.CANCELLED:
        return "CANCELLED"
    return "stopped"  # closed before the run reached a final state


def _errors(count: int) -> str:
    return f"{count:,} error" + ("" if count == 1 else "s")


def _problems(est: _Estimate) -> list[str]:
    problems = []
    if est.failed:
        problems.append(f"{est.failed} failed")
    if est.cancelled:
        problems.append(f"{est.cancelled} cancelled")
    return problems


# -- terminal -------------------------------------------------------------------------------


@dataclass
class _Field:
    """One field of a terminal line; the highest ``priority`` goes first when space lacks."""

    priority: int
    pieces: list[tuple[str, str]]

    @property
    def text(self) -> str:
        return "".join(text for text, _ in self.pieces)


def _isatty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    if not callable(isatty):
        return False
    try:
        return bool(isatty())
    except (OSError, ValueError):  # closed or detached streams
        return False


class _Throttle:
    """When a display redraws: once per interval, and sooner (if asked) when the shards'
    states change (one finished, failed or was cancelled)."""

    def __init__(self) -> None:
        self._last_draw: float | None = None
        self._last_key: tuple[object, ...] | None = None

    def due(self, now: float, est: _Estimate, interval: float, *, early_on_change: bool) -> bool:
        key: tuple[object, ...] = (est.status, est.finished, est.failed, est.cancelled)
        due = self._last_draw is None or now - self._last_draw >= interval
        if not due and (key == self._last_key or not early_on_change):
            return False
        self._last_draw = now
        self._last_key = key
        return True
