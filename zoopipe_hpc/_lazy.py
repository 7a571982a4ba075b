"""Names a package exports but imports on first use (PEP 562 module ``__getattr__``).

A package lists ``{name: ".submodule"}``; ``lazy_exports`` returns the package's ``__getattr__``
and ``__dir__``. ``from zoopipe_hpc import Pipe`` and ``zoopipe_hpc.Pipe`` work as before; what
changes is that importing the package (as a Slurm task does, through
``python -m zoopipe_hpc.engines.slurm``) loads only the submodules that are used.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``, loading ``exports`` on first use."""
    table = dict(exports)

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(table))

    return __getattr__, __dir__
