"""Input and output adapters: CSV, JSON Lines / JSON arrays, Parquet, Arrow IPC, Iceberg and
DuckDB tables, SQL databases, and in-process Python iterables.

``IcebergInputAdapter`` and ``IcebergOutputAdapter`` import pyiceberg only when used
(``zoopipe_hpc[iceberg]``), the DuckDB adapters duckdb (``zoopipe_hpc[duckdb]``), the SQL
adapters sqlalchemy (``zoopipe_hpc[sql]``).

Each adapter is imported on first use: a shard that reads CSV and writes Parquet loads neither
the JSON, SQL nor DuckDB modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
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

#: Where each exported name lives; each is imported on first use.
_EXPORTS = {
    "ArrowInputAdapter": ".arrow",
    "ArrowOutputAdapter": ".arrow",
    "BaseInputAdapter": ".base",
    "BaseOutputAdapter": ".base",
    "InputBatch": ".base",
    "OutputWriter": ".base",
    "CSVInputAdapter": ".csv",
    "CSVOutputAdapter": ".csv",
    "DuckDBInputAdapter": ".duckdb",
    "DuckDBOutputAdapter": ".duckdb",
    "IcebergOutputAdapter": ".iceberg",
    "IcebergInputAdapter": ".iceberg_input",
    "JSONInputAdapter": ".json",
    "JSONOutputAdapter": ".json",
    "ParquetInputAdapter": ".parquet",
    "ParquetOutputAdapter": ".parquet",
    "PyGeneratorInputAdapter": ".pygen",
    "PyGeneratorOutputAdapter": ".pygen",
    "SQLInputAdapter": ".sql",
    "SQLOutputAdapter": ".sql",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
