"""MultiProcessEngine: one local process per pipe; the default engine, no scheduler needed."""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.process
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .._deadline import Deadline
from ..errors import ConfigurationError, StateError
from ._fork import start_forked
from ._live import LiveReports
from ._tracking import RUNNING, WAITING, PipeTracker, TaskEnded, TaskState, TrackedEngine
from ._worker import describe_exit, install_stop_handlers, run_pipe

if TYPE_CHECKING:
    from ..pipe import Pipe

__all__ = ["MultiProcessEngine"]

log = logging.getLogger(__name__)


def _process_main(pipe: Pipe, index: int, record: str, attempt_id: str) -> None:
    install_stop_handlers()
    try:
        run_pipe(pipe, index, Path(record), attempt_id)
    except BaseException:
        # The reason is in the progress record; the exit code tells the parent it failed.
        log.debug("pipe %d failed", index, exc_info=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)


class MultiProcessEngine(TrackedEngine):
    """Runs each pipe in its own process on this machine.

    A pipe that raises, segfaults or is killed is reported FAILED with the reason, and the other
    pipes keep running. Progress comes from each worker's progress record (see
    ``docs/progress.md``), the same mechanism the Slurm engine uses.

    Parameters:
        start_method: ``"fork"`` (default on Linux: fast, and models defined in ``__main__`` or
            a notebook need no import), ``"forkserver"`` or ``"spawn"``.
        progress_dir: folder for the progress records (default: a private temporary folder,
            removed when the engine is shut down or garbage collected).
        max_workers: at most this many pipes run at once (default: all of them).
        poll_interval: seconds between checks while waiting.

    Starting a process takes about 15 ms, so :meth:`start` launches processes for at most
    :attr:`launch_slice` seconds and returns; every later look at the pipes (``wait``,
    ``pipe_reports``, ``is_running``) launches the next ones for as long. A run of thousands
    of pipes thus keeps its ``wait(timeout)``, and ``shutdown`` cancels the pipes not launched.
    """

    #: Seconds that :meth:`start`, and each later look at the pipes, may spend launching.
    launch_slice: float = 0.25

    def __init__(
        self,
        start_method: str | None = None,
        progress_dir: str | os.PathLike[str] | None = None,
        max_workers: int | None = None,
        poll_interval: float = 0.05,
    ) -> None:
        methods = multiprocessing.get_all_start_methods()
        method = start_method or ("fork" if "fork" in methods else methods[0])
        if method not in methods:
            raise ConfigurationError(f"start_method must be one of {methods}, got {start_method!r}")
        if max_workers is not None and max_workers < 1:
            raise ConfigurationError(f"max_workers must be at least 1, got {max_workers}")
        self.start_method = method
        self.max_workers = max_workers
        self.poll_interval = poll_interval
        self._progress_dir = Path(progress_dir) if progress_dir is not None else None
        self._pipes: list[Pipe] = []
        self._processes: list[multiprocessing.process.BaseProcess | None] = []
        self._tracker: PipeTracker | None = None
        self._next_launch = 0  # the pipes before it are launched (or were cancelled before)

    def start(self, pipes: Sequence[Pipe]) -> None:
        if self.is_running:
            raise StateError("this engine is already running")
        self._pipes = list(pipes)
        self._processes = [None] * len(self._pipes)
        self._tracker = PipeTracker(len(self._pipes), self._progress_dir)
        self._next_launch = 0
        self._launch_more()

    def _launch_more(self) -> None:
        """Launch the next pipes, in order, while fewer than ``max_workers`` run, for at most
        :attr:`launch_slice` seconds (one pipe at least)."""
        tracker = self._tracker
        if tracker is None or self._next_launch >= len(self._pipes):
            return
        context = multiprocessing.get_context(self.start_method)
        limit = self.max_workers
        running = 0
        if limit is not None:
            running = sum(1 for p in self._processes if p is not None and p.is_alive())
        budget = Deadline(self.launch_slice)
        launched = 0
        while self._next_launch < len(self._pipes):
            if limit is not None and running >= limit:
                break
            index = self._next_launch
            if index in tracker.cancelled:
                self._next_launch += 1
                continue
            if launched and budget.expired:
                break
            new = context.Process(  # type: ignore[attr-defined]
                target=_process_main,
                args=(
                    self._pipes[index],
                    index,
                    str(tracker.record_path(index)),
                    tracker.attempt_ids[index],
                ),
                name=f"zoopipe-pipe-{index}",
                daemon=False,
            )
            start_forked(new)
            self._processes[index] = new
            self._next_launch += 1
            launched += 1
            running += 1

    def _state(self, index: int) -> TaskState:
        process = self._processes[index]
        if process is None:
            return WAITING
        if process.is_alive():
            return RUNNING
        process.join(0)
        return TaskEnded(process.exitcode == 0, describe_exit(process.exitcode))

    def _look(self) -> LiveReports | None:
        tracker = self._tracker
        if tracker is None:
            return None
        live = tracker.poll(self._state)
        self._launch_more()
        return live

    def shutdown(self, timeout: float = 5.0) -> None:
        tracker = self._tracker
        if tracker is None:
            return
        tracker.cancel_unsettled()
        for process in self._processes:
            if process is not None and process.is_alive():
                process.terminate()
        deadline = Deadline(timeout)
        for process in self._processes:
            if process is not None:
                process.join(deadline.remaining())
                if process.is_alive():
                    process.kill()
                    process.join(1.0)
        tracker.poll(self._state)
        tracker.cleanup()

    def __del__(self) -> None:
        try:
            if self._tracker is not None:
                self._tracker.cleanup()
        except Exception:  # noqa: BLE001 - never raise from a finalizer
            pass
