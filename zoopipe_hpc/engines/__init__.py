"""Engines: how a PipeManager's pipes are executed.

Every engine is importable from here, as ZooPipe's are from ``zoopipe.engines``. The engines
that need an optional library (Ray, Dask) or a scheduler (Slurm) are loaded on first use, by
the module ``__getattr__`` below: ``from zoopipe_hpc.engines import SlurmEngine`` loads neither
Ray nor Dask.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .base import BaseEngine, WorkerResult
from .multiprocess import MultiProcessEngine
from .zooparallel import ZooParallelPoolEngine

if TYPE_CHECKING:
    from .dask import DaskEngine
    from .ray import RayEngine
    from .slurm import SlurmEngine

__all__ = [
    "BaseEngine",
    "WorkerResult",
    "MultiProcessEngine",
    "ZooParallelPoolEngine",
    "RayEngine",
    "DaskEngine",
    "SlurmEngine",
]

#: The engines loaded on first use, and the module each lives in.
_LAZY = {
    "RayEngine": ".ray",
    "DaskEngine": ".dask",
    "SlurmEngine": ".slurm",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
