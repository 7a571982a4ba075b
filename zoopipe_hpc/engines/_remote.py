"""Running one pipe from a task of another scheduler (Ray, Dask): a supervised child process.

A Ray or Dask task does not run the pipe in its own worker process: it starts a fresh Python
process (``python -m zoopipe_hpc.engines._child``) that unpickles the pipe from its standard
input and runs it with a progress record, and it waits for that process. So:

- a pipe that segfaults or is killed takes down its own process only, never the scheduler's
  worker, and the exit code names the signal;
- the engine can stop a running pipe on any scheduler by creating its *stop file* (next to
  the progress record): the supervising task sees it, sends SIGTERM (the pipe records
  CANCELLED and aborts its outputs), then SIGKILL after a grace period. Dask cannot interrupt
  a running task, so this is the one stop mechanism that works everywhere;
- the child asks the kernel to be killed if its supervisor dies, so no pipe outlives its task.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from .._deadline import wait_until
from ..errors import StateError
from ._tracking import TaskEnded
from ._worker import describe_exit

__all__ = ["run_supervised", "stop_path", "request_stop", "ended_from_exit_code"]

#: Seconds between SIGTERM and SIGKILL when a pipe is asked to stop.
STOP_GRACE = 5.0


def stop_path(record: str | os.PathLike[str]) -> Path:
    """The stop file of the pipe whose progress record is ``record``."""
    return Path(record).with_suffix(".stop")


def request_stop(record: str | os.PathLike[str]) -> None:
    """Ask the supervisor of the pipe writing ``record`` to stop it."""
    stop_path(record).touch()


def ended_from_exit_code(code: int) -> TaskEnded:
    return TaskEnded(code == 0, "" if code == 0 else describe_exit(code))


def run_supervised(
    payload: bytes,
    index: int,
    record: str,
    attempt_id: str,
    host: str = "",
    poll_interval: float = 0.1,
) -> int:
    """Run the pickled pipe ``payload`` in a child process; returns its exit code.

    The exit code is 0 on success, 1 when the pipe failed (its record says why) and ``-N``
    when the child was killed by signal ``N``. If this function is interrupted (Ray's
    ``cancel`` raises ``KeyboardInterrupt`` in the task), the child is stopped before the
    interruption propagates.
    """
    stop = stop_path(record)
    if stop.exists():
        # Stopped while the task was still queued: never start the pipe.
        return -signal.SIGTERM
    command = [
        sys.executable,
        "-m",
        "zoopipe_hpc.engines._child",
        str(index),
        record,
        attempt_id,
        host,
        str(os.getpid()),
    ]
    child = subprocess.Popen(command, stdin=subprocess.PIPE)
    try:
        if child.stdin is None:  # pragma: no cover - Popen(stdin=PIPE) always sets it
            raise StateError("no pipe to the child process")
        try:
            child.stdin.write(payload)
            child.stdin.close()
        except BrokenPipeError:
            pass  # the child died at once; its exit code tells why
        wait_until(lambda: child.poll() is not None or stop.exists(), None, poll_interval)
        _stop(child)  # asked to stop (if it has not ended meanwhile)
    except BaseException:
        _stop(child)
        raise
    return int(child.wait())


def _stop(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is not None:
        return
    child.terminate()
    try:
        child.wait(STOP_GRACE)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
