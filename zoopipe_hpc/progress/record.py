"""Lock-free, crash-safe progress records shared through a (network) filesystem.

Each worker owns one 4096-byte file and publishes its counters into it through
a shared ``mmap`` (:class:`ProgressWriter`).  A coordinator, possibly on
another node, polls the file without any lock (:func:`read_progress`,
:class:`ProgressReader`).  A record is only ever reported when its two
sequence numbers agree, are even, and its CRC32 matches, so a torn, half
flushed or mid-update record is never returned.  The byte layout and the
correctness argument are in ``docs/progress.md``.
"""

from __future__ import annotations

import enum
import logging
import math
import mmap
import operator
import os
import pathlib
import socket
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Self

import psutil

from ..errors import ArgumentTypeError, ClosedError, ConfigurationError, StateError
from . import _layout
from ._direct_io import read_block

__all__ = [
    "RECORD_SIZE",
    "ProgressSnapshot",
    "ProgressState",
    "ProgressReader",
    "ProgressWriter",
    "read_progress",
]

_log = logging.getLogger(__name__)

#: Size in bytes of a progress file and of its single record.
RECORD_SIZE: Final[int] = _layout.RECORD_SIZE

# Clock indirections (tests replace them): wall clock for the timestamps that
# are stored in the record and compared across hosts, monotonic clock for the
# writer's own rate limiting.
_now = time.time
_monotonic = time.monotonic
_sleep = time.sleep

#: Pause between two re-reads of a record that looked torn.
_RETRY_DELAY: Final = 0.001
_O_CLOEXEC: Final = getattr(os, "O_CLOEXEC", 0)


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
        return (_now() if now is None else now) - self.heartbeat

    def is_stale(self, max_age: float, now: float | None = None) -> bool:
        """True if the attempt is not final and its heartbeat is older than ``max_age`` s."""
        return not self.state.is_final and self.age(now) > max_age


def _snapshot(raw: _layout.RawRecord) -> ProgressSnapshot:
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


def _check_attempt_id(attempt_id: str) -> None:
    if not isinstance(attempt_id, str):
        raise ArgumentTypeError(f"attempt_id must be str, not {type(attempt_id).__name__}")
    if not attempt_id or not attempt_id.isascii() or len(attempt_id) > _layout.ATTEMPT_ID_MAX:
        raise ConfigurationError(
            f"attempt_id must be 1..{_layout.ATTEMPT_ID_MAX} ASCII characters, got {attempt_id!r}"
        )


def _as_u64(name: str, value: int) -> int:
    number = operator.index(value)
    if not 0 <= number <= _layout.U64_MAX:
        raise ConfigurationError(f"{name} must be in [0, 2**64), got {number}")
    return number


