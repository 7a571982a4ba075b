"""The worker side of ZooParallelPoolEngine: the pool's shared board and the worker loop (private).

The board is a file of 64-bit cells mapped into every process::

    cell 0                  the next pipe index to claim (the pool's queue)
    cell 1 + slot           the pipe the worker in ``slot`` runs now, -1 when it holds none
    cell 1 + slots + slot   the pid of the worker in ``slot`` once it reached its loop

A worker claims a pipe by publishing the index in its slot and then advancing the counter, both
under a POSIX record lock on the board (released by the kernel if the worker dies holding it)
and with its stop signals blocked. A claim cut short by SIGKILL leaves ``slot == counter``,
which the engine reads as "never claimed", so every pipe is either waiting, held by exactly one
worker, or was handed back.
"""

from __future__ import annotations

import array
import fcntl
import logging
import mmap
import os
import signal
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Final

from ..progress import ProgressWriter, read_progress
from ._worker import (
    STOP_SIGNALS,  # held back while claiming: a stop never lands between claim and commit
    WorkerTerminated,
    install_stop_handlers,
    run_pipe,
)

if TYPE_CHECKING:
    from ..pipe import Pipe

__all__ = ["IDLE", "Board", "worker_main"]

# The logger of the public module (zoopipe_hpc.engines.zooparallel), as before the move.
log = logging.getLogger("zoopipe_hpc.engines.zooparallel")

_O_CLOEXEC: Final = getattr(os, "O_CLOEXEC", 0)
#: A slot that holds no pipe.
IDLE: Final = -1


class Board:
    """The pool's shared control cells (see the module docstring), mapped from ``path``."""

    def __init__(self, path: str, slots: int) -> None:
        self.path = path
        self.slots = slots
        fd = os.open(path, os.O_RDWR | _O_CLOEXEC)
        try:
            self._mm = mmap.mmap(fd, 8 * (1 + 2 * slots))
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._cells = memoryview(self._mm).cast("q")

    @classmethod
    def create(cls, slots: int) -> Board:
        fd, path = tempfile.mkstemp(prefix="zoopipe-pool-", suffix=".board")
        try:
            cells = array.array("q", [0] + [IDLE] * slots + [0] * slots)
            os.write(fd, cells.tobytes())
        finally:
            os.close(fd)
        return cls(path, slots)

    @contextmanager
    def locked(self) -> Iterator[None]:
        fcntl.lockf(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN)

    # The accessors below are only used under ``locked()``.

    @property
    def counter(self) -> int:
        return self._cells[0]

    @counter.setter
    def counter(self, value: int) -> None:
        self._cells[0] = value

    def held(self, slot: int) -> int:
        return self._cells[1 + slot]

    def set_held(self, slot: int, index: int) -> None:
        self._cells[1 + slot] = index

    def started_pid(self, slot: int) -> int:
        return self._cells[1 + self.slots + slot]

    def mark_started(self, slot: int, pid: int) -> None:
        with self.locked():
            self._cells[1 + self.slots + slot] = pid

    def hand_back_cut_claims(self) -> int:
        """In the engine: release the claims cut short by SIGKILL; returns the counter."""
        counter = self.counter
        for slot in range(self.slots):
            if self.held(slot) >= counter:
                self.set_held(slot, IDLE)
        return counter

    def claim(self, slot: int, count: int) -> int | None:
        """In a worker: drop the pipe held in ``slot`` and take the next one (None: no more)."""
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            with self.locked():
                index = self.counter
                if index >= count:
                    self.set_held(slot, IDLE)
                    return None
                # Publish first, then commit: cut short in between, the slot equals the
                # counter and the engine hands the pipe back.
                self.set_held(slot, index)
                self.counter = index + 1
                return index
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)

    def close(self) -> None:
        self._cells.release()
        self._mm.close()
        os.close(self._fd)

    def unlink(self) -> None:
        with suppress(FileNotFoundError):
            os.unlink(self.path)


def record_failure_if_missing(record: Path, attempt_id: str, exc: Exception) -> None:
    """A pipe that failed before writing its record (a bad output adapter) still says why."""
    if read_progress(record, expected_attempt_id=attempt_id) is not None:
        return
    try:
        with ProgressWriter(record, attempt_id) as writer:
            writer.fail(f"{type(exc).__name__}: {exc}")
    except OSError:
        log.warning("could not record the failure of %s", record, exc_info=True)


def worker_main(
    slot: int,
    board_path: str,
    slots: int,
    pipes: list[Pipe],
    records: list[str],
    attempt_ids: list[str],
) -> None:
    install_stop_handlers()
    try:
        board = Board(board_path, slots)
        try:
            board.mark_started(slot, os.getpid())
            while (index := board.claim(slot, len(pipes))) is not None:
                record = Path(records[index])
                try:
                    run_pipe(pipes[index], index, record, attempt_ids[index])
                except Exception as exc:
                    # run_pipe wrote the reason into the record; this worker takes the next pipe.
                    log.debug("pipe %d failed", index, exc_info=True)
                    record_failure_if_missing(record, attempt_ids[index], exc)
        finally:
            board.close()
    except WorkerTerminated:
        # Asked to stop: the running pipe recorded CANCELLED and aborted its outputs.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)
