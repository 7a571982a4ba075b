"""Pickling a pipe for another machine: cloudpickle, with the user's own modules by value."""

from __future__ import annotations

import functools
import os
import sys
import sysconfig
from types import ModuleType
from typing import Any

import cloudpickle

__all__ = ["dumps_with_user_code"]


@functools.cache
def _installed_roots() -> tuple[str, ...]:
    """Folders of the standard library and of installed packages (absolute)."""
    paths = sysconfig.get_paths()
    keys = ("stdlib", "platstdlib", "purelib", "platlib")
    return tuple(sorted({os.path.abspath(paths[k]) for k in keys}))


def _user_modules(obj: Any) -> list[ModuleType]:
    """Modules of the user's own code that a compute node may not be able to import.

    Classes from ``__main__`` already travel by value with cloudpickle; a module next to the
    user's script (not installed in site-packages, not the standard library) is registered to
    travel by value too.
    """
    roots = _installed_roots()
    candidates: set[str] = set()
    model = getattr(obj, "schema_model", None)
    hooks = [
        *getattr(obj, "pre_validation_hooks", ()),
        *getattr(obj, "post_validation_hooks", ()),
    ]
    for item in (model, obj, *hooks):
        module_name = getattr(type(item) if not isinstance(item, type) else item, "__module__", "")
        if module_name:
            candidates.add(module_name)
    modules = []
    for name in candidates:
        if name == "__main__" or name.startswith("zoopipe_hpc"):
            continue
        module = sys.modules.get(name)
        path = getattr(module, "__file__", None)
        if module is None or path is None:
            continue
        if any(os.path.abspath(path).startswith(root) for root in roots):
            continue
        modules.append(module)
    return modules


def dumps_with_user_code(obj: Any) -> bytes:
    """``cloudpickle.dumps(obj)``, with the modules of the user's own code travelling by value."""
    by_value = _user_modules(obj)
    for module in by_value:
        cloudpickle.register_pickle_by_value(module)
    try:
        data: bytes = cloudpickle.dumps(obj)
    finally:
        for module in by_value:
            cloudpickle.unregister_pickle_by_value(module)
    return data
