"""The writer of a progress record: one attempt publishes its counters through a shared mmap.

Public as :class:`zoopipe_hpc.progress.record.ProgressWriter`; the writer protocol is in
``docs/progress.md`` ("Writer protocol").
"""

from __future__ import annotations

import logging
import math
import mmap
import operator
import os
import pathlib
import socket
import threading
from types import TracebackType
from typing import Final, Self

import psutil

from ..errors import ArgumentTypeError, ClosedError, ConfigurationError, StateError
from . import _clock, _layout
from ._direct_io import drop_cached_pages, read_block
from ._layout import RECORD_SIZE
from ._snapshot import ProgressState

__all__ = ["ProgressWriter"]

# The logger of the public module (zoopipe_hpc.progress.record), which docs/progress.md names.
_log = logging.getLogger("zoopipe_hpc.progress.record")

_O_CLOEXEC: Final = getattr(os, "O_CLOEXEC", 0)


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


def _read_previous(fd: int, path: str) -> bytes:
    """The record in ``path`` (open as ``fd``) as the filesystem has it now."""
    try:
        data, _direct = read_block(path, RECORD_SIZE)
        return data
    except OSError:
        drop_cached_pages(fd)
        return os.pread(fd, RECORD_SIZE, 0)


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
            # attempt is restarted on the same file. The previous writer may have been another
            # node: read what the filesystem has now, past this node's caches (O_DIRECT).
            previous = _read_previous(fd, str(self._path))
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
            self._heartbeat = _clock.now()
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
            now = _clock.now()
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
            now = _clock.now()
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
            self._heartbeat = _clock.now()
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
            now = _clock.now()
            self._state = state
            self._end_time = now
            self._heartbeat = now
            self._message_bytes = _layout.truncate_utf8(message, _layout.MESSAGE_MAX)
            self._sample_ram(force=True)
            self._commit(force=True)

    def _sample_ram(self, *, force: bool) -> None:
        now = _clock.monotonic()
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

        now = _clock.monotonic()
        if force or now - self._last_flush >= self._flush_interval:
            self._msync()
            self._last_flush = now
            self._dirty = False
