"""What runs inside a worker (a local process or a Slurm task): one pipe, one progress record."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from ..commit.staged import result_path, write_result
from ..errors import ConfigurationError
from ..progress import ProgressSnapshot, ProgressState, ProgressWriter
from ..report import PipeReport, PipeStatus
from ._attempts import record_name

if TYPE_CHECKING:
    from ..pipe import Pipe

__all__: list[str] = []

log = logging.getLogger(__name__)

_STATUS = {
    ProgressState.PENDING: PipeStatus.PENDING,
    ProgressState.RUNNING: PipeStatus.RUNNING,
    ProgressState.FINISHED: PipeStatus.COMPLETED,
    ProgressState.FAILED: PipeStatus.FAILED,
    ProgressState.CANCELLED: PipeStatus.CANCELLED,
}


class WorkerTerminated(BaseException):
    """Raised inside a worker asked to stop by one of :data:`STOP_SIGNALS`.

    Its message is the reason recorded (CANCELLED) in the progress record; it names the signal.
    ``signum`` is the signal's number.
    """

    def __init__(self, reason: str, signum: int = 0) -> None:
        super().__init__(reason)
        self.signum = signum


#: The signals every worker turns into :class:`WorkerTerminated`, on every engine: SIGTERM (a
#: shutdown, ``scancel``, a supervisor, the kernel's parent-death signal), SIGINT (Ctrl-C) and
#: SIGUSR2 (Slurm's warning before the time limit).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2)

#: The reason of each stop signal in this process, set by :func:`install_stop_handlers`.
_reasons: dict[int, str] = {}


def _terminate(signum: int, frame: FrameType | None) -> None:
    # A stopping pipe records why first: the next stop signal (the kernel sends the parent-death
    # signal again each time a dying parent's threads hand the child on, a supervisor may add
    # its own) must not interrupt that, so from the first one on they are ignored.
    for other in STOP_SIGNALS:
        signal.signal(other, signal.SIG_IGN)
    reason = _reasons.get(signum) or f"stopped by {signal.Signals(signum).name}"
    raise WorkerTerminated(reason, signum)


def install_stop_handlers(reasons: Mapping[signal.Signals, str] | None = None) -> None:
    """The stop-signal policy of every worker entry point (local process, pool, Ray/Dask child,
    Slurm task); call it first thing in the worker's main thread.

    Each of :data:`STOP_SIGNALS` raises :class:`WorkerTerminated`, which :func:`run_pipe`
    records as CANCELLED with the exception's message before it re-raises; the first signal
    wins and every later one is ignored. ``reasons`` gives the message of some signals where
    the entry point knows why they come (each must name its signal); the others say
    ``"stopped by <SIGNAL>"``. Whether a cancellation is a failure is the engine's judgement
    (a stop nobody asked for, such as Slurm's time limit, is reported FAILED).
    """
    chosen: dict[int, str] = {}
    for signum, reason in (reasons or {}).items():
        if signum not in STOP_SIGNALS:
            raise ConfigurationError(f"{signum!r} is not one of the stop signals {STOP_SIGNALS}")
        name = signal.Signals(signum).name
        if name not in reason:
            raise ConfigurationError(f"the reason given for {name} must name it: {reason!r}")
        chosen[int(signum)] = reason
    _reasons.clear()
    _reasons.update(chosen)
    for signum in STOP_SIGNALS:
        signal.signal(signum, _terminate)


def record_unstarted(
    record: Path, attempt_id: str, exc: BaseException, host: str | None = None, what: str = ""
) -> None:
    """Record why a pipe ended before :func:`run_pipe` (its payload would not load, or a stop
    signal came first): a stop is CANCELLED as everywhere else, anything else FAILED with
    ``what`` (say, ``"could not load the pipe: "``) before the exception."""
    with ProgressWriter(record, attempt_id, host=host) as writer:
        if isinstance(exc, WorkerTerminated):
            writer.cancel(str(exc))
        else:
            writer.fail(f"{what}{type(exc).__name__}: {exc}")


def progress_path(folder: Path, index: int, attempt_id: str) -> Path:
    """The progress record of attempt ``attempt_id`` of pipe ``index`` (see ``_attempts``)."""
    return folder / record_name(index, attempt_id)


def run_pipe(
    pipe: Pipe,
    index: int,
    record: Path,
    attempt_id: str,
    heartbeat_every: float = 5.0,
    host: str | None = None,
) -> None:
    """Run ``pipe`` to the end, publishing its counters into ``record``; re-raises failures.

    A helper thread refreshes the record's heartbeat while a long batch is being processed, so
    a coordinator can tell a slow worker from a dead one.
    """
    pipe.pipe_index = index
    attempt = pipe.for_attempt(attempt_id)
    with ProgressWriter(record, attempt_id, host=host) as writer:
        done = threading.Event()

        def beat() -> None:
            while not done.wait(heartbeat_every):
                try:
                    writer.heartbeat()
                except (RuntimeError, ValueError):
                    return

        beater = threading.Thread(target=beat, name="zoopipe-heartbeat", daemon=True)

        def stop_beating() -> None:
            done.set()
            if beater.ident is not None:
                beater.join()

        try:  # from the start: a stop signal at any point is recorded as a cancellation
            writer.start()
            beater.start()
            attempt.run(progress=writer)
            # The result file, written atomically, is what the commit decides from.
            write_result(result_path(record), attempt.outcome(attempt_id))
        except WorkerTerminated as exc:
            stop_beating()
            writer.cancel(str(exc))
            raise
        except BaseException as exc:
            stop_beating()
            writer.fail(f"{type(exc).__name__}: {exc}")
            raise
        stop_beating()
        writer.finish()


def report_from_snapshot(index: int, snapshot: ProgressSnapshot | None) -> PipeReport:
    """A PipeReport from a progress record (PENDING when there is none yet)."""
    if snapshot is None:
        return PipeReport(pipe_index=index)
    return PipeReport(
        pipe_index=index,
        status=_STATUS[snapshot.state],
        total_processed=snapshot.total_processed,
        success_count=snapshot.success_count,
        error_count=snapshot.error_count,
        ram_bytes=snapshot.ram_bytes,
        start_time=snapshot.start_time or None,
        end_time=snapshot.end_time or None,
        message=snapshot.message,
        host=snapshot.host,
        pid=snapshot.pid,
        attempt_id=snapshot.attempt_id,
        is_alive=not snapshot.state.is_final,
    )


def describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"worker process was killed by {name}"
    return f"worker process exited with code {exitcode}"
