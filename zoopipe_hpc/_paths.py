"""Is it the same file? Paths compared the way the filesystem sees them, before a run touches any.

Two paths name the same file when, after resolving ``..`` and symbolic links, they are equal,
or when both exist and are the same inode (``(st_dev, st_ino)``: a hard link, a symbolic link,
a bind mount). A run refuses any two of its inputs, outputs and error outputs that are the same
file, before anything is read or written: writing an output over an input, or two outputs over
each other, loses records.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigurationError

__all__ = ["FileIdentity", "Role", "collisions", "check_distinct"]


@dataclass(frozen=True)
class FileIdentity:
    """What makes two paths the same file: the resolved path, and the inode when it exists."""

    resolved: str
    inode: tuple[int, int] | None

    @classmethod
    def of(cls, path: str | os.PathLike[str]) -> FileIdentity:
        resolved = os.path.realpath(os.path.abspath(path))
        try:
            info = os.stat(resolved)
        except OSError:
            return cls(resolved, None)
        return cls(resolved, (info.st_dev, info.st_ino))

    def same_as(self, other: FileIdentity) -> bool:
        if self.resolved == other.resolved:
            return True
        return self.inode is not None and self.inode == other.inode


@dataclass(frozen=True)
class Role:
    """A path a run uses, and what it is for (``"input"``, ``"pipes[1] error output"``)."""

    what: str
    path: Path
    #: Paths of the same ``kind`` may be one file (two shards read one input).
    kind: str

    @property
    def writes(self) -> bool:
        return self.kind != "input"


def collisions(roles: Iterable[Role]) -> list[tuple[Role, Role]]:
    """Every pair of roles that are the same file where at least one of them writes it."""
    seen: list[tuple[Role, FileIdentity]] = []
    found: list[tuple[Role, Role]] = []
    for role in roles:
        identity = FileIdentity.of(role.path)
        for earlier, other in seen:
            if not (role.writes or earlier.writes):
                continue
            if identity.same_as(other):
                found.append((earlier, role))
        seen.append((role, identity))
    return found


def check_distinct(roles: Iterable[Role]) -> None:
    """Raise :class:`ConfigurationError` naming both roles and paths of the first collision."""
    pairs = collisions(roles)
    if not pairs:
        return
    first, second = pairs[0]
    if not second.writes:
        first, second = second, first  # the one that writes is the subject
    if first.writes:
        detail = f"{first.what} {str(first.path)!r} and {second.what} {str(second.path)!r}"
    else:
        detail = f"{second.what} {str(second.path)!r} would overwrite {first.what} " + repr(
            str(first.path)
        )
    raise ConfigurationError(
        f"{detail}: they are the same file ({FileIdentity.of(first.path).resolved}); "
        "nothing was read or written. Give each its own path.",
        first=first.what,
        second=second.what,
        path=str(first.path),
    )
