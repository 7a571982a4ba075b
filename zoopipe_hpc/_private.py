"""Files and folders only their user can change: the one check behind every path the package
creates and later trusts.

A staging folder whose files are renamed over a target, a commit lock, a job folder, a signed
payload and its key are trusted only if the user running the package made them and nobody else
could have changed them since. :func:`check_private` says so from ``lstat`` (a symbolic link is
never followed): the path is of the expected kind, belongs to this process's effective uid, and
is not writable by group or others (for a secret, not readable by them either).

- :func:`ensure_private_dir` creates a folder with mode 0700 (or finds one) and checks it;
- :func:`open_private_dir` opens a checked folder with ``O_NOFOLLOW``, so that whatever is done
  relative to the descriptor (``dir_fd=``) stays in that folder, whatever happens to its path;
- :func:`read_private_file` reads a file through the descriptor it checked (``O_NOFOLLOW``).

A refusal raises the error class of the caller's :class:`Use` (a
:class:`~zoopipe_hpc.errors.CommitError` for staging, a
:class:`~zoopipe_hpc.errors.PayloadRefused` for payloads), naming the path, its owner uid and
mode, why it matters and what to do. Its details: ``path``, ``owner_uid``, ``mode``.
"""

from __future__ import annotations

import errno
import os
import shlex
import stat
from dataclasses import dataclass, field
from typing import Literal

from .errors import CommitError, ZoopipeHPCError

__all__ = [
    "Kind",
    "Use",
    "check_private",
    "check_private_stat",
    "ensure_private_dir",
    "open_private_dir",
    "private_problem",
    "read_private_file",
]

#: What a checked path must be.
Kind = Literal["folder", "file"]

_FOREIGN_REMEDY = (
    "It was not created by you: have it removed (by its owner or an administrator: "
    "rm -r {path}), or use a folder only you can write to, then try again."
)


@dataclass(frozen=True)
class Use:
    """What a checked path is used for, as a refusal says it.

    ``action`` completes "refusing to ..." (``"stage /data/out.csv"``, ``"load a payload"``);
    ``risk`` says what someone else could do through the path; ``error`` is the class raised.
    """

    action: str
    risk: str
    error: type[ZoopipeHPCError] = field(default=CommitError)


def _permission_words(mode: int, group_bit: int, other_bit: int) -> str:
    who = [name for name, bit in (("group", group_bit), ("others", other_bit)) if mode & bit]
    return " and ".join(who)


def private_problem(
    info: os.stat_result, kind: Kind = "folder", *, secret: bool = False, modes: bool = True
) -> str | None:
    """What makes ``info`` (an ``lstat`` result) untrustworthy, or None.

    ``modes=False`` skips the permission bits (a file in a private folder, which nobody else
    can reach whatever its mode); ``secret`` also refuses read access by group or others.
    """
    mode = info.st_mode
    if stat.S_ISLNK(mode):
        return "is a symbolic link"
    if kind == "folder" and not stat.S_ISDIR(mode):
        return "is not a folder"
    if kind == "file" and not stat.S_ISREG(mode):
        return "is not a regular file"
    if info.st_uid != os.geteuid():
        return "belongs to another user"
    if modes and mode & (stat.S_IWGRP | stat.S_IWOTH):
        return "is writable by " + _permission_words(mode, stat.S_IWGRP, stat.S_IWOTH)
    if secret and mode & (stat.S_IRGRP | stat.S_IROTH):
        return "is readable by " + _permission_words(mode, stat.S_IRGRP, stat.S_IROTH)
    return None


def _refusal(
    info: os.stat_result, path: str | os.PathLike[str], what: str, use: Use, problem: str
) -> ZoopipeHPCError:
    shown = os.fspath(path)
    quoted = shlex.quote(shown)
    if problem == "is a symbolic link":
        try:
            problem = f"is a symbolic link to {os.readlink(shown)}"
        except OSError:
            pass
    if problem.startswith("is writable"):
        remedy = f"Fix with: chmod go-w {quoted}"
    elif problem.startswith("is readable"):
        remedy = f"Fix with: chmod 600 {quoted}"
    else:
        remedy = _FOREIGN_REMEDY.format(path=quoted)
    mode = stat.S_IMODE(info.st_mode)
    return use.error(
        f"refusing to {use.action}: the {what} {shown} {problem} (owner uid {info.st_uid}, "
        f"mode {mode:04o}; you are uid {os.geteuid()}). {use.risk[:1].upper()}{use.risk[1:]}. "
        f"{remedy}",
        path=shown,
        owner_uid=info.st_uid,
        mode=mode,
    )


