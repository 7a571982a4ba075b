"""Reads past this node's caches: O_DIRECT when possible, else a buffered read of dropped pages
(private).

A coordinator and its workers see a shared filesystem through different clients, whose caches
are not coherent (docs/progress.md, "Shared filesystems"). Every read here opens the file anew
(close-to-open consistency on NFS), and then:

* reads with ``O_DIRECT``, which bypasses this node's page cache. O_DIRECT needs the user buffer,
  the file offset and the length aligned to the device's logical block size: an anonymous
  ``mmap`` is page aligned and the offsets are multiples of 4096, which satisfies every block
  size Linux filesystems use;
* or, where the filesystem refuses O_DIRECT (``EINVAL`` on ``open`` or on the first read:
  historically tmpfs, some FUSE mounts), drops the file's cached pages with
  ``posix_fadvise(POSIX_FADV_DONTNEED)`` and reads buffered: a kernel that keeps a file's pages
  across opens (a FUSE client with ``attribute-timeout=0``, say) would otherwise serve the page
  it read first forever.

:func:`read_fresh` also retries ``ESTALE`` (a stale file handle: another client replaced the
file between this client's lookup and its read), a bounded number of times, with a new open.
"""

from __future__ import annotations

import errno
import logging
import mmap
import os
import time
from typing import Final

from ..errors import ConfigurationError

__all__ = [
    "DONTNEED",
    "O_DIRECT",
    "READ_ATTEMPTS",
    "drop_cached_pages",
    "read_block",
    "read_fresh",
]

_log = logging.getLogger(__name__)

#: ``os.O_DIRECT`` where the platform has it, else 0 (direct I/O never tried).
O_DIRECT: Final = getattr(os, "O_DIRECT", 0)
_O_CLOEXEC: Final = getattr(os, "O_CLOEXEC", 0)
#: Alignment O_DIRECT needs for offset and length (logical block size upper bound).
_ALIGN: Final = 4096
#: Bytes one direct read of a whole file asks for at a time.
_CHUNK: Final = 1 << 20
_UNSUPPORTED: Final = frozenset({errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP})
#: ``os.POSIX_FADV_DONTNEED`` where the platform has it, else None (cached pages kept).
DONTNEED: Final = getattr(os, "POSIX_FADV_DONTNEED", None)
#: How often :func:`read_fresh` opens a file that keeps answering ESTALE.
READ_ATTEMPTS: Final = 8
#: Pause before the n-th re-open after ESTALE: this times 2**(n-1), 2.54 s in all: well over
#: the 1 s a FUSE client (GlusterFS) keeps a name bound to the replaced file by default.
_ESTALE_DELAY: Final = 0.02


def _read_direct(path: str, size: int | None) -> bytes | None:
    """``size`` bytes at offset 0 (the whole file for None) bypassing the page cache; None if
    the filesystem refuses direct I/O."""
    try:
        fd = os.open(path, os.O_RDONLY | O_DIRECT | _O_CLOEXEC)
    except OSError as exc:
        if exc.errno in _UNSUPPORTED:
            _log.debug("O_DIRECT open refused for %s (%s); using buffered read", path, exc)
            return None
        raise
    try:
        chunk = _CHUNK if size is None else size
        parts: list[bytes] = []
        with mmap.mmap(-1, chunk) as aligned:
            offset = 0
            while True:
                try:
                    n = os.preadv(fd, [aligned], offset)
                except OSError as exc:
                    if exc.errno in _UNSUPPORTED and offset == 0:
                        _log.debug("O_DIRECT read refused for %s (%s); using buffered", path, exc)
                        return None
                    raise
                parts.append(aligned[:n])
                offset += n
                if size is not None or n < chunk:
                    return b"".join(parts)
    finally:
        os.close(fd)


def drop_cached_pages(fd: int) -> None:
    """Make this node's next read of ``fd`` ask the filesystem, not the page cache."""
    if DONTNEED is None:
        return
    try:
        os.posix_fadvise(fd, 0, 0, DONTNEED)
    except OSError as exc:  # advice only: a filesystem may ignore or refuse it
        _log.debug("posix_fadvise(DONTNEED) refused (%s)", exc)


def _read_buffered(path: str, size: int | None) -> bytes:
    fd = os.open(path, os.O_RDONLY | _O_CLOEXEC)
    try:
        drop_cached_pages(fd)
        if size is not None:
            return os.pread(fd, size, 0)
        parts = []
        while block := os.read(fd, _CHUNK):
            parts.append(block)
        return b"".join(parts)
    finally:
        os.close(fd)


def _refresh_entries(path: str) -> bool:
    """List the folder of ``path``; whether it names ``path``. A client that kept a name bound
    to a file another client replaced (why it got ESTALE or ENOENT) learns the new binding from
    the listing."""
    folder, leaf = os.path.split(path)
    try:
        with os.scandir(folder or ".") as entries:
            return any(entry.name == leaf for entry in entries)
    except OSError as exc:
        _log.debug("listing %s to refresh its entries failed: %s", folder, exc)
        return False


def read_block(path: str, size: int) -> tuple[bytes, bool]:
    """Return ``(data, used_direct_io)`` for the first ``size`` bytes of ``path``.

    Every call opens the file anew (close-to-open consistency on NFS).  The
    data is shorter than ``size`` if the file is.  ``size`` must be a multiple
    of 4096 for the direct path.  ``OSError`` (e.g. ``FileNotFoundError``)
    propagates.
    """
    if O_DIRECT and size % _ALIGN == 0:
        data = _read_direct(path, size)
        if data is not None:
            return data, True
    return _read_buffered(path, size), False


def read_fresh(
    path: str | os.PathLike[str], *, attempts: int = READ_ATTEMPTS, may_be_missing: bool = False
) -> bytes:
    """The whole content of ``path`` as the filesystem has it now, not as this node cached it.

    For the state the package reads under a lock or from another node (manifests, commit
    records, result files): a direct read, or a buffered one after dropping the cached pages.
    ``ESTALE``, and ``ENOENT`` for a name its folder still lists (both mean: another client
    replaced the file), are retried with a new open after listing the folder, at most
    ``attempts`` opens in all; any other ``OSError`` (``FileNotFoundError`` for a file that is
    not there) propagates. ``may_be_missing`` is for a file that is often absent (a result not
    written yet, polled for): its ``ENOENT`` propagates at once, without listing the folder.
    """
    if attempts < 1:
        raise ConfigurationError(f"attempts must be >= 1, got {attempts}")
    name = os.fspath(path)
    for attempt in range(1, attempts + 1):
        try:
            data = _read_direct(name, None) if O_DIRECT else None
            return _read_buffered(name, None) if data is None else data
        except OSError as exc:
            if attempt >= attempts or exc.errno not in (errno.ESTALE, errno.ENOENT):
                raise
            if exc.errno == errno.ENOENT and may_be_missing:
                raise
            # A missing file the folder still lists was replaced by another client: its name
            # points to the new file once this client's entry is refreshed.
            if not _refresh_entries(name) and exc.errno == errno.ENOENT:
                raise
            _log.debug("%s: %s (replaced by another client?); reading again", name, exc)
            time.sleep(_ESTALE_DELAY * 2 ** (attempt - 1))
    raise OSError(errno.ESTALE, "stale file handle", name)  # pragma: no cover (unreachable)
