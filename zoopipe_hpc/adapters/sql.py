"""SQL output: Parquet parts loaded into tables of one SQL database, in one transaction per run.

Like :mod:`zoopipe_hpc.adapters.duckdb`, for any database SQLAlchemy reaches by URL (SQLite,
a file, is the embedded default and the tested one). Writers stage Parquet parts; the run's
commit (the ``"sql"`` strategy, :mod:`zoopipe_hpc.commit._sql`) loads every table the run
writes to one database in one database transaction that also records the run id in
``_zoopipe_runs``. The database must have transactional DDL (SQLite, PostgreSQL) for
``mode="replace"`` to be all or nothing.

sqlalchemy is imported only when a database is used (``pip install 'zoopipe_hpc[sql]'``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..commit._locks import LOCK_TIMEOUT
from ..errors import ConfigurationError, InputError
from ._key_ranges import KeyRangeInputAdapter
from ._table_output import DatabaseTableOutput
from .base import InputBatch

__all__ = ["SQLInputAdapter", "SQLOutputAdapter", "MODES", "RUNS_TABLE", "sqlite_file"]

#: What a run does to its table: ``replace`` its contents, or ``append`` to them.
MODES = ("replace", "append")
#: The table of a database that names every run loaded into it.
RUNS_TABLE = "_zoopipe_runs"

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SQLITE = re.compile(r"sqlite(\+\w+)?:///(?P<path>.+)")


def sqlite_file(url: str) -> Path | None:
    """The file of a ``sqlite:///path`` URL (absolute), or None for any other URL."""
    match = _SQLITE.fullmatch(url.split("?", 1)[0])
    if match is None or match["path"] == ":memory:":
        return None
    return Path(match["path"]).absolute()


