"""Per-worker progress records, written through mmap and polled lock-free.

See ``docs/progress.md`` for the byte layout and the correctness argument.
"""

from __future__ import annotations

from .record import (
    RECORD_SIZE,
    ProgressReader,
    ProgressSnapshot,
    ProgressState,
    ProgressWriter,
    read_progress,
)

__all__ = [
    "RECORD_SIZE",
    "ProgressReader",
    "ProgressSnapshot",
    "ProgressState",
    "ProgressWriter",
    "read_progress",
]
