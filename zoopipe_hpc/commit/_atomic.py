"""Durable writes: one helper for every file the package must not leave half-written.

``atomic_write`` writes a temporary file in the destination's folder, fsyncs it, renames it over
the destination and fsyncs the folder: a reader (or a crash) sees the old file or the whole new
one. ``fsync_path`` makes a file's content, or a folder's renames and creations, durable.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

__all__ = ["atomic_write", "fsync_path", "file_digest"]


def fsync_path(path: str | os.PathLike[str]) -> None:
    """Make a file's content, or a folder's renames and creations, durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], data: bytes, mode: int = 0o600) -> Path:
    """Replace ``path`` with ``data`` atomically and durably; returns the path."""
    target = Path(path)
    temp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_path(target.parent)
    return target


def file_digest(path: str | os.PathLike[str]) -> tuple[int, str]:
    """(size in bytes, ``sha256:<hex>``) of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
            size += len(block)
    return size, f"sha256:{digest.hexdigest()}"
