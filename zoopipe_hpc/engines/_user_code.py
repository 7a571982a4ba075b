"""Which code is the user's own, and which of the submitter's ``sys.path`` folders go with it.

A module is *installed* when it is built in, frozen, or its file is under the standard library
or a site-packages / dist-packages folder (a venv's, the user site, a conda prefix...), or it is
part of zoopipe_hpc: the compute nodes import those from the environment they run. Every other
module is *the user's own*: a file next to a script, a local package, a notebook's helper. See
docs/slurm.md ("Your code on the compute nodes").

The submitter's folders on ``sys.path`` that are the user's own (not the standard library or
site-packages; ``""``, the current folder, made absolute) are recorded with each payload and put
back on ``sys.path`` by the task (which runs with ``python -P``), after its own entries, before
anything is unpickled.
A folder is recorded, and put back, only while it is a directory owned by the user or by root
and not writable by group or others: anyone who can write there could plant a module that the
task would import.
"""

from __future__ import annotations

import functools
import importlib.machinery
import logging
import os
import site
import stat
import sys
import sysconfig
from collections.abc import Iterable, Sequence
from types import ModuleType

__all__ = [
    "import_folder_problem",
    "is_compiled",
    "is_users_own",
    "module_root",
    "reproduce_sys_path",
    "submitter_sys_path",
]

log = logging.getLogger(__name__)

_INSTALLED_PARTS = frozenset({"site-packages", "dist-packages"})


@functools.cache
def _installed_roots() -> tuple[str, ...]:
    """Folders of the standard library and of installed packages (absolute, real)."""
    paths = sysconfig.get_paths()
    roots = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    roots.update(site.getsitepackages())
    roots.add(site.getusersitepackages())
    roots.add(os.path.dirname(os.path.abspath(os.__file__)))  # the stdlib this Python runs
    return tuple(sorted({os.path.realpath(r) for r in roots if r}))


def _is_installed_path(path: str) -> bool:
    real = os.path.realpath(path)
    if _INSTALLED_PARTS.intersection(real.split(os.sep)):
        return True
    for root in _installed_roots():
        try:
            if os.path.commonpath([real, root]) == root:
                return True
        except ValueError:  # another drive (Windows)
            continue
    return False


def _module_files(module: ModuleType) -> list[str]:
    path = getattr(module, "__file__", None)
    if isinstance(path, str):
        return [path]
    return [p for p in getattr(module, "__path__", ()) if isinstance(p, str)]  # namespace pkg


def is_users_own(module: ModuleType) -> bool:
    """True for a module of the user's own code (see the module docstring)."""
    name = module.__name__
    if name == "__main__" or name == "zoopipe_hpc" or name.startswith("zoopipe_hpc."):
        return False  # __main__ travels by value anyway; zoopipe_hpc runs the task
    if name in sys.builtin_module_names:
        return False
    spec = getattr(module, "__spec__", None)
    if spec is not None and spec.origin in ("built-in", "frozen"):
        return False
    files = _module_files(module)
    if not files:
        return True  # made at run time (types.ModuleType, exec): only its objects can travel
    return not all(_is_installed_path(f) for f in files)


def is_compiled(module: ModuleType) -> bool:
    """True for a compiled extension module (``.so``, ``.pyd``): its code cannot be pickled."""
    path = getattr(module, "__file__", None)
    suffixes = importlib.machinery.EXTENSION_SUFFIXES
    return isinstance(path, str) and any(path.endswith(s) for s in suffixes)


def module_root(module: ModuleType) -> str | None:
    """The ``sys.path`` folder ``module`` is imported from (its top package's parent)."""
    path = getattr(module, "__file__", None)
    if not isinstance(path, str):
        return None
    root = os.path.dirname(os.path.abspath(path))
    depth = module.__name__.count(".")
    if os.path.basename(path).startswith("__init__."):
        depth += 1
    for _ in range(depth):
        root = os.path.dirname(root)
    return root


def import_folder_problem(folder: str) -> str | None:
    """Why ``folder`` may not go on a task's ``sys.path``, or None if it may."""
    try:
        info = os.stat(folder)
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if not stat.S_ISDIR(info.st_mode):
        return "is not a directory"
    if info.st_uid not in (os.getuid(), 0):
        return f"belongs to another user (uid {info.st_uid})"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return "is writable by group or others (anyone who can write there could plant a module)"
    return None


def submitter_sys_path(entries: Iterable[str] | None = None) -> list[str]:
    """This process's ``sys.path`` folders of the user's own code, absolute, in order; folders
    that fail :func:`import_folder_problem` are left out (logged)."""
    chosen: list[str] = []
    for entry in sys.path if entries is None else entries:
        if not isinstance(entry, str):
            continue
        try:
            folder = os.path.abspath(entry or os.getcwd())
        except OSError:  # "" while the current folder was removed: nothing to import from
            continue
        if folder in chosen or not os.path.isdir(folder) or _is_installed_path(folder):
            continue
        problem = import_folder_problem(folder)
        if problem is not None:
            log.info("not putting %s on the tasks' sys.path: it %s", folder, problem)
            continue
        chosen.append(folder)
    return chosen


def reproduce_sys_path(folders: Sequence[str], where: str) -> list[str]:
    """Put the submitter's ``folders`` on ``sys.path`` (in their order) after the task's own
    entries, each checked again here; returns those added. ``where`` (the payload) is named in
    the log.

    After, not before: what the pipe names by reference that is not the user's own (the
    standard library, installed packages) is found in the node's environment first, so a
    ``random.py`` next to a script shadows nothing on the node, and those imports do not look
    in the user's (shared, slower) folders first. The user's modules travel by value; these
    folders serve the imports that cannot (run-time imports, compiled modules).
    """
    added: list[str] = []
    for folder in folders:
        if folder in sys.path:
            continue
        if not os.path.isdir(folder):
            # Not on this node's filesystems: what was sent by value does not need it.
            log.debug("%s: %s is not a folder here; not put on sys.path", where, folder)
            continue
        problem = import_folder_problem(folder)
        if problem is not None:
            log.warning("%s: not putting %s on sys.path: it %s", where, folder, problem)
            continue
        added.append(folder)
    sys.path.extend(added)
    return added
