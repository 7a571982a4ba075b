"""MultiProcessEngine: one local process per pipe; the default engine, no scheduler needed."""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.process
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigurationError
from ..progress import ProgressReader
from ..report import PipeReport, PipeStatus
from ._worker import (
    describe_exit,
    install_stop_handlers,
    progress_path,
    report_from_snapshot,
    run_pipe,
)
from .base import BaseEngine

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


class MultiProcessEngine(BaseEngine):
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
    """

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
        self._owns_dir = False
        self._pipes: list[Pipe] = []
        self._processes: list[multiprocessing.process.BaseProcess | None] = []
        self._readers: list[ProgressReader] = []
        self._final: dict[int, PipeReport] = {}
        self._cancelled: set[int] = set()

    @property
    def progress_dir(self) -> Path | None:
        return self._progress_dir

    def start(self, pipes: Sequence[Pipe]) -> None:
        if self.is_running:
            raise RuntimeError("this engine is already running")
        if self._progress_dir is None or self._owns_dir:
            self._progress_dir = Path(tempfile.mkdtemp(prefix="zoopipe-progress-"))
            self._owns_dir = True
        else:
            self._progress_dir.mkdir(parents=True, exist_ok=True)
        self._pipes = list(pipes)
        self._processes = [None] * len(self._pipes)
        self._final = {}
        self._cancelled = set()
        run = uuid.uuid4().hex[:12]
        self._readers = []
        self._attempts = [f"{run}{i:04x}" for i in range(len(self._pipes))]
        for index in range(len(self._pipes)):
            path = progress_path(self._progress_dir, index, self._attempts[index])
            self._readers.append(ProgressReader(path, expected_attempt_id=self._attempts[index]))
        self._launch_more()

    def _launch_more(self) -> None:
        context = multiprocessing.get_context(self.start_method)
        running = sum(1 for p in self._processes if p is not None and p.is_alive())
        limit = self.max_workers or len(self._pipes)
        for index, process in enumerate(self._processes):
            if running >= limit:
                break
            if process is not None or index in self._cancelled:
                continue
            new = context.Process(  # type: ignore[attr-defined]
                target=_process_main,
                args=(
                    self._pipes[index],
                    index,
                    str(self._readers[index].path),
                    self._attempts[index],
                ),
                name=f"zoopipe-pipe-{index}",
                daemon=False,
            )
            new.start()
            self._processes[index] = new
            running += 1

    def _report(self, index: int) -> PipeReport:
        if index in self._final:
            return self._final[index].copy()
        snapshot = self._readers[index].poll()
        report = report_from_snapshot(index, snapshot)
        process = self._processes[index]
        if index in self._cancelled and process is None:
            report.status = PipeStatus.CANCELLED
            report.message = "cancelled before it started"
        elif process is not None and not process.is_alive():
            process.join(0)
            # Read again now that the process is gone: it may have written its final record
            # between the read above and the liveness check.
            report = report_from_snapshot(index, self._readers[index].poll())
            if process.exitcode != 0 and not report.has_error:
                # Killed or crashed before it could write its own reason.
                cancelled = index in self._cancelled
                report.status = PipeStatus.CANCELLED if cancelled else PipeStatus.FAILED
                report.message = describe_exit(process.exitcode)
            elif not report.is_finished:
                report.status = PipeStatus.FAILED
                report.message = "worker process exited without a final progress record"
        elif process is not None:
            report.is_alive = True
        if report.is_finished:
            report.is_alive = False
            if report.end_time is None:
                report.end_time = time.time()
            self._final[index] = report.copy()
        return report

    @property
    def pipe_reports(self) -> list[PipeReport]:
        reports = [self._report(i) for i in range(len(self._pipes))]
        if self._pipes and self.max_workers is not None:
            self._launch_more()
        return reports

    def shutdown(self, timeout: float = 5.0) -> None:
        for index, process in enumerate(self._processes):
            if index not in self._final:
                self._cancelled.add(index)
            if process is not None and process.is_alive():
                process.terminate()
        deadline = time.monotonic() + timeout
        for process in self._processes:
            if process is not None:
                process.join(max(0.0, deadline - time.monotonic()))
                if process.is_alive():
                    process.kill()
                    process.join(1.0)
        for index in range(len(self._pipes)):
            self._report(index)
        self._cleanup()

    def _cleanup(self) -> None:
        if (
            self._owns_dir
            and self._progress_dir is not None
            and all(i in self._final for i in range(len(self._pipes)))
        ):
            shutil.rmtree(self._progress_dir, ignore_errors=True)

    def __del__(self) -> None:
        try:
            self._cleanup()
        except Exception:  # noqa: BLE001 - never raise from a finalizer
            pass
