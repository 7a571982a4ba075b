"""ZooParallelPoolEngine: a fixed pool of local worker processes, each running pipe after pipe.

Nothing but the progress records and one small shared-memory board travels between the engine
and its workers. The board (its cells, and how a claim is made so that every pipe is waiting,
held by exactly one worker, or handed back) and the workers' loop are in ``_pool``; this module
is the engine's side: it starts and replaces workers, reads the board, and reports the pipes.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.process
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .._deadline import Deadline
from ..errors import ConfigurationError, StateError
from ..report import PipeReport
from ._fork import start_forked
from ._live import LiveReports
from ._pool import IDLE, Board, worker_main
from ._tracking import RUNNING, WAITING, PipeTracker, TaskEnded, TaskState, TrackedEngine
from ._worker import describe_exit

if TYPE_CHECKING:
    from ..pipe import Pipe

__all__ = ["ZooParallelPoolEngine"]

log = logging.getLogger(__name__)


class ZooParallelPoolEngine(TrackedEngine):
    """Runs pipes on a fixed pool of ``n_workers`` local processes, each taking pipe after pipe.

    Compared with ``MultiProcessEngine(max_workers=N)``, which starts one fresh process per
    pipe (at most N at a time), this pool starts N processes once and keeps them: the process
    start cost (fork or spawn, imports, pickling of the pipes under ``spawn``) is paid N times
    instead of once per pipe, and each worker's imports and caches stay warm from one pipe to
    the next. That pays off with many small pipes (hundreds of shards of a few thousand
    records); with a few long pipes both engines behave the same.

    Workers pick their next pipe themselves from a shared-memory counter and publish which pipe
    they hold in a shared-memory slot; progress comes only from the progress records (see
    ``docs/progress.md``), never from pickled messages. A pipe that raises is reported FAILED
    and its worker goes on with the next pipe. A worker that dies (killed, segfault) fails
    exactly the pipe it held, named by how it died, and a replacement worker takes over the
    pipes still queued.

    Parameters:
        n_workers: size of the pool (default: as many workers as pipes given to ``start``).
            Never more workers than pipes are started.
        start_method: ``"fork"`` (default on Linux), ``"forkserver"`` or ``"spawn"``.
        progress_dir: folder for the progress records (default: a private temporary folder,
            removed when the engine is shut down or garbage collected).
        poll_interval: seconds between checks while waiting.
    """

    def __init__(
        self,
        n_workers: int | None = None,
        *,
        start_method: str | None = None,
        progress_dir: str | os.PathLike[str] | None = None,
        poll_interval: float = 0.05,
    ) -> None:
        if n_workers is not None and n_workers < 1:
            raise ConfigurationError(f"n_workers must be at least 1, got {n_workers}")
        methods = multiprocessing.get_all_start_methods()
        method = start_method or ("fork" if "fork" in methods else methods[0])
        if method not in methods:
            raise ConfigurationError(f"start_method must be one of {methods}, got {start_method!r}")
        self.n_workers = n_workers
        self.start_method = method
        self.poll_interval = poll_interval
        self._progress_dir = Path(progress_dir) if progress_dir is not None else None
        self._lock = threading.RLock()
        self._pipes: list[Pipe] = []
        self._records: list[str] = []
        self._tracker: PipeTracker | None = None
        self._board: Board | None = None
        self._workers: list[multiprocessing.process.BaseProcess | None] = []
        self._pids: list[int] = []
        self._ended: dict[int, TaskEnded] = {}
        self._held: set[int] = set()
        self._claimed = 0
        self._closed = False
        self._stopped = False

    @property
    def worker_pids(self) -> list[int]:
        """The pid of every worker process started for the current run, replacements included."""
        return list(self._pids)

    # -- running --------------------------------------------------------------------------------

    def start(self, pipes: Sequence[Pipe]) -> None:
        with self._lock:
            if self.is_running:
                raise StateError("this engine is already running")
            if self._tracker is not None:
                self.shutdown()  # the previous run's workers and files
            self._pipes = list(pipes)
            tracker = PipeTracker(len(self._pipes), self._progress_dir)
            self._tracker = tracker
            self._records = [str(tracker.record_path(i)) for i in range(len(tracker))]
            size = min(self.n_workers or len(self._pipes), len(self._pipes))
            self._board = Board.create(size)
            self._workers = [None] * size
            self._pids = []
            self._ended = {}
            self._held = set()
            self._claimed = 0
            self._closed = False
            self._stopped = False
            try:
                for slot in range(size):
                    self._launch(slot)
            except BaseException:
                self.shutdown(timeout=1.0)
                raise

    def _launch(self, slot: int) -> None:
        board = self._board
        tracker = self._tracker
        if board is None or tracker is None:
            return
        context = multiprocessing.get_context(self.start_method)
        process = context.Process(  # type: ignore[attr-defined]
            target=worker_main,
            args=(
                slot,
                board.path,
                board.slots,
                self._pipes,
                self._records,
                tracker.attempt_ids,
            ),
            name=f"zoopipe-pool-{slot}",
            daemon=False,
        )
        start_forked(process)
        self._workers[slot] = process
        if process.pid is not None:
            self._pids.append(process.pid)

    def _refresh(self, replace: bool) -> None:
        """Learn which pipe each worker holds; fail the pipes of dead workers, replace them."""
        board = self._board
        if board is None:
            return
        # Liveness first: a worker seen dead can no longer change its slot.
        dead = [
            (slot, process)
            for slot, process in enumerate(self._workers)
            if process is not None and not process.is_alive()
        ]
        unstarted: list[multiprocessing.process.BaseProcess] = []
        with board.locked():
            counter = board.hand_back_cut_claims()
            for slot, process in dead:
                process.join(0)
                index = board.held(slot)
                if index != IDLE:
                    self._ended[index] = TaskEnded(False, describe_exit(process.exitcode))
                    board.set_held(slot, IDLE)
                if board.started_pid(slot) != process.pid:
                    unstarted.append(process)
                self._workers[slot] = None
            held = (board.held(slot) for slot, p in enumerate(self._workers) if p is not None)
            self._held = set(held) - {IDLE}
            if not self._closed:
                self._claimed = counter
        if not replace or self._closed:
            return
        waiting = len(self._pipes) - self._claimed
        for slot, process in dead:
            if waiting <= 0:
                break
            if process in unstarted:
                log.warning(
                    "pool worker %d never started (%s)", slot, describe_exit(process.exitcode)
                )
                continue
            self._launch(slot)
            waiting -= 1
        if waiting > 0 and unstarted and self._pool_is_empty():
            self._fail_waiting(
                f"no pool worker could start: {describe_exit(unstarted[-1].exitcode)}"
            )

    def _close(self) -> None:
        """Let no worker claim another pipe; the ones never claimed stay WAITING."""
        board = self._board
        if board is None or self._closed:
            return
        with board.locked():
            self._claimed = board.hand_back_cut_claims()
            board.counter = len(self._pipes)
            self._closed = True

    def _fail_waiting(self, reason: str) -> None:
        self._close()
        for index in range(self._claimed, len(self._pipes)):
            self._ended[index] = TaskEnded(False, reason)

    def _state(self, index: int) -> TaskState:
        if index in self._ended:
            return self._ended[index]
        if index in self._held:
            return RUNNING
        if index < self._claimed:
            # Claimed and no longer held: its worker ran it to the end; the record says how.
            return TaskEnded(True)
        return WAITING

    def _pool_is_empty(self) -> bool:
        return all(process is None for process in self._workers)

    def _release_board(self) -> None:
        board = self._board
        if board is not None:
            self._board = None
            board.close()
            board.unlink()

    def _look(self) -> LiveReports | None:
        with self._lock:
            tracker = self._tracker
            if tracker is None:
                return None
            if not self._stopped:
                self._refresh(replace=True)
            live = tracker.poll(self._state)
            if tracker.all_settled and self._pool_is_empty():
                self._release_board()
            return live

    # The looks of other threads wait: a poll changes the live reports these read.
    @property
    def pipe_reports(self) -> list[PipeReport]:
        with self._lock:
            return super().pipe_reports

    @property
    def is_running(self) -> bool:
        with self._lock:
            return super().is_running

    @property
    def report(self) -> PipeReport:
        with self._lock:
            return super().report

    def shutdown(self, timeout: float = 5.0) -> None:
        with self._lock:
            tracker = self._tracker
            if tracker is None or self._stopped:
                return
            tracker.cancel_unsettled()
            self._close()
            live = [p for p in self._workers if p is not None and p.is_alive()]
            for process in live:
                process.terminate()
            deadline = Deadline(timeout)
            for process in live:
                process.join(deadline.remaining())
                if process.is_alive():
                    process.kill()
                    process.join(1.0)
            self._refresh(replace=False)
            tracker.poll(self._state)
            self._stopped = True
            if not any(p is not None and p.is_alive() for p in self._workers):
                self._release_board()
            tracker.cleanup()

    def __del__(self) -> None:
        try:
            board = getattr(self, "_board", None)
            if board is not None:
                board.unlink()
            tracker = getattr(self, "_tracker", None)
            if tracker is not None:
                tracker.cleanup()
        except OSError:  # never raise from a finalizer
            pass