def check_private_stat(
    info: os.stat_result,
    path: str | os.PathLike[str],
    what: str,
    use: Use,
    *,
    kind: Kind = "folder",
    secret: bool = False,
    modes: bool = True,
) -> None:
    """Raise ``use.error`` unless ``info`` (of ``path``, named ``what``) is private."""
    problem = private_problem(info, kind, secret=secret, modes=modes)
    if problem is not None:
        raise _refusal(info, path, what, use, problem)


def _missing(path: str | os.PathLike[str], what: str, use: Use) -> ZoopipeHPCError:
    return use.error(
        f"refusing to {use.action}: the {what} {os.fspath(path)} does not exist",
        path=os.fspath(path),
    )


def _cannot(
    path: str | os.PathLike[str], what: str, use: Use, doing: str, exc: OSError
) -> ZoopipeHPCError:
    return use.error(
        f"refusing to {use.action}: cannot {doing} the {what} {os.fspath(path)}: {exc}",
        path=os.fspath(path),
    )


def check_private(
    path: str | os.PathLike[str],
    what: str,
    use: Use,
    *,
    kind: Kind = "folder",
    secret: bool = False,
    modes: bool = True,
    dir_fd: int | None = None,
    shown: str | os.PathLike[str] | None = None,
) -> os.stat_result:
    """``lstat`` ``path`` (relative to ``dir_fd`` if given; ``shown`` is how errors name it)
    and raise ``use.error`` unless it is private; returns the stat result."""
    name = shown if shown is not None else path
    try:
        info = os.stat(path, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError as exc:
        raise _missing(name, what, use) from exc
    except OSError as exc:
        raise _cannot(name, what, use, "inspect", exc) from exc
    check_private_stat(info, name, what, use, kind=kind, secret=secret, modes=modes)
    return info


def _open_checked(
    path: str | os.PathLike[str],
    flags: int,
    what: str,
    use: Use,
    *,
    kind: Kind,
    secret: bool = False,
    dir_fd: int | None = None,
    shown: str | os.PathLike[str] | None = None,
) -> int:
    name = shown if shown is not None else path
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError as exc:
        raise _missing(name, what, use) from exc
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENXIO):
            # A symbolic link or not a folder: lstat says which, in the usual words.
            check_private(path, what, use, kind=kind, dir_fd=dir_fd, shown=name)
        raise _cannot(name, what, use, "open", exc) from exc
    try:
        check_private_stat(os.fstat(fd), name, what, use, kind=kind, secret=secret)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_private_dir(
    path: str | os.PathLike[str],
    what: str,
    use: Use,
    *,
    dir_fd: int | None = None,
    shown: str | os.PathLike[str] | None = None,
) -> int:
    """Open a private folder with ``O_NOFOLLOW`` and check it through the descriptor; the
    caller closes it. Work relative to it (``dir_fd=``) cannot be redirected by a swap of any
    component of ``path`` after this returns."""
    return _open_checked(
        path,
        os.O_RDONLY | os.O_DIRECTORY,
        what,
        use,
        kind="folder",
        dir_fd=dir_fd,
        shown=shown,
    )


def ensure_private_dir(
    path: str | os.PathLike[str], what: str, use: Use, *, tighten: bool = False
) -> os.stat_result:
    """Create the folder ``path`` with mode 0700 unless it exists, then check it is private.

    ``tighten``: a folder of the user's own that exists with group or other permissions is set
    to mode 0700 (through a descriptor opened with ``O_NOFOLLOW``, never through a link).
    """
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise _cannot(path, what, use, "create", exc) from exc
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            check_private(path, what, use)
        raise _cannot(path, what, use, "open", exc) from exc
    try:
        info = os.fstat(fd)
        if tighten and info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) & 0o077:
            os.fchmod(fd, stat.S_IMODE(info.st_mode) & 0o7700)
            info = os.fstat(fd)
        check_private_stat(info, path, what, use)
    except OSError as exc:
        raise _cannot(path, what, use, "set the mode of", exc) from exc
    finally:
        os.close(fd)
    return info


def read_private_file(
    path: str | os.PathLike[str], what: str, use: Use, *, secret: bool = False
) -> bytes:
    """The content of a private regular file, read through the descriptor that was checked
    (opened with ``O_NOFOLLOW``, so a link planted in its place is refused, not followed)."""
    fd = _open_checked(path, os.O_RDONLY | os.O_NONBLOCK, what, use, kind="file", secret=secret)
    chunks = []
    try:
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
    except OSError as exc:
        raise _cannot(path, what, use, "read", exc) from exc
    finally:
        os.close(fd)
    return b"".join(chunks)
