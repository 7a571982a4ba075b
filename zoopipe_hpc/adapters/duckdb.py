"""DuckDB output: Parquet parts loaded into tables of one DuckDB file, in one transaction per run.

Writers (the pipes of a run, or the shards of ``parallelize_pipe``) write Parquet parts into a
staging folder next to the database file. The run's commit (the ``"duckdb"`` strategy,
:mod:`zoopipe_hpc.commit._duckdb`) loads every table the run writes into that database in one
DuckDB transaction, which also records the run id in ``_zoopipe_runs``: all the run's tables of
the database or none, and a run is never loaded twice. See ``docs/duckdb.md``.

duckdb is imported only when a database is used (``pip install 'zoopipe_hpc[duckdb]'``).
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..commit._locks import LOCK_TIMEOUT
from ..errors import ConfigurationError, InputError
from ._key_ranges import KeyRangeInputAdapter
from ._table_output import DatabaseTableOutput
from .base import InputBatch

__all__ = ["DuckDBInputAdapter", "DuckDBOutputAdapter", "MODES", "RUNS_TABLE", "require_duckdb"]

#: What a run does to its table: ``replace`` its contents, or ``append`` to them.
MODES = ("replace", "append")
#: The table of a database that names every run loaded into it.
RUNS_TABLE = "_zoopipe_runs"

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def require_duckdb() -> None:
    """Raise :class:`ConfigurationError` saying how to install duckdb when it is missing."""
    if importlib.util.find_spec("duckdb") is None:
        raise ConfigurationError(
            "DuckDBOutputAdapter needs the duckdb package: pip install 'zoopipe_hpc[duckdb]'"
        )


class DuckDBOutputAdapter(DatabaseTableOutput):
    """Writes the valid records to table ``table_name`` of the DuckDB file ``database``.

    ``mode="replace"`` (default): after the run the table holds exactly the run's rows (it is
    created if needed); ``"append"``: the run's rows are inserted after the existing ones
    (matched by column name). Every table of one database written by one run is committed in one
    DuckDB transaction; two runs on one database wait for each other on the database's commit
    lock (``lock_timeout`` seconds at most). ``table_name`` is a plain SQL identifier.

    The adapter writes Parquet like :class:`~zoopipe_hpc.ParquetOutputAdapter`; its ``path``
    (``<database>#<table>``) names the target in errors and its staging folder, never a file.
    """

    format = "parquet"
    commit_strategy = "duckdb"

    def __init__(
        self,
        database: str | os.PathLike[str],
        table_name: str,
        *,
        mode: str = "replace",
        compression: str = "snappy",
        lock_timeout: float = LOCK_TIMEOUT,
    ) -> None:
        require_duckdb()
        if not isinstance(table_name, str) or not _IDENTIFIER.fullmatch(table_name):
            raise ConfigurationError(
                f"table_name must be a plain SQL identifier (letters, digits, _), got "
                f"{table_name!r}"
            )
        if table_name.lower() == RUNS_TABLE:
            raise ConfigurationError(f"{RUNS_TABLE} is zoopipe_hpc's own table of {database}")
        if mode not in MODES:
            raise ConfigurationError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if not isinstance(lock_timeout, (int, float)) or lock_timeout <= 0:
            raise ConfigurationError(f"lock_timeout must be > 0 seconds, got {lock_timeout!r}")
        self.database = Path(database).absolute()
        self.anchor = self.database
        self.table_name = table_name
        self.mode = mode
        self.compression = compression
        self.lock_timeout = float(lock_timeout)
        super().__init__(self.database.with_name(f"{self.database.name}#{table_name}"))

    # -- identity -------------------------------------------------------------------------------

    def commit_key(self) -> str:
        """The target: one table of one database file (``..`` and symlinks resolved)."""
        return f"{os.path.realpath(self.database)}#{self.table_name}"

    def describe(self) -> str:
        return (
            f"DuckDBOutputAdapter({str(self.database)!r}, table_name={self.table_name!r}, "
            f"mode={self.mode!r})"
        )


class DuckDBInputAdapter(KeyRangeInputAdapter):
    """Reads table ``table_name`` (or the rows of ``query``) of the DuckDB file ``database``.

    The file is opened read-only, in the process that reads, and the rows are fetched as Arrow
    record batches of at most ``batch_size`` rows (``fetch_record_batch``). With ``key`` (a
    column), ``split(n)`` gives ``n`` shards by ranges of the key at its quantiles, each read in
    key order (rows whose key is NULL first, in the first shard): every row exactly once, and
    the shards one after the other give the rows in key order. Without ``key`` the input is
    one shard (:meth:`max_shards` is 1) and keeps the order DuckDB gives. ``table_name`` and
    ``key`` are plain SQL identifiers; key bounds are bound as parameters.
    """

    def __init__(
        self,
        database: str | os.PathLike[str],
        query: str | None = None,
        table_name: str | None = None,
        key: str | None = None,
        batch_size: int = 10_000,
    ) -> None:
        require_duckdb()
        self.database = Path(database).absolute()
        super().__init__(self.database, query, table_name, key, batch_size)

    def _parameter(self, index: int) -> str:
        return "?"

    def _connect(self) -> Any:
        import duckdb

        if not self.database.is_file():
            raise InputError("no such DuckDB file", path=self.source, **self._what())
        try:
            return duckdb.connect(str(self.database), read_only=True)
        except duckdb.Error as exc:
            raise self._fail("open the database for", exc) from exc

    def _scalars(self, sql: str, parameters: Sequence[Any]) -> tuple[Any, ...]:
        import duckdb

        connection = self._connect()
        try:
            row = connection.execute(sql, list(parameters)).fetchone()
        except duckdb.Error as exc:
            raise self._fail("query", exc) from exc
        finally:
            connection.close()
        return tuple(row) if row is not None else (None,)

    def _rows(self, sql: str, parameters: Sequence[Any]) -> Iterator[InputBatch]:
        import duckdb

        connection = self._connect()
        try:
            try:
                relation = connection.sql(sql, params=list(parameters))
                # A relation streams record batches: ``fetch_record_batch`` before duckdb 2.
                reader = getattr(relation, "to_arrow_reader", relation.fetch_record_batch)(
                    self.batch_size
                )
                for batch in reader:
                    if batch.num_rows:
                        yield InputBatch(source=self.source, table=pa.Table.from_batches([batch]))
            except duckdb.Error as exc:
                raise self._fail("query", exc) from exc
        finally:
            connection.close()
