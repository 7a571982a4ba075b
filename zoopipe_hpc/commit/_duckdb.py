"""The DuckDB strategy: every table a run writes to one database, loaded in one DuckDB transaction.

A run's targets are committed one by one (``prepare`` and ``publish`` per target), but the
tables of one database must land together. So every DuckDB target of a run names the same
*group*, its database file; once every target is prepared, the transaction joins the group
(:meth:`CommitStrategy.join`): each entry of the commit record then lists the parts of *every*
table of that database. The first ``publish`` of the group, under the database's commit lock,
loads them all and records the run id in ``_zoopipe_runs`` in one DuckDB transaction; the
others find the run id there and do nothing. Recovery after a crash does the same from any one
entry, so a run is loaded once or not at all, whatever died where.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..adapters.duckdb import RUNS_TABLE, DuckDBOutputAdapter
from ..errors import CommitError, ConfigurationError, ZoopipeHPCError
from ._locks import commit_lock, hold
from .staged import StagedFile
from .strategies import CommitStrategy

if TYPE_CHECKING:
    import duckdb

__all__ = ["DuckDBStrategy", "has_run", "load_run"]

log = logging.getLogger(__name__)


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _error(
    message: str, database: str, run_id: str, table: str | None = None, **details: Any
) -> CommitError:
    where = f"table {table} of " if table else ""
    return CommitError(
        f"DuckDB {where}database {database}, run {run_id}: {message}",
        path=database,
        table=table,
        run_id=run_id,
        **details,
    )


@contextlib.contextmanager
def _database_lock(database: Path, run_id: str, timeout: float) -> Iterator[None]:
    """The database's commit lock: DuckDB has one writer per file, so runs queue here."""

    def error(message: str) -> ZoopipeHPCError:
        return _error(message, str(database), run_id, operation="lock")

    try:
        lock = commit_lock(database, timeout)
    except CommitError as exc:
        raise error(str(exc)) from exc
    with hold(Path(lock.lock_file), timeout, what=f"DuckDB database {database}", error=error):
        yield


