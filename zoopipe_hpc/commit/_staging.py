"""Staging folders: where a run's files wait, next to their target, until the run commits.

A target ``out/users.csv`` is never written in place. A run stages its files in
``out/.zoopipe-staging/users.csv.run-<run id>/`` (same filesystem, so the final rename is
atomic). The folder is created by the process that concludes the run (the manager, or a durable
job's directory), never by a worker, and holds:

- ``owner.json``: who created it (host, pid, process start, or the durable job's directory),
  so that a later run can tell a dead run's leftovers from a live run's files;
- ``transaction.json``: the run id and where the run's commit record is (the *primary* folder
  of the run), written when the folder is created;
- the shards' files ``part-NNNNN.<attempt><suffix>`` and temporary files;
- in the primary folder only, ``commit.json`` once the run decided to commit.
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
from pathlib import Path
from typing import Any

import psutil

from ..errors import CommitError
from ._atomic import atomic_write
from ._locks import STAGING_DIR_NAME

__all__ = [
    "STAGING_DIR_NAME",
    "OWNER_FILE",
    "TRANSACTION_FILE",
    "RECORD_FILE",
    "StagingArea",
    "new_run_id",
    "staging_root",
    "owner_is_dead",
    "run_folders",
]

log = logging.getLogger(__name__)

OWNER_FILE = "owner.json"
TRANSACTION_FILE = "transaction.json"
RECORD_FILE = "commit.json"


def new_run_id() -> str:
    return f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"


def staging_root(target: Path) -> Path:
    return target.parent / STAGING_DIR_NAME


class StagingArea:
    """A per-run staging folder next to a target; the unit of commit and discard."""

    def __init__(self, target: str | os.PathLike[str], run_id: str | None = None) -> None:
        self.target = Path(target).absolute()
        self.run_id = run_id or new_run_id()
        self.path = staging_root(self.target) / f"{self.target.name}.run-{self.run_id}"

    def __repr__(self) -> str:
        return f"StagingArea({str(self.target)!r}, run_id={self.run_id!r})"

    @property
    def record_path(self) -> Path:
        return self.path / RECORD_FILE

    def create(
        self, job_dir: Path | None = None, transaction: dict[str, Any] | None = None
    ) -> Path:
        """Create the folder (0700) and its owner record; ``job_dir`` names a durable job that
        owns it, ``transaction`` is what ``transaction.json`` says about the run."""
        if not self.target.parent.is_dir():
            raise CommitError(
                f"output folder {self.target.parent} does not exist", path=str(self.target)
            )
        try:
            self.path.parent.mkdir(mode=0o700, exist_ok=True)
            self.path.mkdir(mode=0o700, exist_ok=True)
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
                atomic_write(owner, json.dumps(record).encode())
            if transaction is not None:
                atomic_write(self.path / TRANSACTION_FILE, json.dumps(transaction).encode())
        except OSError as exc:
            raise CommitError(
                f"cannot create the staging folder {self.path} for {self.target}: {exc}",
                path=str(self.target),
            ) from exc
        return self.path

    def part_path(self, index: int, suffix: str, attempt_id: str = "") -> Path:
        """Where shard ``index`` writes; each attempt of a shard has its own file."""
        attempt = f".{attempt_id}" if attempt_id else ""
        return self.path / f"part-{index:05d}{attempt}{suffix}"

    def temp_path(self, name: str) -> Path:
        return self.path / f".{name}.{uuid.uuid4().hex[:8]}.tmp"

    def discard(self) -> None:
        """Remove the folder and everything in it (and the staging root if now empty)."""
        self.discard_folder(self.path)

    @staticmethod
    def discard_folder(path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)
        with contextlib.suppress(OSError):
            path.parent.rmdir()


def run_folders(target: Path) -> list[Path]:
    """The staging folders of every run of ``target`` found next to it."""
    root = staging_root(target)
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob(f"{target.name}.run-*") if p.is_dir())


def owner_is_dead(folder: Path) -> bool:
    """True when the run that created ``folder`` is provably over (never a guess)."""
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
