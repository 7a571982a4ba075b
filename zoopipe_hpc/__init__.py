"""zoopipe_hpc: validated data pipelines for laptops and Slurm clusters.

Read CSV, JSON Lines or Parquet, validate every record against a pydantic model, write the valid
ones and keep the invalid ones with their errors; run many pipes, or one pipe split into shards,
through an engine (local processes by default), and commit the result atomically.
"""

from .adapters import (
    ArrowInputAdapter,
    ArrowOutputAdapter,
    CSVInputAdapter,
    CSVOutputAdapter,
    DuckDBInputAdapter,
    DuckDBOutputAdapter,
    IcebergInputAdapter,
    IcebergOutputAdapter,
    JSONInputAdapter,
    JSONOutputAdapter,
    ParquetInputAdapter,
    ParquetOutputAdapter,
    PyGeneratorInputAdapter,
    PyGeneratorOutputAdapter,
    SQLInputAdapter,
    SQLOutputAdapter,
)
from .engines import BaseEngine, MultiProcessEngine
from .errors import ZoopipeHPCError
from .hooks import (
    BaseArrowHook,
    BaseHook,
    EntryStatus,
    EntryTypedDict,
    HookPriority,
    HookStore,
)
from .manager import PipeManager
from .pipe import Pipe
from .report import PipeReport, PipeStatus, get_logger
from .validation.executors import BatchExecutor, MultiThreadExecutor, SingleThreadExecutor

__all__ = [
    "Pipe",
    "PipeManager",
    "PipeReport",
    "PipeStatus",
    "BaseEngine",
    "MultiProcessEngine",
    "get_logger",
    "ArrowInputAdapter",
    "ArrowOutputAdapter",
    "CSVInputAdapter",
    "CSVOutputAdapter",
    "DuckDBInputAdapter",
    "DuckDBOutputAdapter",
    "IcebergInputAdapter",
    "IcebergOutputAdapter",
    "JSONInputAdapter",
    "JSONOutputAdapter",
    "ParquetInputAdapter",
    "ParquetOutputAdapter",
    "PyGeneratorInputAdapter",
    "PyGeneratorOutputAdapter",
    "SQLInputAdapter",
    "SQLOutputAdapter",
    "BatchExecutor",
    "SingleThreadExecutor",
    "MultiThreadExecutor",
    "ZoopipeHPCError",
    "BaseHook",
    "BaseArrowHook",
    "HookStore",
    "HookPriority",
    "EntryTypedDict",
    "EntryStatus",
]
__version__ = "0.1.0"
