"""The Slurm engine: shards as tasks of one sbatch job array, submitted through submitit."""

from ._cli import SlurmCLI, SlurmCommandError
from ._payload import PayloadRefused
from .engine import SlurmEngine
from .parameters import SlurmParameters

__all__ = ["SlurmEngine", "SlurmParameters", "SlurmCLI", "SlurmCommandError", "PayloadRefused"]
