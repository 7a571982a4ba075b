"""Input and output adapters: CSV, JSON Lines / JSON arrays, Parquet, Arrow IPC, Iceberg and
DuckDB tables, SQL databases, and in-process Python iterables.

``IcebergInputAdapter`` and ``IcebergOutputAdapter`` import pyiceberg only when used
(``zoopipe_hpc[iceberg]``), ``DuckDBOutputAdapter`` duckdb (``zoopipe_hpc[duckdb]``),
``SQLOutputAdapter`` sqlalchemy (``zoopipe_hpc[sql]``).
"""

from .arrow import ArrowInputAdapter, ArrowOutputAdapter
from .base import BaseInputAdapter, BaseOutputAdapter, InputBatch, OutputWriter
from .csv import CSVInputAdapter, CSVOutputAdapter
from .duckdb import DuckDBOutputAdapter
from .iceberg import IcebergOutputAdapter
from .iceberg_input import IcebergInputAdapter
from .json import JSONInputAdapter, JSONOutputAdapter
from .parquet import ParquetInputAdapter, ParquetOutputAdapter
from .pygen import PyGeneratorInputAdapter, PyGeneratorOutputAdapter
from .sql import SQLOutputAdapter

__all__ = [
    "ArrowInputAdapter",
    "ArrowOutputAdapter",
    "BaseInputAdapter",
    "BaseOutputAdapter",
    "InputBatch",
    "OutputWriter",
    "CSVInputAdapter",
    "CSVOutputAdapter",
    "DuckDBOutputAdapter",
    "IcebergInputAdapter",
    "IcebergOutputAdapter",
    "JSONInputAdapter",
    "JSONOutputAdapter",
    "ParquetInputAdapter",
    "ParquetOutputAdapter",
    "PyGeneratorInputAdapter",
    "PyGeneratorOutputAdapter",
    "SQLOutputAdapter",
]
