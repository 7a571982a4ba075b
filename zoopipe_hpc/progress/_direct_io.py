"""Read one record-sized block from a freshly opened file, with O_DIRECT when possible (private).

O_DIRECT needs the user buffer, the file offset and the length aligned to the
device's logical block size.  An anonymous ``mmap`` is page aligned, the
offset is 0 and the length is 4096, which satisfies every block size Linux
filesystems use.  Filesystems that refuse O_DIRECT (historically tmpfs, some
FUSE mounts, ...) fail either ``open`` or the first read with ``EINVAL``; we
then fall back to a normal buffered read from a new descriptor.
"""

from __future__ import annotations

import errno
import logging
import mmap
import os
from typing import Final

__all__ = ["O_DIRECT", "read_block"]

_log = logging.getLogger(__name__)

#: ``os.O_DIRECT`` where the platform has it, else 0 (direct I/O never tried).
O_DIRECT: Final = getattr(os, "O_DIRECT", 0)
_O_CLOEXEC: Final = getattr(os, "O_CLOEXEC", 0)
#: Alignment O_DIRECT needs for offset and length (logical block size upper bound).
_ALIGN: Final = 4096
_UNSUPPORTED: Final = frozenset({errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP})


def _read_direct(path: str, size: int) -> bytes | None:
    """Read ``size`` bytes at offset 0 bypassing the page cache; None if unsupported."""
    try:
        fd = os.open(path, os.O_RDONLY | O_DIRECT | _O_CLOEXEC)
    except OSError as exc:
        if exc.errno in _UNSUPPORTED:
            _log.debug("O_DIRECT open refused for %s (%s); using buffered read", path, exc)
            return None
        raise
    try:
        with mmap.mmap(-1, size) as aligned:
            try:
                n = os.preadv(fd, [aligned], 0)
            except OSError as exc:
                if exc.errno in _UNSUPPORTED:
                    _log.debug("O_DIRECT read refused for %s (%s); using buffered read", path, exc)
                    return None
                raise
            return aligned[:n]
    finally:
        os.close(fd)


def _read_buffered(path: str, size: int) -> bytes:
    fd = os.open(path, os.O_RDONLY | _O_CLOEXEC)
    try:
        return os.pread(fd, size, 0)
    finally:
        os.close(fd)


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
