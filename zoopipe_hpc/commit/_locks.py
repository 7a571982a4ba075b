"""The commit locks: one strict soft lock per target, taken in a fixed order.

A :class:`filelock.StrictSoftFileLock` claims the lock with hard links, which excludes across
NFS clients and hosts (a kernel ``flock`` does not, on every network filesystem). The lock of a
target ``out/users.csv`` is ``out/.zoopipe-staging/users.csv.lock``. A claim whose owner provably
died (same host, process gone) is removed before waiting; any other claim is waited for, and a
timeout is a :class:`~zoopipe_hpc.errors.CommitError` naming the holders.

The staging folder that holds the locks is created by the run with mode 0700 and checked, with
the lock file, filelock's folders and every claim, before the lock is taken and again once it is
held (:mod:`zoopipe_hpc._private`): a lock in a folder someone else can write to excludes
nobody, so such a folder is refused with a :class:`CommitError` saying why and what to do.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import psutil
from filelock import StrictSoftFileLock, Timeout

from .._private import Use, check_private, check_private_stat, ensure_private_dir
from ..errors import CommitError, ZoopipeHPCError

__all__ = [
    "LOCK_ATTEMPTS",
    "LOCK_TIMEOUT",
    "commit_lock",
    "break_dead_claims",
    "check_lock_files",
    "hold",
    "locked",
    "locked_all",
]

log = logging.getLogger(__name__)

STAGING_DIR_NAME = ".zoopipe-staging"
LOCK_TIMEOUT = 600.0
#: How often a lock is tried (or released) when the lock protocol meets a transient error.
LOCK_ATTEMPTS = 5
#: Pause before the n-th new try: n times this.
_RETRY_DELAY = 0.02
#: Errors another client's move explains: a claim it withdrew (or replaced) between this
#: client's lookup and its open, read or close.
_TRANSIENT_ERRNOS = frozenset({errno.ENOENT, errno.ESTALE})


def _lock_use(target: Path) -> Use:
    return Use(
        action=f"lock {target} for commit",
        risk=(
            f"anyone who can write there could take or break the commit lock of {target} and "
            "swap the files a commit renames over it"
        ),
    )


def check_lock_files(target: Path) -> None:
    """Raise :class:`CommitError` unless the staging folder, the lock file of ``target`` and
    filelock's folders and claims under it (those that exist) are private."""
    use = _lock_use(target)
    root = target.parent / STAGING_DIR_NAME
    check_private(root, "staging folder", use)
    lock_file = root / f"{target.name}.lock"
    if os.path.lexists(lock_file):
        check_private(lock_file, "lock file", use, kind="file")
    folder = root / f"{target.name}.lock.filelock"
    claims = folder / "claims"
    for path in (folder, claims):
        if not os.path.lexists(path):
            return
        check_private(path, "lock folder", use)
    try:
        with os.scandir(claims) as entries:
            for entry in entries:
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError as exc:
                    if exc.errno in _TRANSIENT_ERRNOS:
                        continue  # withdrawn by its holder meanwhile, maybe on another client
                    raise
                check_private_stat(info, claims / entry.name, "lock claim", use, kind="file")
    except OSError as exc:
        raise CommitError(
            f"cannot check the lock claims of {target} under {claims}: {exc}", path=str(target)
        ) from exc


def commit_lock(target: Path, timeout: float = LOCK_TIMEOUT) -> StrictSoftFileLock:
    """The lock that serialises every commit to ``target``, across processes and NFS clients;
    its staging folder is created (0700) if needed, and checked with the lock's files."""
    root = target.parent / STAGING_DIR_NAME
    ensure_private_dir(root, "staging folder", _lock_use(target))
    check_lock_files(target)
    return StrictSoftFileLock(str(root / f"{target.name}.lock"), timeout=timeout, mode=0o600)


def break_dead_claims(lock: StrictSoftFileLock) -> None:
    """Remove claims on ``lock`` whose owner provably died: same host, process gone.

    A strict claim is never broken by age; a claim from another host, or whose process may
    still exist, stays (the timeout error names it so that an operator can decide).
    """
    host = socket.gethostname()
    for claim in lock.claims:
        if claim.hostname.split("?")[0] != host or psutil.pid_exists(claim.pid):
            continue
        log.warning(
            "removing the lock claim %s of process %d on %s, which no longer exists",
            claim.name,
            claim.pid,
            host,
        )
        with contextlib.suppress(FileNotFoundError):
            lock.force_break(claim.name)


