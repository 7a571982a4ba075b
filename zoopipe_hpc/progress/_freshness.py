"""Does this node see the progress records of another node fresh? (private)

A coordinator reads the records the workers write on other nodes through its own client of the
shared filesystem. The reader goes past that client's page cache (O_DIRECT, else
``posix_fadvise(DONTNEED)`` before a buffered read, see :mod:`._direct_io`); what it cannot get
past is said here, once per folder, as a warning naming the folder, the filesystem and what to
change (docs/progress.md, "Shared filesystems"):

* O_DIRECT refused and no ``posix_fadvise``: a client that keeps pages across opens serves the
  first page it read forever;
* NFS mounted ``nocto`` and O_DIRECT refused: opens do not revalidate;
* a GlusterFS client that refuses O_DIRECT and keeps pages across opens (``fopen-keep-cache``).
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from . import _direct_io

__all__ = ["MountInfo", "freshness_problem", "mount_of", "warn_if_stale_cache"]

_log = logging.getLogger("zoopipe_hpc.progress.record")

#: Filesystem types whose clients on different nodes keep caches of their own.
_SHARED_TYPES: Final = ("nfs", "nfs4", "lustre", "gpfs", "beegfs", "ceph", "cifs", "smb3")
_PROBE_NAME: Final = ".zoopipe-freshness-probe"
_warned: set[str] = set()
_warned_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class MountInfo:
    """The mount a path is on: its mount point, type and options (mount and superblock)."""

    mount_point: str
    fstype: str
    options: frozenset[str]

    @property
    def shared(self) -> bool:
        """True for a network filesystem or a FUSE client (GlusterFS, CephFS, BeeGFS ...)."""
        return self.fstype in _SHARED_TYPES or self.fstype.startswith("fuse.")


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo
    return field.encode().decode("unicode_escape").encode("latin-1").decode("utf-8", "replace")


def mount_of(path: str | os.PathLike[str], mountinfo: str = "/proc/self/mountinfo") -> MountInfo:
    """The mount ``path`` is on (the longest mount point above it); a local ``unknown`` one
    where ``/proc`` cannot tell."""
    real = os.path.realpath(path)
    best = MountInfo("/", "unknown", frozenset())
    try:
        with open(mountinfo, encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return best
    for line in lines:
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 6 or len(tail) < 3:
            continue
        point = _unescape(fields[4])
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best.mount_point):
            options = frozenset(fields[5].split(",")) | frozenset(tail[2].split(","))
            best = MountInfo(point, tail[0], options)
    return best


def _direct_io_works(folder: Path) -> bool:
    """Whether an O_DIRECT read works in ``folder`` (a probe file of ours, removed after)."""
    probe = folder / f"{_PROBE_NAME}.{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except OSError:
        return True  # cannot probe (read-only folder): say nothing rather than guess
    try:
        os.write(fd, bytes(4096))
        os.close(fd)
        _, direct = _direct_io.read_block(str(probe), 4096)
        return direct
    except OSError:
        return True
    finally:
        probe.unlink(missing_ok=True)


def _gluster_client_flags(mount_point: str) -> set[str]:
    """The command-line flags of this node's GlusterFS client serving ``mount_point``."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                args = handle.read().decode("utf-8", "replace").split("\0")
        except OSError:
            continue
        args = [a for a in args if a]
        if args and os.path.basename(args[0]) == "glusterfs" and args[-1] == mount_point:
            return set(args[1:-1])
    return set()


def freshness_problem(folder: str | os.PathLike[str]) -> str | None:
    """Why records in ``folder`` written on another node may reach this one late or never
    (what to change included), or None when this node's reads get past its caches."""
    path = Path(folder)
    mount = mount_of(path)
    if not mount.shared or _direct_io_works(path):
        return None
    what = f"{path} is on {mount.fstype} ({mount.mount_point}) and refuses O_DIRECT"
    if _direct_io.DONTNEED is None:
        return (
            f"{what}, and this platform has no posix_fadvise: a record another node updates "
            "may never reach this one. Mount it so that O_DIRECT works, or read on another node"
        )
    if mount.fstype.startswith("nfs") and "nocto" in mount.options:
        return (
            f"{what}, and it is mounted nocto: opens do not revalidate, so a record another node "
            "updates reaches this one only when the attribute cache expires. Mount it without "
            "nocto (or with lookupcache=none,actimeo=1)"
        )
    if mount.fstype == "fuse.glusterfs":
        flags = _gluster_client_flags(mount.mount_point)
        if "--fopen-keep-cache" in flags or "--fopen-keep-cache=true" in flags:
            return (
                f"{what}, and its GlusterFS client keeps pages across opens (fopen-keep-cache): "
                "a record another node updates can stay old here. Mount it with "
                "direct-io-mode=enable and without fopen-keep-cache"
            )
    return None


def warn_if_stale_cache(folder: str | os.PathLike[str], logger: logging.Logger = _log) -> None:
    """Log :func:`freshness_problem` of ``folder`` as a warning, once per folder and process."""
    key = os.path.realpath(folder)
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    problem = freshness_problem(folder)
    if problem is not None:
        logger.warning("progress records may reach this node late: %s", problem)
