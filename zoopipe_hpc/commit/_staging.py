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

Both levels (``.zoopipe-staging`` and each ``<name>.run-<id>``) are created by the run with mode
0700 and checked before use (:mod:`zoopipe_hpc._private`): a symbolic link, a folder of another
user, or one writable by group or others is refused with a :class:`CommitError`, so that in a
shared folder (``/tmp``, a project share) nobody else can swap what the commit renames over a
target. :func:`publish_staged` renames a staged file only after checking, through descriptors
opened with ``O_NOFOLLOW``, the staging folder, the run's folder and the file itself.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import socket
import stat
import time
import uuid
from pathlib import Path
from typing import Any

import psutil

from .._private import (
    Use,
    check_private_stat,
    ensure_private_dir,
    open_private_dir,
    private_problem,
)
from ..errors import CommitError
from ..progress._direct_io import read_fresh
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
    "publish_staged",
    "publish_staged_folder",
    "run_folders",
    "staging_use",
]

log = logging.getLogger(__name__)

OWNER_FILE = "owner.json"
TRANSACTION_FILE = "transaction.json"
RECORD_FILE = "commit.json"


def new_run_id() -> str:
    return f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"


def staging_root(target: Path) -> Path:
    return target.parent / STAGING_DIR_NAME


def staging_use(target: Path | str, action: str = "") -> Use:
    """How a refused staging folder of ``target`` is explained (see :mod:`.._private`)."""
    return Use(
        action=action or f"stage {target}",
        risk=f"anyone who can write there could swap the files this run commits over {target}",
    )


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
        use = staging_use(self.target)
        ensure_private_dir(self.path.parent, "staging folder", use)
        ensure_private_dir(self.path, "run staging folder", use)
        try:
            owner = self.path / OWNER_FILE
            if not os.path.lexists(owner):
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

    def check(self) -> None:
        """Raise :class:`CommitError` unless the staging folder, and the run's folder if it
        exists, are private (ours, not links, not writable by others); creates nothing."""
        use = staging_use(self.target)
        for path, what in ((self.path.parent, "staging folder"), (self.path, "run staging folder")):
            try:
                info = os.lstat(path)
            except FileNotFoundError:
                return
            except OSError as exc:
                raise CommitError(
                    f"cannot inspect the {what} {path}: {exc}", path=str(path)
                ) from exc
            check_private_stat(info, path, what, use)

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
        """Remove a run's folder, and the staging folder if now empty; never in a staging
        folder that is not the user's own (a planted one is left to its owner)."""
        try:
            problem = private_problem(os.lstat(path.parent))
        except FileNotFoundError:
            return
        except OSError as exc:
            problem = str(exc)
        if problem is not None:
            log.warning("not removing %s: the staging folder %s %s", path, path.parent, problem)
            return
        shutil.rmtree(path, ignore_errors=True)
        with contextlib.suppress(OSError):
            path.parent.rmdir()


def run_folders(target: Path) -> list[Path]:
    """The staging folders of every run of ``target`` found next to it.

    Raises :class:`CommitError` if the staging folder is not private (see :mod:`.._private`);
    an entry in it that is not a private folder is left alone, with a warning.
    """
    root = staging_root(target)
    try:
        os.lstat(root)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise CommitError(
            f"cannot inspect the staging folder {root}: {exc}", path=str(root)
        ) from exc
    fd = open_private_dir(root, "staging folder", staging_use(target))
    found = []
    try:
        with os.scandir(fd) as entries:
            for entry in entries:
                if not (entry.name.startswith(f"{target.name}.run-")):
                    continue
                problem = private_problem(entry.stat(follow_symlinks=False))
                if problem is not None:
                    log.warning("leaving %s alone: it %s", root / entry.name, problem)
                    continue
                found.append(root / entry.name)
    finally:
        os.close(fd)
    return sorted(found)