@contextlib.contextmanager
def _connect(database: Path, run_id: str, timeout: float) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to ``database``; while another process (not a zoopipe_hpc commit, which
    takes the commit lock first) holds DuckDB's own file lock, it is retried for ``timeout``
    seconds."""
    import duckdb

    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        try:
            connection = duckdb.connect(str(database))
            break
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() >= deadline:
                raise _error(
                    f"cannot open it: {exc}", str(database), run_id, operation="connect"
                ) from exc
            log.info("DuckDB database %s is in use (%s); waiting for it", database, exc)
            time.sleep(delay)
            delay = min(2 * delay, 1.0)
        except duckdb.Error as exc:
            raise _error(
                f"cannot open it: {exc}", str(database), run_id, operation="connect"
            ) from exc
    try:
        yield connection
    finally:
        connection.close()


def _has_run(connection: duckdb.DuckDBPyConnection, run_id: str) -> bool:
    found = connection.execute(
        "SELECT count(*) FROM information_schema.tables "
        "WHERE table_schema = 'main' AND table_name = ?",
        [RUNS_TABLE],
    ).fetchone()
    if not found or not found[0]:
        return False
    row = connection.execute(
        f"SELECT count(*) FROM {_quote(RUNS_TABLE)} WHERE run_id = ?", [run_id]
    ).fetchone()
    return bool(row and row[0])


def _table_exists(connection: duckdb.DuckDBPyConnection, table: str) -> bool:
    row = connection.execute(
        "SELECT count(*) FROM information_schema.tables "
        "WHERE table_schema = 'main' AND table_name = ?",
        [table],
    ).fetchone()
    return bool(row and row[0])


def has_run(entry: dict[str, Any]) -> bool:
    """Whether the database of ``entry`` already holds its run (under the database's lock)."""
    database, run_id = Path(entry["database"]), str(entry["run_id"])
    if not database.exists():
        return False
    import duckdb

    timeout = float(entry["lock_timeout"])
    with _database_lock(database, run_id, timeout):
        with _connect(database, run_id, timeout) as connection:
            try:
                return _has_run(connection, run_id)
            except duckdb.Error as exc:
                raise _error(
                    f"cannot read {RUNS_TABLE}: {exc}", str(database), run_id, operation="landed"
                ) from exc


def load_run(entry: dict[str, Any]) -> bool:
    """Load every table of ``entry`` (its whole group) into its database in one DuckDB
    transaction that also records the run id; nothing if the run is there already. Needs
    nothing but the entry. Returns whether this call loaded it. On failure the transaction is
    rolled back, every table is as it was, and the error names the database, table and run."""
    import duckdb

    database, run_id = Path(entry["database"]), str(entry["run_id"])
    tables: list[dict[str, Any]] = list(entry["tables"])
    timeout = float(entry["lock_timeout"])
    with _database_lock(database, run_id, timeout):
        with _connect(database, run_id, timeout) as connection:
            current: str | None = None
            try:
                connection.begin()
                if _has_run(connection, run_id):
                    connection.rollback()
                    log.info("run %s is already in DuckDB database %s", run_id, database)
                    return False
                for spec in tables:
                    current = str(spec["table"])
                    _load_table(connection, current, str(spec["mode"]), list(spec["parts"]))
                current = None
                connection.execute(
                    f"CREATE TABLE IF NOT EXISTS {_quote(RUNS_TABLE)} "
                    "(run_id VARCHAR PRIMARY KEY, committed_at TIMESTAMPTZ, tables VARCHAR)"
                )
                connection.execute(
                    f"INSERT INTO {_quote(RUNS_TABLE)} VALUES (?, now(), ?)",
                    [run_id, json.dumps([str(s["table"]) for s in tables])],
                )
                connection.commit()
            except duckdb.Error as exc:
                with contextlib.suppress(duckdb.Error):
                    connection.rollback()
                what = f"loading table {current}" if current else "the transaction"
                raise _error(
                    f"{what} failed: {exc}; the DuckDB transaction was rolled back and every "
                    f"table of the database is as it was",
                    str(database),
                    run_id,
                    current,
                    operation="publish",
                ) from exc
            except BaseException:
                with contextlib.suppress(duckdb.Error):
                    connection.rollback()
                raise
    log.info(
        "loaded run %s into DuckDB database %s: %s",
        run_id,
        database,
        ", ".join(str(s["table"]) for s in tables),
    )
    return True


def _load_table(
    connection: duckdb.DuckDBPyConnection, table: str, mode: str, parts: list[str]
) -> None:
    source = "SELECT * FROM read_parquet(?)"
    if mode == "append" and _table_exists(connection, table):
        connection.execute(f"INSERT INTO {_quote(table)} BY NAME {source}", [parts])
    else:
        connection.execute(f"CREATE OR REPLACE TABLE {_quote(table)} AS {source}", [parts])


class DuckDBStrategy(CommitStrategy):
    name = "duckdb"
    external = True
    standalone = True

    @property
    def table(self) -> DuckDBOutputAdapter:
        adapter = self.adapter
        if not isinstance(adapter, DuckDBOutputAdapter):
            raise ConfigurationError(
                f"the DuckDB strategy needs a DuckDBOutputAdapter, got {adapter!r}"
            )
        return adapter

    @property
    def run_id(self) -> str:
        return self.staging.run_id

    @property
    def target_name(self) -> str:
        table = self.table
        return f"DuckDB table {table.table_name} of {table.database} (run {self.run_id})"

    def group(self) -> str | None:
        return f"duckdb:{os.path.realpath(self.table.database)}"

    def prepare(self, files: Sequence[StagedFile]) -> dict[str, Any]:
        table = self.table
        parts = self._loadable([Path(f.path) for f in files])
        return {
            "kind": self.name,
            "database": str(table.database),
            "table": table.table_name,
            "run_id": self.run_id,
            "lock_timeout": table.lock_timeout,
            "tables": [
                {"table": table.table_name, "mode": table.mode, "parts": [str(p) for p in parts]}
            ],
        }

    def _loadable(self, parts: Sequence[Path]) -> list[Path]:
        """The parts to load: those with rows (an empty shard's part may have no columns),
        or the first part alone if none has rows. Fails before anything is loaded if a part is
        unreadable or the parts' schemas disagree."""
        table = self.table
        chosen: pa.Schema | None = None
        loadable: list[Path] = []
        for shard, path in enumerate(parts):
            try:
                metadata = pq.read_metadata(path)
            except (OSError, pa.ArrowException) as exc:
                raise _error(
                    f"cannot read part {path} (shard {shard}): {exc}; nothing was committed",
                    str(table.database),
                    self.run_id,
                    table.table_name,
                    shard=shard,
                    operation="prepare",
                ) from exc
            schema = metadata.schema.to_arrow_schema()
            if metadata.num_rows == 0:
                continue
            loadable.append(path)
            if chosen is None:
                chosen = schema
            elif not schema.equals(chosen):
                raise _error(
                    f"part {path} (shard {shard}) has schema {schema}, other shards have "
                    f"{chosen}; nothing was committed",
                    str(table.database),
                    self.run_id,
                    table.table_name,
                    shard=shard,
                    operation="prepare",
                )
        return loadable or list(parts[:1])

    def join(self, entry: dict[str, Any], group: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Every table of the run's group (same database) in this target's entry."""
        tables = [spec for member in group for spec in member["tables"]]
        return entry | {"tables": tables}

    def publish(self, entry: dict[str, Any]) -> None:
        load_run(entry)

    def landed(self, entry: dict[str, Any]) -> bool:
        return has_run(entry)

    @classmethod
    def publish_alone(cls, entry: dict[str, Any]) -> None:
        load_run(entry)

    @classmethod
    def landed_alone(cls, entry: dict[str, Any]) -> bool:
        return has_run(entry)

    def published(self, entry: dict[str, Any]) -> str:
        names = ", ".join(str(s["table"]) for s in entry["tables"])
        return f"loaded run {entry['run_id']} into DuckDB database {entry['database']} ({names})"