def _interval(name: str, value: float) -> float:
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ConfigurationError(f"{name} must be a finite number >= 0, got {value!r}")
    return number


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class ProgressWriter:
    """Publishes one attempt's progress into ``path`` through a shared mmap.

    Create it inside the worker process (never in a parent that forks): the
    writer refuses to be used from a process other than the one that created
    it.  Methods are thread-safe, so :meth:`heartbeat` may run from a helper
    thread while the main thread calls :meth:`update`.

    Every call rewrites the record in the mapping (cheap: a few microseconds).
    ``msync`` is issued at most once per ``flush_interval`` seconds, and
    always on :meth:`start` and on the final states.  RSS is sampled with
    psutil at most once per ``ram_interval`` seconds.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        attempt_id: str,
        *,
        flush_interval: float = 0.5,
        ram_interval: float = 1.0,
        host: str | None = None,
    ) -> None:
        _check_attempt_id(attempt_id)
        self._flush_interval = _interval("flush_interval", flush_interval)
        self._ram_interval = _interval("ram_interval", ram_interval)
        self._path = pathlib.Path(path)
        self._attempt_id = attempt_id
        self._owner_pid = os.getpid()
        self._lock = threading.Lock()
        self._closed = True

        self._state = ProgressState.PENDING
        self._total = 0
        self._success = 0
        self._errors = 0
        self._ram = 0
        self._start_time = 0.0
        self._heartbeat = 0.0
        self._end_time = 0.0
        self._attempt_bytes = attempt_id.encode("ascii")
        self._host_bytes = _layout.truncate_utf8(host or socket.gethostname(), _layout.HOST_MAX)
        self._message_bytes = b""

        self._buf = bytearray(RECORD_SIZE)
        self._view = memoryview(self._buf)
        self._process: psutil.Process | None = None
        self._last_ram_sample = -math.inf
        self._last_flush = -math.inf
        self._dirty = False

        fd = os.open(self._path, os.O_RDWR | os.O_CREAT | _O_CLOEXEC, 0o644)
        try:
            # Continue the sequence of whatever record is already there, so
            # that a reader's "never go backwards" rule keeps working when an
            # attempt is restarted on the same file.
            previous = os.pread(fd, RECORD_SIZE, 0)
            seq = _layout.peek_sequence(previous)
            if seq > _layout.U64_MAX // 2:  # garbage, not a real history: restart
                seq = 0
            self._seq = seq + (seq & 1)
            os.ftruncate(fd, RECORD_SIZE)
            self._mm = mmap.mmap(
                fd, RECORD_SIZE, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE
            )
        finally:
            os.close(fd)
        self._closed = False
        try:
            self._heartbeat = _now()
            self._sample_ram(force=True)
            self._commit(force=True)
        except BaseException:
            self._closed = True
            self._mm.close()
            raise

    # -- public API -----------------------------------------------------

    @property
    def path(self) -> pathlib.Path:
        """The record file."""
        return self._path

    def start(self) -> None:
        """Enter RUNNING, set start_time and flush."""
        with self._locked():
            self._check_open()
            if self._state is not ProgressState.PENDING:
                raise StateError(f"cannot start: state is already {self._state.name}")
            now = _now()
            self._state = ProgressState.RUNNING
            self._start_time = now
            self._heartbeat = now
            self._sample_ram(force=True)
            self._commit(force=True)

    def update(
        self,
        total_processed: int,
        success_count: int,
        error_count: int,
        *,
        force: bool = False,
    ) -> None:
        """Publish new counters (and a fresh heartbeat).

        Cheap enough to call per batch.  The record in the mapping is always
        rewritten; it is msync'ed only if ``flush_interval`` has elapsed since
        the previous msync, or if ``force``.  Calling it while PENDING
        implies :meth:`start`.
        """
        total = _as_u64("total_processed", total_processed)
        success = _as_u64("success_count", success_count)
        errors = _as_u64("error_count", error_count)
        with self._locked():
            self._check_open()
            self._check_not_final("update")
            now = _now()
            if self._state is ProgressState.PENDING:
                self._state = ProgressState.RUNNING
                self._start_time = now
                force = True
            self._total = total
            self._success = success
            self._errors = errors
            self._heartbeat = now
            self._sample_ram(force=False)
            self._commit(force=force)

    def heartbeat(self) -> None:
        """Refresh only the heartbeat (use during long batches); rate-limited flush."""
        with self._locked():
            self._check_open()
            self._check_not_final("heartbeat")
            self._heartbeat = _now()
            self._sample_ram(force=False)
            self._commit(force=False)

    def finish(self, message: str = "") -> None:
        """Enter FINISHED, set end_time and flush."""
        self._finalize(ProgressState.FINISHED, message)

    def fail(self, message: str) -> None:
        """Enter FAILED with ``message`` as the reason, set end_time and flush."""
        self._finalize(ProgressState.FAILED, message)

    def cancel(self, message: str = "") -> None:
        """Enter CANCELLED, set end_time and flush."""
        self._finalize(ProgressState.CANCELLED, message)

    def close(self) -> None:
        """Flush anything not yet msync'ed and unmap.  Idempotent."""
        if self._closed:
            return
        if os.getpid() != self._owner_pid:
            # A forked child holding a copy of this object: drop the child's
            # mapping, never touch the record the parent owns.
            self._closed = True
            self._mm.close()
            return
        with self._lock:
            if self._closed:
                return
            try:
                if self._dirty:
                    self._msync()
                    self._dirty = False
            finally:
                self._closed = True
                self._mm.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if (
                exc is not None
                and not self._closed
                and not self._state.is_final
                and os.getpid() == self._owner_pid
            ):
                try:
                    self.fail(_describe(exc))
                except Exception:
                    # Never mask the original exception.
                    _log.warning("could not record failure in %s", self._path, exc_info=True)
        finally:
            self.close()

    # -- internals --------------------------------------------------------

    def _locked(self) -> threading.Lock:
        # Checked before taking the lock: a lock inherited through fork may
        # be held forever in the child.
        if os.getpid() != self._owner_pid:
            raise StateError(
                "ProgressWriter used from a forked process; create the writer inside the worker"
            )
        return self._lock

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"ProgressWriter for {self._path} is closed")

    def _check_not_final(self, what: str) -> None:
        if self._state.is_final:
            raise StateError(f"cannot {what}: state is already {self._state.name}")

    def _finalize(self, state: ProgressState, message: str) -> None:
        if not isinstance(message, str):
            raise ArgumentTypeError(f"message must be str, not {type(message).__name__}")
        with self._locked():
            self._check_open()
            self._check_not_final(state.name.lower())
            now = _now()
            self._state = state
            self._end_time = now
            self._heartbeat = now
            self._message_bytes = _layout.truncate_utf8(message, _layout.MESSAGE_MAX)
            self._sample_ram(force=True)
            self._commit(force=True)

    def _sample_ram(self, *, force: bool) -> None:
        now = _monotonic()
        if not force and now - self._last_ram_sample < self._ram_interval:
            return
        self._last_ram_sample = now
        try:
            if self._process is None:
                self._process = psutil.Process()
            self._ram = int(self._process.memory_info().rss)
        except (psutil.Error, OSError) as exc:
            _log.debug("RSS sample failed: %s", exc)

    def _msync(self) -> None:
        self._mm.flush()

    def _commit(self, *, force: bool) -> None:
        """Write the current fields into the mapping with the seqlock protocol.

        Order (see docs/progress.md, "Writer protocol"):
        1. seq_begin := odd, 2. seq_end := odd, 3. body and crc,
        4. seq_end := even, 5. seq_begin := even; then maybe msync.
        """
        seq = self._seq + 2
        _layout.pack_sealed(
            self._buf,
            seq,
            int(self._state),
            self._owner_pid,
            self._total,
            self._success,
            self._errors,
            self._ram,
            self._start_time,
            self._heartbeat,
            self._end_time,
            self._attempt_bytes,
            self._host_bytes,
            self._message_bytes,
        )
        mm = self._mm
        view = self._view
        begin = _layout.OFF_SEQ_BEGIN
        end = _layout.OFF_SEQ_END
        _layout.SEQ.pack_into(mm, begin, seq - 1)
        _layout.SEQ.pack_into(mm, end, seq - 1)
        mm[:begin] = view[:begin]
        mm[begin + _layout.SEQ.size : end] = view[begin + _layout.SEQ.size : end]
        _layout.SEQ.pack_into(mm, end, seq)
        _layout.SEQ.pack_into(mm, begin, seq)
        self._seq = seq
        self._dirty = True

        now = _monotonic()
        if force or now - self._last_flush >= self._flush_interval:
            self._msync()
            self._last_flush = now
            self._dirty = False


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
            _sleep(_RETRY_DELAY)
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
        return _snapshot(raw), None
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
