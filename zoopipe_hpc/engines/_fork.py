"""Starting a forked process while another thread holds a file lock.

filelock refuses ``os.fork`` (``RuntimeError: os.fork is unsafe while filelock is changing
descriptor ownership``) during the short moment another thread of this process takes or releases
a lock, because the child would inherit a half-changed descriptor. A manager run in one thread
while another commits (two ``PipeManager.run()`` at once, as a notebook or a service may do) hits
that moment now and then. It passes in microseconds, so a start that meets it is tried again.
"""

from __future__ import annotations

import time
from typing import Protocol

from .._deadline import Deadline

__all__ = ["start_forked"]

_FILELOCK_BUSY = "filelock is changing descriptor ownership"


class _Startable(Protocol):
    def start(self) -> None: ...


def start_forked(process: _Startable, patience: float = 5.0) -> None:
    """``process.start()``, tried again while filelock briefly forbids forking."""
    deadline = Deadline(patience)
    pause = 0.001
    while True:
        try:
            process.start()
            return
        except RuntimeError as exc:
            if _FILELOCK_BUSY not in str(exc) or deadline.expired:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.05)
