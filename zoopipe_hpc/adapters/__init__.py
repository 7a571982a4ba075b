"""Input and output adapters: CSV, JSON Lines / JSON arrays, and Parquet, all through files."""

from .base import BaseInputAdapter, BaseOutputAdapter, InputBatch, OutputWriter
from .csv import CSVInputAdapter, CSVOutputAdapter
from .json import JSONInputAdapter, JSONOutputAdapter
from .parquet import ParquetInputAdapter, ParquetOutputAdapter

__all__ = [
    "BaseInputAdapter",
    "BaseOutputAdapter",
    "InputBatch",
    "OutputWriter",
    "CSVInputAdapter",
    "CSVOutputAdapter",
    "JSONInputAdapter",
    "JSONOutputAdapter",
    "ParquetInputAdapter",
    "ParquetOutputAdapter",
]
