"""The child process of :func:`~zoopipe_hpc.engines._remote.run_supervised`.

Usage: ``python -m zoopipe_hpc.engines._child INDEX RECORD ATTEMPT_ID HOST PARENT_PID``, with the
cloudpickled pipe on standard input. Exit code 0: the pipe succeeded; 1: it failed (the reason
is in the progress record).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
from pathlib import Path

import cloudpickle

from ._worker import WorkerTerminated, install_stop_handlers, record_unstarted, run_pipe

__all__ = ["main"]

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> None:
    """Have the kernel send SIGTERM when the supervising process dies (Linux)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent_pid:
        # The supervisor died before the request above took effect.
        sys.exit(1)


def main(argv: list[str]) -> int:
    if len(argv) != 5:
        print(
            "usage: python -m zoopipe_hpc.engines._child INDEX RECORD ATTEMPT_ID HOST PARENT_PID",
            file=sys.stderr,
        )
        return 2
    index, record, attempt_id, host, parent = int(argv[0]), Path(argv[1]), argv[2], argv[3], argv[4]
    install_stop_handlers()
    _die_with_parent(int(parent))
    try:
        pipe = cloudpickle.loads(sys.stdin.buffer.read())
    except (WorkerTerminated, Exception) as exc:
        record_unstarted(record, attempt_id, exc, host or None, what="could not load the pipe: ")
        return 1
    try:
        run_pipe(pipe, index, record, attempt_id, host=host or None)
    except BaseException:
        log.debug("pipe %d failed", index, exc_info=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
