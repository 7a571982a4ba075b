"""Input and output adapters: CSV, JSON Lines / JSON arrays, Parquet, Arrow IPC, Iceberg and
DuckDB tables, SQL databases, and in-process Python iterables.

``IcebergInputAdapter`` and ``IcebergOutputAdapter`` import pyiceberg only when used
(``zoopipe_hpc[iceberg]``), the DuckDB adapters duckdb (``zoopipe_hpc[duckdb]``), the SQL
adapters sqlalchemy (``zoopipe_hpc[sql]``).
"""

from .arrow import ArrowInputAdapter, ArrowOutputAdapter
from .base import BaseInputAdapter, BaseOutputAdapter, InputBatch, OutputWriter
from .csv import CSVInputAdapter, CSVOutputAdapter
from .duckdb import DuckDBInputAdapter, DuckDBOutputAdapter
from .iceberg import IcebergOutputAdapter
from .iceberg_input import IcebergInputAdapter
from .json import JSONInputAdapter, JSONOutputAdapter
from .parquet import ParquetInputAdapter, ParquetOutputAdapter
from .pygen import PyGeneratorInputAdapter, PyGeneratorOutputAdapter
from .sql import SQLInputAdapter, SQLOutputAdapter

__all__ = [
    "ArrowInputAdapter",
    "ArrowOutputAdapter",
    "BaseInputAdapter",
    "BaseOutputAdapter",
    "InputBatch",
    "OutputWriter",
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
]
