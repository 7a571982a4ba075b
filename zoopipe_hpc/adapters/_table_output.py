"""What the database output adapters share: Parquet parts per shard, loaded by the run's commit.

A table of a database is no file: the shards write Parquet parts into the run's staging, and
the commit strategy loads every part into the table (``commit/_duckdb.py``, ``commit/_sql.py``).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Self

import pyarrow as pa

from ..commit._staging import StagingArea
from ..errors import ConfigurationError
from .base import BaseOutputAdapter, _FileSink
from .parquet import _ParquetSink

__all__ = ["DatabaseTableOutput"]


class DatabaseTableOutput(BaseOutputAdapter):
    """An output whose target is ``table_name`` of a database (``anchor`` names it on disk)."""

    table_name: str
    compression: str
    #: The path the target's name and staging folder hang on (``<anchor>#<table>``).
    anchor: Path

    def _clone(self) -> Self:
        clone = copy.copy(self)
        clone._part_of = None
        clone._part_index = None
        clone._sole = False
        return clone

    def numbered(self, index: int) -> Self:
        """Shard ``index``'s own table ``<table>_part_NNNNN`` (``parallelize_pipe(merge=False)``),
        committed with the other shards' tables in the same transaction."""
        clone = self._clone()
        clone.table_name = f"{self.table_name}_part_{index:05d}"
        clone.path = self.anchor.with_name(f"{self.anchor.name}#{clone.table_name}")
        return clone

    @property
    def part_suffix(self) -> str:
        return ".parquet"

    def as_part(
        self, staging: StagingArea, index: int, attempt_id: str = "", *, sole: bool = False
    ) -> BaseOutputAdapter:
        part = super().as_part(staging, index, attempt_id, sole=sole)
        part.path = staging.part_path(index, self.part_suffix, attempt_id)
        return part

    def _open_file(self, path: Path, schema: pa.Schema | None) -> _FileSink:
        return _ParquetSink(path, schema, self.compression)

    def merge(self, parts: Sequence[Path], destination: Path) -> None:
        raise ConfigurationError(
            f"{self.describe()} is loaded into its database by its run's transaction, not "
            "merged into a file"
        )
