"""zoopipe_hpc: validated data pipelines for laptops and Slurm clusters.

Read CSV, JSON Lines or Parquet, validate every record against a pydantic model, write the valid
ones and keep the invalid ones with their errors; run many pipes, or one pipe split into shards,
through an engine (local processes by default), and commit the result atomically.
"""

from .adapters import (
    CSVInputAdapter,
    CSVOutputAdapter,
    DuckDBOutputAdapter,
    IcebergOutputAdapter,
    JSONInputAdapter,
    JSONOutputAdapter,
    ParquetInputAdapter,
    ParquetOutputAdapter,
    SQLOutputAdapter,
)
from .errors import ZoopipeHPCError
from .manager import PipeManager
from .pipe import Pipe
from .report import PipeReport, PipeStatus
from .validation.executors import BatchExecutor, MultiThreadExecutor, SingleThreadExecutor

__all__ = [
    "Pipe",
    "PipeManager",
    "PipeReport",
    "PipeStatus",
    "CSVInputAdapter",
    "CSVOutputAdapter",
    "DuckDBOutputAdapter",
    "IcebergOutputAdapter",
    "JSONInputAdapter",
    "JSONOutputAdapter",
    "ParquetInputAdapter",
    "ParquetOutputAdapter",
    "SQLOutputAdapter",
    "BatchExecutor",
    "SingleThreadExecutor",
    "MultiThreadExecutor",
    "ZoopipeHPCError",
]
__version__ = "0.1.0"
