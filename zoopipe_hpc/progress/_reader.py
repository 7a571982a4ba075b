"""The reader of progress records: lock-free reads that never report a torn record.

Public as :func:`zoopipe_hpc.progress.record.read_progress` and
:class:`zoopipe_hpc.progress.record.ProgressReader`; the read protocol is in
``docs/progress.md`` ("Reader protocol").
"""

from __future__ import annotations

import logging
import os
import pathlib
from typing import Final

from ..errors import ConfigurationError
from . import _clock, _layout
from ._direct_io import read_block
from ._layout import RECORD_SIZE
from ._snapshot import ProgressSnapshot, snapshot_of

__all__ = ["ProgressReader", "read_progress", "read_progress_checked"]

# The logger of the public module (zoopipe_hpc.progress.record), which docs/progress.md names.
_log = logging.getLogger("zoopipe_hpc.progress.record")

#: Pause between two re-reads of a record that looked torn.
_RETRY_DELAY: Final = 0.001


def read_progress(
    path: str | os.PathLike[str],
    *,
    expected_attempt_id: str | None = None,
    retries: int = 3,
) -> ProgressSnapshot | None:
    """Read and validate the record in ``path`` from a fresh open.

    Returns None (and logs the reason at DEBUG) if the file is missing,
    shorter than :data:`RECORD_SIZE`, never written, of another format, still
    torn after ``retries`` re-reads, or (when ``expected_attempt_id`` is
    given) written by another attempt.
    """
    return read_progress_checked(path, expected_attempt_id=expected_attempt_id, retries=retries)[0]


def read_progress_checked(
    path: str | os.PathLike[str],
    *,
    expected_attempt_id: str | None = None,
    retries: int = 3,
) -> tuple[ProgressSnapshot | None, str | None]:
    """:func:`read_progress`, and why there is no snapshot: None when the file is missing
    (not written yet) or was read well, else the reason it is unusable (corrupt, torn,
    short, foreign)."""
    if retries < 0:
        raise ConfigurationError(f"retries must be >= 0, got {retries}")
    name = os.fspath(path)
    reason = "no read attempted"
    for attempt in range(retries + 1):
        if attempt:
            _clock.sleep(_RETRY_DELAY)
        try:
            data, _direct = read_block(name, RECORD_SIZE)
        except FileNotFoundError:
            _log.debug("progress %s: missing", name)
            return None, None
        except OSError as exc:
            # ESTALE/EIO on a network filesystem can be transient: retry.
            reason = f"read failed: {exc}"
            continue
        if len(data) < RECORD_SIZE:
            _log.debug("progress %s: short file (%d bytes)", name, len(data))
            return None, f"short file ({len(data)} bytes)"
        try:
            raw = _layout.decode(data)
        except _layout.RecordError as err:
            if not err.retry:
                _log.debug("progress %s: %s", name, err.reason)
                return None, err.reason
            reason = err.reason
            continue
        if expected_attempt_id is not None and raw.attempt_id != expected_attempt_id:
            _log.debug(
                "progress %s: belongs to attempt %r, expected %r",
                name,
                raw.attempt_id,
                expected_attempt_id,
            )
            return None, f"written by attempt {raw.attempt_id!r}, not {expected_attempt_id!r}"
        return snapshot_of(raw), None
    _log.debug("progress %s: unusable after %d reads: %s", name, retries + 1, reason)
    return None, f"unusable after {retries + 1} reads: {reason}"


class ProgressReader:
    """Keeps the last good snapshot per file so that a report never goes backwards
    and a torn read is never reported."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        expected_attempt_id: str | None = None,
    ) -> None:
        self._path = pathlib.Path(path)
        self._expected_attempt_id = expected_attempt_id
        self._last: ProgressSnapshot | None = None
        #: Why the last read found no usable record (corrupt, torn, foreign), or None.
        self.problem: str | None = None

    @property
    def path(self) -> pathlib.Path:
        """The record file."""
        return self._path

    @property
    def last(self) -> ProgressSnapshot | None:
        """The newest valid snapshot seen so far (None before the first one)."""
        return self._last

    def poll(self) -> ProgressSnapshot | None:
        """Read the file once; return the newest valid snapshot seen so far.

        A fresh valid record replaces the kept one only if its sequence is not
        lower; an unreadable, torn, foreign or older record leaves it as is.
        """
        snap, self.problem = read_progress_checked(
            self._path, expected_attempt_id=self._expected_attempt_id
        )
        if snap is not None:
            last = self._last
            if last is None or snap.sequence >= last.sequence:
                self._last = snap
            else:
                _log.debug(
                    "progress %s: ignoring sequence %d older than %d",
                    self._path,
                    snap.sequence,
                    last.sequence,
                )
        return self._last
