"""Staging folders, durable writes and the atomic, locked replace of a target file.

A target ``out/users.csv`` is never written in place. Writers put their files into a staging
folder ``out/.zoopipe-staging/users.csv.<run id>/`` on the same filesystem; once a result is
complete it is flushed, fsynced and renamed over the target with ``os.replace`` while holding a
:class:`filelock.StrictSoftFileLock` on ``out/.zoopipe-staging/users.csv.lock``. A reader therefore
sees either the old target or the whole new one, and two commits to one target never interleave.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
from filelock import StrictSoftFileLock, Timeout

from ..errors import CommitError

__all__: list[str] = []

log = logging.getLogger(__name__)

STAGING_DIR_NAME = ".zoopipe-staging"
OWNER_FILE = "owner.json"
LOCK_TIMEOUT = 600.0


def new_run_id() -> str:
    return f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"


def fsync_path(path: Path) -> None:
    """Make a file's content, or a folder's renames and creations, durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def staging_root(target: Path) -> Path:
    return target.parent / STAGING_DIR_NAME


def commit_lock(target: Path, timeout: float = LOCK_TIMEOUT) -> StrictSoftFileLock:
    """The lock that serialises every commit to ``target``, across processes and NFS clients."""
    root = staging_root(target)
    root.mkdir(parents=True, exist_ok=True)
    return StrictSoftFileLock(str(root / f"{target.name}.lock"), timeout=timeout)


def _break_dead_claims(lock: StrictSoftFileLock) -> None:
    """Remove claims on ``lock`` whose owner provably died: same host, process gone.

    A strict claim is never broken by age; a claim from another host, or whose process may
    still exist, stays (the timeout error names it so that an operator can decide).
    """
    host = socket.gethostname()
    for claim in lock.claims:
        if claim.hostname.split("?")[0] != host or psutil.pid_exists(claim.pid):
            continue
        log.warning(
            "removing the commit-lock claim %s of process %d on %s, which no longer exists",
            claim.name,
            claim.pid,
            host,
        )
        with contextlib.suppress(FileNotFoundError):
            lock.force_break(claim.name)


@contextlib.contextmanager
def locked(target: Path, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    lock = commit_lock(target, timeout)
    _break_dead_claims(lock)
    try:
        lock.acquire()
    except Timeout as exc:
        owners = ", ".join(f"pid {c.pid} on {c.hostname}" for c in lock.claims) or "unknown"
        raise CommitError(
            f"could not lock {target} for commit within {timeout:.0f} s: held by {owners} "
            f"(lock file {lock.lock_file}; if that process is gone for good, remove the claim "
            f"files under {lock.lock_file}.filelock/claims)",
            path=str(target),
        ) from exc
    try:
        yield
    finally:
        lock.release()


class StagingArea:
    """A per-run staging folder next to a target file; the unit of commit and discard."""

    def __init__(self, target: str | os.PathLike[str], run_id: str | None = None) -> None:
        self.target = Path(target).absolute()
        self.run_id = run_id or new_run_id()
        self.path = staging_root(self.target) / f"{self.target.name}.run-{self.run_id}"

    def __repr__(self) -> str:
        return f"StagingArea({str(self.target)!r}, run_id={self.run_id!r})"

    def create(self, job_dir: Path | None = None) -> Path:
        """Create the folder and its owner record; ``job_dir`` names a durable job that owns it."""
        if not self.target.parent.is_dir():
            raise CommitError(
                f"output folder {self.target.parent} does not exist", path=str(self.target)
            )
        self.path.mkdir(parents=True, exist_ok=True)
        owner = self.path / OWNER_FILE
        if not owner.exists():
            record: dict[str, object] = {
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "created": time.time(),
            }
            if job_dir is not None:
                record["job_dir"] = str(job_dir)
            with contextlib.suppress(psutil.Error):
                record["process_start"] = psutil.Process().create_time()
            owner.write_text(json.dumps(record))
        return self.path

    def part_path(self, index: int, suffix: str, attempt_id: str = "") -> Path:
        """Where shard ``index`` writes; each attempt of a shard has its own file."""
        attempt = f".{attempt_id}" if attempt_id else ""
        return self.path / f"part-{index:05d}{attempt}{suffix}"

    def temp_path(self, name: str) -> Path:
        return self.path / f".{name}.{uuid.uuid4().hex[:8]}.tmp"

    def commit_file(self, ready: Path) -> None:
        """Atomically replace the target with ``ready`` (a fully written file in this area)."""
        fsync_path(ready)
        with locked(self.target):
            os.replace(ready, self.target)
            fsync_path(self.target.parent)
        log.info("committed %s (run %s)", self.target, self.run_id)

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.path.parent.rmdir()


def _owner_is_dead(folder: Path) -> bool:
    try:
        owner = json.loads((folder / OWNER_FILE).read_text())
    except (OSError, ValueError):
        # No readable owner record: only reclaim it once it is clearly old.
        try:
            return time.time() - folder.stat().st_mtime > 24 * 3600
        except OSError:
            return False
    if owner.get("job_dir"):
        # Owned by a durable job: alive until its manifest says it is over, whichever process
        # (a login node, a Slurm commit job) works on it.
        return _job_is_over(Path(owner["job_dir"]))
    if owner.get("host") != socket.gethostname():
        return False
    pid = int(owner.get("pid", 0))
    if not psutil.pid_exists(pid):
        return True
    started = owner.get("process_start")
    if started is None:
        return False
    try:
        return bool(abs(psutil.Process(pid).create_time() - float(started)) > 1.0)
    except psutil.Error:
        return True


_FINAL_JOB_STATES = {"committed", "rolled_back", "cancelled"}


def _job_is_over(job_dir: Path) -> bool:
    try:
        document = json.loads((job_dir / "manifest.json").read_text())
        state = document["manifest"]["state"]
    except FileNotFoundError:
        return True  # the job directory was deleted
    except (OSError, ValueError, KeyError, TypeError):
        return False  # unreadable right now: keep the files
    return state in _FINAL_JOB_STATES


def clean_leftovers(target: str | os.PathLike[str]) -> list[Path]:
    """Remove staging folders of ``target`` left by runs whose owner process is gone.

    Only folders created on this host by a process that no longer exists are removed; a folder
    of a live run, or of a run on another host, is left alone.
    """
    target_path = Path(target).absolute()
    root = staging_root(target_path)
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    for folder in root.glob(f"{target_path.name}.run-*"):
        if not folder.is_dir():
            continue
        if _owner_is_dead(folder):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
            log.info("removed leftover staging folder %s", folder)
    return removed
