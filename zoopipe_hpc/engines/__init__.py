"""Engines: how a PipeManager's pipes are executed.

Every engine is importable from here, as ZooPipe's are from ``zoopipe.engines``. Each is loaded
on first use, by the module ``__getattr__`` below: ``from zoopipe_hpc.engines import
SlurmEngine`` loads neither Ray nor Dask, and a Slurm task (``python -m
zoopipe_hpc.engines.slurm``) loads no engine at all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from .base import BaseEngine, WorkerResult
    from .dask import DaskEngine
    from .multiprocess import MultiProcessEngine
    from .ray import RayEngine
    from .slurm import SlurmEngine
    from .zooparallel import ZooParallelPoolEngine

__all__ = [
    "BaseEngine",
    "WorkerResult",
    "MultiProcessEngine",
    "ZooParallelPoolEngine",
    "RayEngine",
    "DaskEngine",
    "SlurmEngine",
]

#: Where each engine lives; each is loaded on first use.
_LAZY = {
    "BaseEngine": ".base",
    "WorkerResult": ".base",
    "MultiProcessEngine": ".multiprocess",
    "ZooParallelPoolEngine": ".zooparallel",
    "RayEngine": ".ray",
    "DaskEngine": ".dask",
    "SlurmEngine": ".slurm",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
