"""Input and output adapters: CSV, JSON Lines / JSON arrays, Parquet, Arrow IPC, and Iceberg
tables.

``IcebergOutputAdapter`` imports pyiceberg only when used (``zoopipe_hpc[iceberg]``).
"""

from .arrow import ArrowInputAdapter, ArrowOutputAdapter
from .base import BaseInputAdapter, BaseOutputAdapter, InputBatch, OutputWriter
from .csv import CSVInputAdapter, CSVOutputAdapter
from .iceberg import IcebergOutputAdapter
from .json import JSONInputAdapter, JSONOutputAdapter
from .parquet import ParquetInputAdapter, ParquetOutputAdapter

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
]
