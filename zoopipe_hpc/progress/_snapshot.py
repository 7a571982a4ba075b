"""What a validated progress record says: the attempt's state and one snapshot (private).

Shared by the writer (:mod:`._writer`) and the reader (:mod:`._reader`); both are public
through :mod:`zoopipe_hpc.progress.record`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from . import _clock, _layout

__all__ = ["ProgressSnapshot", "ProgressState", "snapshot_of"]


class ProgressState(enum.IntEnum):
    """Life-cycle state of a worker attempt, stored as a uint32."""

    PENDING = 0
    RUNNING = 1
    FINISHED = 2
    FAILED = 3
    CANCELLED = 4

    @property
    def is_final(self) -> bool:
        """True for FINISHED, FAILED and CANCELLED (the writer will not change it again)."""
        return self in _FINAL_STATES


_FINAL_STATES: Final = frozenset(
    {ProgressState.FINISHED, ProgressState.FAILED, ProgressState.CANCELLED}
)


@dataclass(frozen=True, slots=True)
class ProgressSnapshot:
    """One validated record, as committed by the writer."""

    state: ProgressState
    attempt_id: str
    pid: int
    host: str
    sequence: int
    total_processed: int
    success_count: int
    error_count: int
    ram_bytes: int
    start_time: float
    heartbeat: float
    end_time: float
    message: str

    def age(self, now: float | None = None) -> float:
        """Seconds since the writer's last heartbeat (wall clock; ``now`` defaults to now)."""
        return (_clock.now() if now is None else now) - self.heartbeat

    def is_stale(self, max_age: float, now: float | None = None) -> bool:
        """True if the attempt is not final and its heartbeat is older than ``max_age`` s."""
        return not self.state.is_final and self.age(now) > max_age


def snapshot_of(raw: _layout.RawRecord) -> ProgressSnapshot:
    """The snapshot of a decoded record."""
    return ProgressSnapshot(
        state=ProgressState(raw.state),
        attempt_id=raw.attempt_id,
        pid=raw.pid,
        host=raw.host,
        sequence=raw.sequence,
        total_processed=raw.total_processed,
        success_count=raw.success_count,
        error_count=raw.error_count,
        ram_bytes=raw.ram_bytes,
        start_time=raw.start_time,
        heartbeat=raw.heartbeat,
        end_time=raw.end_time,
        message=raw.message,
    )