def _transient(exc: BaseException) -> bool:
    """A lock-protocol error another client's move explains, which a new try gets past."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_transient(inner) for inner in exc.exceptions)
    return isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return f"{exc.message} ({'; '.join(_describe(inner) for inner in exc.exceptions)})"
    return str(exc) or type(exc).__name__


def _owners(lock: StrictSoftFileLock) -> str:
    try:
        claims = lock.claims
    except (OSError, ExceptionGroup):  # the claims changed while being listed: name none
        return "unknown"
    return ", ".join(dict.fromkeys(f"pid {c.pid} on {c.hostname}" for c in claims)) or "unknown"


def _acquire(lock: StrictSoftFileLock, timeout: float) -> None:
    """Take ``lock`` within ``timeout`` s, trying again (bounded) after a transient error."""
    deadline = time.monotonic() + timeout
    for attempt in range(1, LOCK_ATTEMPTS + 1):
        try:
            break_dead_claims(lock)
            lock.acquire(timeout=max(0.0, deadline - time.monotonic()))
            return
        except (OSError, ExceptionGroup) as exc:
            if not _transient(exc) or attempt == LOCK_ATTEMPTS:
                raise
            log.debug("lock %s: transient %s; trying again", lock.lock_file, _describe(exc))
            time.sleep(_RETRY_DELAY * attempt)


def _release(lock: StrictSoftFileLock) -> None:
    """Release ``lock``, trying again (bounded) after a transient error while it is held."""
    for attempt in range(1, LOCK_ATTEMPTS + 1):
        try:
            lock.release(force=attempt > 1)
            return
        except (OSError, ExceptionGroup) as exc:
            if not _transient(exc) or attempt == LOCK_ATTEMPTS:
                raise
            if not lock.is_locked:
                return
            log.debug("unlock %s: transient %s; trying again", lock.lock_file, _describe(exc))
            time.sleep(_RETRY_DELAY * attempt)


@contextlib.contextmanager
def hold(
    lock_file: Path,
    timeout: float,
    *,
    what: str,
    error: Callable[[str], ZoopipeHPCError],
) -> Iterator[StrictSoftFileLock]:
    """Hold the strict soft lock ``lock_file`` (the one way the package takes a lock on a
    shared filesystem): dead claims of this host are removed first; a transient ``ENOENT`` or
    ``ESTALE`` inside the lock protocol (a claim another client withdrew while this one read
    it) is tried again, at most :data:`LOCK_ATTEMPTS` times; a timeout or any other OS error,
    alone or grouped by filelock, becomes ``error(message)``, the message naming ``what``, the
    holders and the claim files."""
    lock = StrictSoftFileLock(str(lock_file), timeout=timeout, mode=0o600)
    try:
        _acquire(lock, timeout)
    except Timeout as exc:
        raise error(
            f"could not lock {what} within {timeout:g} s: held by {_owners(lock)} "
            f"(lock file {lock_file}; if that process is gone for good, remove its claim "
            f"files under {lock_file}.filelock/claims)"
        ) from exc
    except (OSError, ExceptionGroup) as exc:
        raise error(f"could not lock {what}: {_describe(exc)} (lock file {lock_file})") from exc
    try:
        yield lock
    finally:
        try:
            _release(lock)
        except (OSError, ExceptionGroup) as exc:
            raise error(
                f"could not unlock {what}: {_describe(exc)} (lock file {lock_file})"
            ) from exc


@contextlib.contextmanager
def locked(target: Path, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """Hold the commit lock of ``target``; every failure is a :class:`CommitError`."""
    lock = commit_lock(target, timeout)

    def error(message: str) -> ZoopipeHPCError:
        return CommitError(message, path=str(target))

    with hold(Path(lock.lock_file), timeout, what=f"{target} for commit", error=error):
        check_lock_files(target)  # still ours now that it is held
        yield


@contextlib.contextmanager
def locked_all(targets: Iterable[Path], timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """Hold the commit locks of every target, taken in path order (so two commits to
    overlapping sets of targets never deadlock), released in reverse."""
    with contextlib.ExitStack() as stack:
        for target in sorted(set(targets), key=str):
            stack.enter_context(locked(target, timeout))
        yield
