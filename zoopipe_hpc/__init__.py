"""zoopipe_hpc: validated data pipelines for laptops and Slurm clusters.

Read CSV, JSON Lines or Parquet, validate every record against a pydantic model, write the valid
ones and keep the invalid ones with their errors; run many pipes, or one pipe split into shards,
through an engine (local processes by default), and commit the result atomically.

Every name below is imported on first use (``from zoopipe_hpc import Pipe`` imports the pipe
and what it needs, not every adapter and engine), so that a Slurm task, which imports this
package to run one shard, loads only what its shard uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_exports

if TYPE_CHECKING:
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
    from .hooks import BaseArrowHook, BaseHook, EntryStatus, EntryTypedDict, HookPriority, HookStore
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

#: Where each exported name lives; each is imported on first use.
_EXPORTS = {
    "ArrowInputAdapter": ".adapters",
    "ArrowOutputAdapter": ".adapters",
    "CSVInputAdapter": ".adapters",
    "CSVOutputAdapter": ".adapters",
    "DuckDBInputAdapter": ".adapters",
    "DuckDBOutputAdapter": ".adapters",
    "IcebergInputAdapter": ".adapters",
    "IcebergOutputAdapter": ".adapters",
    "JSONInputAdapter": ".adapters",
    "JSONOutputAdapter": ".adapters",
    "ParquetInputAdapter": ".adapters",
    "ParquetOutputAdapter": ".adapters",
    "PyGeneratorInputAdapter": ".adapters",
    "PyGeneratorOutputAdapter": ".adapters",
    "SQLInputAdapter": ".adapters",
    "SQLOutputAdapter": ".adapters",
    "BaseEngine": ".engines",
    "MultiProcessEngine": ".engines",
    "ZoopipeHPCError": ".errors",
    "BaseArrowHook": ".hooks",
    "BaseHook": ".hooks",
    "EntryStatus": ".hooks",
    "EntryTypedDict": ".hooks",
    "HookPriority": ".hooks",
    "HookStore": ".hooks",
    "PipeManager": ".manager",
    "Pipe": ".pipe",
    "PipeReport": ".report",
    "PipeStatus": ".report",
    "get_logger": ".report",
    "BatchExecutor": ".validation.executors",
    "MultiThreadExecutor": ".validation.executors",
    "SingleThreadExecutor": ".validation.executors",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