def _hidden(url: str) -> str:
    """The URL without its password, for messages."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


class SQLOutputAdapter(DatabaseTableOutput):
    """Writes the valid records to table ``table_name`` of the database at SQLAlchemy ``url``.

    ``url`` is a SQLAlchemy URL (``"sqlite:///analytics.db"``); a plain path means a SQLite
    file. ``mode="replace"`` (default): after the run the table holds exactly the run's rows
    (dropped and created from the rows' schema); ``"append"``: the rows are inserted (the table
    is created by the first run). Every table of one database written by one run is committed
    in one transaction, recorded in ``_zoopipe_runs``; runs on one database queue on its commit
    lock (``lock_timeout`` seconds at most). ``staging_dir``: where parts wait (required unless
    the URL is a SQLite file, next to which they wait by default); it must be on a filesystem
    every writer sees.
    """

    format = "parquet"
    commit_strategy = "sql"

    def __init__(
        self,
        url: str | os.PathLike[str],
        table_name: str,
        *,
        mode: str = "replace",
        staging_dir: str | os.PathLike[str] | None = None,
        compression: str = "snappy",
        lock_timeout: float = LOCK_TIMEOUT,
        batch_rows: int = 10_000,
    ) -> None:
        if importlib.util.find_spec("sqlalchemy") is None:
            raise ConfigurationError(
                "SQLOutputAdapter needs the sqlalchemy package: pip install 'zoopipe_hpc[sql]'"
            )
        text = os.fspath(url)
        if "://" not in text:
            text = f"sqlite:///{Path(text).absolute()}"
        if not isinstance(table_name, str) or not _IDENTIFIER.fullmatch(table_name):
            raise ConfigurationError(
                f"table_name must be a plain SQL identifier (letters, digits, _), got "
                f"{table_name!r}"
            )
        if table_name.lower() == RUNS_TABLE:
            raise ConfigurationError(f"{RUNS_TABLE} is zoopipe_hpc's own table")
        if mode not in MODES:
            raise ConfigurationError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if not isinstance(batch_rows, int) or batch_rows < 1:
            raise ConfigurationError(f"batch_rows must be >= 1, got {batch_rows!r}")
        if not isinstance(lock_timeout, (int, float)) or lock_timeout <= 0:
            raise ConfigurationError(f"lock_timeout must be > 0 seconds, got {lock_timeout!r}")
        self.database = sqlite_file(text)
        if self.database is not None:  # the same file whatever the directory of the commit
            from sqlalchemy.engine import make_url

            text = make_url(text).set(database=str(self.database)).render_as_string(False)
        self.url = text
        self.table_name = table_name
        self.mode = mode
        self.compression = compression
        self.lock_timeout = float(lock_timeout)
        self.batch_rows = batch_rows
        if self.database is not None and staging_dir is None:
            folder, name = self.database.parent, self.database.name
        elif staging_dir is not None:
            digest = hashlib.sha256(text.encode()).hexdigest()[:12]
            folder, name = Path(staging_dir).absolute(), f"sql-{digest}"
        else:
            raise ConfigurationError(
                f"SQLOutputAdapter({_hidden(text)!r}) needs staging_dir= (a folder every writer "
                "sees) for a database that is not a SQLite file"
            )
        #: The file whose commit lock orders the runs on this database.
        self.anchor = folder / name
        super().__init__(folder / f"{name}#{table_name}")

    # -- identity -------------------------------------------------------------------------------

    @property
    def shown_url(self) -> str:
        """The URL without its password."""
        return _hidden(self.url)

    def commit_key(self) -> str:
        """The target: one table of one database."""
        where = os.path.realpath(self.database) if self.database is not None else self.shown_url
        return f"sql:{where}#{self.table_name}"

    def describe(self) -> str:
        return (
            f"SQLOutputAdapter({self.shown_url!r}, table_name={self.table_name!r}, "
            f"mode={self.mode!r})"
        )


class SQLInputAdapter(KeyRangeInputAdapter):
    """Reads table ``table_name`` (or the rows of ``query``) of the database at SQLAlchemy URL
    ``url_or_path`` (a plain path means a SQLite file, opened read-only).

    The rows are streamed (``yield_per``) in batches of at most ``batch_size`` rows, each a list
    of records. With ``key`` (a column), ``split(n)`` gives ``n`` shards by ranges of the key at
    its quantiles, each read in key order (rows whose key is NULL first, in the first shard):
    every row exactly once, and the shards one after the other give the rows in key order.
    Without ``key`` the input is one shard (:meth:`max_shards` is 1). ``table_name`` and ``key``
    are plain SQL identifiers (quoted); key bounds are bound as parameters. The engine is made
    in the process that reads, so the adapter pickles (its URL, password included, travels).
    """

    def __init__(
        self,
        url_or_path: str | os.PathLike[str],
        query: str | None = None,
        table_name: str | None = None,
        key: str | None = None,
        batch_size: int = 10_000,
    ) -> None:
        if importlib.util.find_spec("sqlalchemy") is None:
            raise ConfigurationError(
                "SQLInputAdapter needs the sqlalchemy package: pip install 'zoopipe_hpc[sql]'"
            )
        text = os.fspath(url_or_path)
        self.database = sqlite_file(text) if "://" in text else Path(text).absolute()
        self.url = text if "://" in text else f"sqlite:///{self.database}"
        super().__init__(self.database or text, query, table_name, key, batch_size)

    @property
    def source(self) -> str:
        """The SQLite file, or the URL without its password."""
        return str(self.database) if self.database is not None else _hidden(self.url)

    def _parameter(self, index: int) -> str:
        return f":p{index}"

    def _engine(self) -> Any:
        import sqlalchemy

        if self.database is not None:
            if not self.database.is_file():
                raise InputError("no such SQLite file", path=self.source, **self._what())
            # Read-only: SQLite's URI form with mode=ro.
            return sqlalchemy.create_engine(
                f"sqlite:///file:{self.database}?mode=ro&uri=true", poolclass=sqlalchemy.NullPool
            )
        return sqlalchemy.create_engine(self.url, poolclass=sqlalchemy.NullPool)

    def _statement(self, sql: str, parameters: Sequence[Any]) -> tuple[Any, dict[str, Any]]:
        import sqlalchemy

        return sqlalchemy.text(sql), {f"p{i}": value for i, value in enumerate(parameters)}

    def _scalars(self, sql: str, parameters: Sequence[Any]) -> tuple[Any, ...]:
        import sqlalchemy

        engine = self._engine()
        try:
            with engine.connect() as connection:
                row = connection.execute(*self._statement(sql, parameters)).first()
        except sqlalchemy.exc.SQLAlchemyError as exc:
            raise self._fail("query", exc) from exc
        finally:
            engine.dispose()
        return tuple(row) if row is not None else (None,)

    def _rows(self, sql: str, parameters: Sequence[Any]) -> Iterator[InputBatch]:
        import sqlalchemy

        engine = self._engine()
        try:
            with engine.connect() as connection:
                streaming = connection.execution_options(yield_per=self.batch_size)
                try:
                    result = streaming.execute(*self._statement(sql, parameters))
                    for part in result.partitions():
                        records = [dict(row._mapping) for row in part]
                        if records:
                            yield InputBatch(records, source=self.source)
                except sqlalchemy.exc.SQLAlchemyError as exc:
                    raise self._fail("query", exc) from exc
        finally:
            engine.dispose()