def publish_staged(ready: Path, target: Path, size: int | None = None) -> bool:
    """Rename the staged file ``ready`` over ``target``; False if it is not there (renamed
    already, before a crash).

    Only a file of ``target``'s own staging folders is renamed, and only after checking,
    through descriptors opened with ``O_NOFOLLOW``, that ``.zoopipe-staging`` and the run's
    folder are private and that ``ready`` is a regular file of this user with ``size`` bytes
    (when given). The rename is made relative to those descriptors, so no swap of a path
    component after the checks can make it rename another file. Raises :class:`CommitError`.
    """
    root = staging_root(target)
    run = ready.parent
    if run.parent != root or not run.name.startswith(f"{target.name}.run-"):
        raise CommitError(
            f"refusing to replace {target} with {ready}: it is not in a staging folder of "
            f"{target} ({root}/{target.name}.run-<run id>/); nothing was renamed",
            path=str(target),
            operation="rename",
        )
    use = staging_use(target, f"commit {target}")
    parent_fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            os.stat(root.name, dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        root_fd = open_private_dir(root.name, "staging folder", use, dir_fd=parent_fd, shown=root)
        try:
            try:
                os.stat(run.name, dir_fd=root_fd, follow_symlinks=False)
            except FileNotFoundError:
                return False
            run_fd = open_private_dir(
                run.name, "run staging folder", use, dir_fd=root_fd, shown=run
            )
            try:
                return _replace_checked(ready, target, size, use, run_fd, parent_fd)
            finally:
                os.close(run_fd)
        finally:
            os.close(root_fd)
    finally:
        os.close(parent_fd)


def _replace_checked(
    ready: Path, target: Path, size: int | None, use: Use, run_fd: int, parent_fd: int
) -> bool:
    try:
        info = os.stat(ready.name, dir_fd=run_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    check_private_stat(info, ready, "staged file", use, kind="file", modes=False)
    if size is not None and info.st_size != size:
        raise CommitError(
            f"refusing to replace {target} with {ready}: it has {info.st_size} bytes, "
            f"{size} were staged (changed after it was prepared); nothing was renamed",
            path=str(target),
            operation="rename",
        )
    os.replace(ready.name, target.name, src_dir_fd=run_fd, dst_dir_fd=parent_fd)
    os.fsync(parent_fd)
    return True


def publish_staged_folder(ready: Path, target: Path, files: dict[str, int]) -> bool:
    """Publish the staged version folder ``ready`` as the dataset ``target``: move it next to
    the target (``<target>.v-<run id>``, its name), point a new symbolic link at it and rename
    the link over ``target`` (the one atomic step a reader can see), then remove every other
    version of ``target``. False if there was nothing left to do.

    Idempotent, for recovery from the commit record: each step is skipped when done already (a
    folder moved, a link in place). The folder is moved only from ``target``'s own private
    staging folders, after checking it and each of its ``files`` (name -> size) through
    descriptors opened with ``O_NOFOLLOW``, as :func:`publish_staged` checks a file. Raises
    :class:`CommitError` (or ``OSError`` from the filesystem).
    """
    root = staging_root(target)
    run = ready.parent
    if run.parent != root or not run.name.startswith(f"{target.name}.run-"):
        raise CommitError(
            f"refusing to publish {ready} as {target}: it is not in a staging folder of "
            f"{target} ({root}/{target.name}.run-<run id>/); nothing was renamed",
            path=str(target),
            operation="rename",
        )
    version = ready.name
    use = staging_use(target, f"commit {target}")
    parent_fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        root_fd = open_private_dir(root.name, "staging folder", use, dir_fd=parent_fd, shown=root)
        try:
            moved = _move_version(ready, target, files, use, root_fd, parent_fd)
            if moved is None:
                return False  # published and replaced since: nothing of it is left
            linked = _link_version(version, target, root_fd, parent_fd)
            removed = _remove_other_versions(version, target, root_fd, parent_fd)
        finally:
            os.close(root_fd)
    finally:
        os.close(parent_fd)
    return moved or linked or removed


def _move_version(
    ready: Path, target: Path, files: dict[str, int], use: Use, root_fd: int, parent_fd: int
) -> bool | None:
    """Move the version folder from the run's staging folder next to the target: True if
    moved now, False if it was there already, None if it is nowhere (nothing to publish)."""
    version, run = ready.name, ready.parent
    try:
        info = os.stat(version, dir_fd=parent_fd, follow_symlinks=False)
    except FileNotFoundError:
        info = None
    if info is not None:
        check_private_stat(info, target.parent / version, "dataset version", use, modes=False)
        return False
    try:
        os.stat(run.name, dir_fd=root_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    run_fd = open_private_dir(run.name, "run staging folder", use, dir_fd=root_fd, shown=run)
    try:
        try:
            info = os.stat(version, dir_fd=run_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        check_private_stat(info, ready, "staged dataset version", use, modes=False)
        version_fd = os.open(
            version, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=run_fd
        )
        try:
            _check_version_files(ready, target, files, use, version_fd)
        finally:
            os.close(version_fd)
        os.rename(version, version, src_dir_fd=run_fd, dst_dir_fd=parent_fd)
        os.fsync(parent_fd)
    finally:
        os.close(run_fd)
    return True


def _check_version_files(
    ready: Path, target: Path, files: dict[str, int], use: Use, version_fd: int
) -> None:
    present = set(os.listdir(version_fd))
    if present != set(files):
        raise CommitError(
            f"refusing to publish {ready} as {target}: it holds {sorted(present)}, "
            f"{sorted(files)} were staged (changed after it was prepared); nothing was renamed",
            path=str(target),
            operation="rename",
        )
    for name, size in files.items():
        info = os.stat(name, dir_fd=version_fd, follow_symlinks=False)
        check_private_stat(info, ready / name, "staged file", use, kind="file", modes=False)
        if info.st_size != size:
            raise CommitError(
                f"refusing to publish {ready} as {target}: {name} has {info.st_size} bytes, "
                f"{size} were staged (changed after it was prepared); nothing was renamed",
                path=str(target),
                operation="rename",
            )


def _link_version(version: str, target: Path, root_fd: int, parent_fd: int) -> bool:
    """Point ``target`` at ``version`` (a relative link) by renaming a new link over it; False
    if it points there already. The new link is made in the private staging folder under a
    fixed name (only the holder of the target's lock makes it), so a crash leaves no litter."""
    try:
        if os.readlink(target.name, dir_fd=parent_fd) == version:
            return False
    except FileNotFoundError:
        pass
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # EINVAL: not a link (a file of the "file" layout)
            raise
        if stat.S_ISDIR(os.stat(target.name, dir_fd=parent_fd, follow_symlinks=False).st_mode):
            raise CommitError(
                f"cannot publish the dataset {target}: it is a folder that is not a dataset "
                "version link; move it away, then run again",
                path=str(target),
                operation="rename",
            ) from exc
    temp = f".{target.name}.next-link"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temp, dir_fd=root_fd)
    os.symlink(version, temp, dir_fd=root_fd)
    os.rename(temp, target.name, src_dir_fd=root_fd, dst_dir_fd=parent_fd)
    os.fsync(parent_fd)
    return True


def _remove_other_versions(version: str, target: Path, root_fd: int, parent_fd: int) -> bool:
    """Remove the versions of ``target`` other than ``version`` (the one it now points to);
    an entry that is not a folder of this user is left alone, with a warning.

    Each is first renamed into the private staging folder (one atomic step), then deleted
    there: a reader that resolved the link to an old version before the swap, and lists or
    opens it only now, gets "no such file" instead of the part of it not deleted yet.
    """
    removed = False
    prefix = f"{target.name}.v-"
    for name in sorted(os.listdir(root_fd)):  # what a crash while deleting left
        if name.startswith(prefix) and name.endswith(_REMOVED):
            shutil.rmtree(name, dir_fd=root_fd)
    for name in sorted(os.listdir(parent_fd)):
        if not name.startswith(prefix) or name == version:
            continue
        info = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        problem = private_problem(info, modes=False)
        if problem is not None:
            log.warning("not removing %s: it %s", target.parent / name, problem)
            continue
        os.rename(name, name + _REMOVED, src_dir_fd=parent_fd, dst_dir_fd=root_fd)
        os.fsync(parent_fd)
        shutil.rmtree(name + _REMOVED, dir_fd=root_fd)
        removed = True
    return removed


#: The suffix of an old version being deleted in the staging folder.
_REMOVED = ".removed"


def owner_is_dead(folder: Path) -> bool:
    """True when the run that created ``folder`` is provably over (never a guess)."""
    try:
        owner = json.loads(read_fresh(folder / OWNER_FILE))
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
        document = json.loads(read_fresh(job_dir / "manifest.json"))
        state = document["manifest"]["state"]
    except FileNotFoundError:
        return True  # the job directory was deleted
    except (OSError, ValueError, KeyError, TypeError):
        return False  # unreadable right now: keep the files
    return state in _FINAL_JOB_STATES
