"""Lock-free, crash-safe progress records shared through a (network) filesystem.

Each worker owns one 4096-byte file and publishes its counters into it through
a shared ``mmap`` (:class:`ProgressWriter`).  A coordinator, possibly on
another node, polls the file without any lock (:func:`read_progress`,
:class:`ProgressReader`).  A record is only ever reported when its two
sequence numbers agree, are even, and its CRC32 matches, so a torn, half
flushed or mid-update record is never returned.  The byte layout and the
correctness argument are in ``docs/progress.md``.

This module is the public face; the code lives in private modules by role: the writer
(``_writer``), the reader (``_reader``), the state and snapshot both share (``_snapshot``),
their clocks (``_clock``), the byte layout (``_layout``) and the direct read (``_direct_io``).
"""

from __future__ import annotations

from typing import Final

from . import _layout
from ._reader import ProgressReader, read_progress
from ._reader import read_progress_checked as read_progress_checked  # importable, not in __all__
from ._snapshot import ProgressSnapshot, ProgressState
from ._writer import ProgressWriter

__all__ = [
    "RECORD_SIZE",
    "ProgressSnapshot",
    "ProgressState",
    "ProgressReader",
    "ProgressWriter",
    "read_progress",
]

#: Size in bytes of a progress file and of its single record.
RECORD_SIZE: Final[int] = _layout.RECORD_SIZE
