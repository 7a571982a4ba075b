"""Input and output adapters: CSV, JSON Lines / JSON arrays, Parquet, Arrow IPC, Iceberg
tables, and in-process Python iterables.

``IcebergOutputAdapter`` imports pyiceberg only when used (``zoopipe_hpc[iceberg]``).
"""

from .arrow import ArrowInputAdapter, ArrowOutputAdapter
from .base import BaseInputAdapter, BaseOutputAdapter, InputBatch, OutputWriter
from .csv import CSVInputAdapter, CSVOutputAdapter
from .iceberg import IcebergOutputAdapter
from .json import JSONInputAdapter, JSONOutputAdapter
from .parquet import ParquetInputAdapter, ParquetOutputAdapter
from .pygen import PyGeneratorInputAdapter, PyGeneratorOutputAdapter

__all__ = [
    "ArrowInputAdapter",
    "ArrowOutputAdapter",
    "BaseInputAdapter",
    "BaseOutputAdapter",
    "InputBatch",
    "OutputWriter",
    "CSVInputAdapter",
    "CSVOutputAdapter",
    "IcebergOutputAdapter",
    "JSONInputAdapter",
    "JSONOutputAdapter",
    "ParquetInputAdapter",
    "ParquetOutputAdapter",
    "PyGeneratorInputAdapter",
    "PyGeneratorOutputAdapter",
]
