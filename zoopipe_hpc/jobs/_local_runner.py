"""Who is running a local job: a kernel lock in its job directory, and a note naming the holder.

A Slurm job's shards live in Slurm; a local job's shards live in the processes of whoever ran
``zoopipe-hpc run`` (or ``resume``, ``retry``). That process takes an exclusive ``flock`` on
``local-runner.lock`` before it starts any shard and drops it once the job is concluded. The
kernel drops it too when the process dies, except that the worker processes it forked share
the lock: while any of them still runs a shard, the lock stays taken, so a ``resume`` from
another shell cannot start the same shard a second time. ``local-runner.json`` says who took
it (host, pid, when), for messages; it is only believed while the lock is held.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

from ..commit._atomic import atomic_write

__all__ = ["LocalRunner"]

LOCK_FILE = "local-runner.lock"
OWNER_FILE = "local-runner.json"
_CLAIM_ATTEMPTS = 4
# What flock answers on a filesystem without locks (NFS mounted with nolock, some FUSE mounts).
_NO_LOCKS = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS})

log = logging.getLogger(__name__)


class LocalRunner:
    """The run lock of one local job directory."""

    def __init__(self, job_dir: Path) -> None:
        self.job_dir = job_dir
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def _open(self) -> int:
        return os.open(self.job_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)

    def try_claim(self) -> bool:
        """Take the lock if nobody holds it; True if this object holds it afterwards."""
        if self._fd is not None:
            return True
        fd = self._open()
        try:
            for attempt in range(_CLAIM_ATTEMPTS):
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:  # held, or probed by owner() this instant: look again
                    if attempt == _CLAIM_ATTEMPTS - 1:
                        os.close(fd)
                        return False
                    time.sleep(0.05)
                except OSError as exc:
                    if exc.errno not in _NO_LOCKS:
                        raise
                    log.warning(
                        "cannot lock %s (%s): the job runs, but a resume from another process "
                        "would not be refused while it does",
                        self.job_dir / LOCK_FILE,
                        exc.strerror,
                    )
                    break
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        note = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}
        atomic_write(self.job_dir / OWNER_FILE, json.dumps(note).encode(), mode=0o600)
        return True

    def release(self) -> None:
        """Drop the lock (the worker processes that shared it no longer hold it either)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(FileNotFoundError):
            (self.job_dir / OWNER_FILE).unlink()
        try:
            with contextlib.suppress(OSError):  # a lock that could not be taken (see try_claim)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def owner(self) -> dict[str, Any] | None:
        """Who holds the lock (``host``, ``pid``, ``since``), or None when nobody does.

        The holder may be this very object. A holder whose note is not there yet (it is being
        written) or unreadable is reported with empty fields.
        """
        if self._fd is not None:
            return self._note()
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return self._note()
        except OSError as exc:
            if exc.errno not in _NO_LOCKS:
                raise
            return None  # no locks here: nobody can be seen holding it
        finally:
            os.close(fd)  # closing also drops a lock this probe took
        return None

    def _note(self) -> dict[str, Any]:
        try:
            note = json.loads((self.job_dir / OWNER_FILE).read_text())
        except (OSError, ValueError):
            note = {}
        if not isinstance(note, dict):
            note = {}
        note.setdefault("host", "?")
        note.setdefault("pid", "?")
        return dict(note)

    @staticmethod
    def is_this_process(owner: dict[str, Any]) -> bool:
        """Whether ``owner`` (from :meth:`owner`) is the calling process."""
        return owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname()

    def describe(self, owner: dict[str, Any]) -> str:
        """``pid 123 on host n1`` for messages."""
        return f"pid {owner['pid']} on host {owner['host']}"
