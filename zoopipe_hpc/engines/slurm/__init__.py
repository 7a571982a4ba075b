"""The Slurm engine: shards as tasks of one sbatch job array, submitted through submitit.

The names are imported on first use, so that a task (``python -m zoopipe_hpc.engines.slurm``)
loads its entry point, not the engine, submitit and the Slurm command line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..._lazy import lazy_exports

if TYPE_CHECKING:
    from ._cli import SlurmCLI, SlurmCommandError
    from ._payload import PayloadRefused
    from .engine import SlurmEngine
    from .parameters import SlurmParameters

__all__ = ["SlurmEngine", "SlurmParameters", "SlurmCLI", "SlurmCommandError", "PayloadRefused"]

#: Where each exported name lives; each is imported on first use.
_EXPORTS = {
    "SlurmCLI": "._cli",
    "SlurmCommandError": "._cli",
    "PayloadRefused": "._payload",
    "SlurmEngine": ".engine",
    "SlurmParameters": ".parameters",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
