"""The SQL strategy: every table a run writes to one database, loaded in one SQL transaction.

The same design as :mod:`zoopipe_hpc.commit._duckdb`: the SQL targets of a run on one database
are one group; each entry of the commit record lists the parts of every table of the group; the
first ``publish``, under the database's commit lock, loads them all and records the run id in
``_zoopipe_runs`` in one transaction (with transactional DDL, so ``replace`` is undone too);
the others, and recovery, find the run id and do nothing. SQLite's Python driver opens its
transactions lazily (after DDL); the engine here begins them explicitly instead.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..adapters.sql import RUNS_TABLE, SQLOutputAdapter
from ..errors import CommitError, ConfigurationError, ZoopipeHPCError
from ._locks import commit_lock, hold
from .staged import StagedFile
from .strategies import CommitStrategy

if TYPE_CHECKING:
    import sqlalchemy as sa

__all__ = ["SQLStrategy"]

log = logging.getLogger(__name__)


def _column_type(field: pa.Field) -> sa.types.TypeEngine[Any] | None:
    """The SQLAlchemy type of an Arrow column, None when there is none."""
    import sqlalchemy as sa

    kind = field.type
    if pa.types.is_boolean(kind):
        return sa.Boolean()
    if pa.types.is_integer(kind):
        return sa.BigInteger()
    if pa.types.is_floating(kind):
        return sa.Float()
    if pa.types.is_decimal(kind):
        return sa.Numeric(kind.precision, kind.scale)
    if pa.types.is_timestamp(kind):
        return sa.DateTime(timezone=kind.tz is not None)
    if pa.types.is_date(kind):
        return sa.Date()
    if pa.types.is_time(kind):
        return sa.Time()
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return sa.Text()
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return sa.LargeBinary()
    return None


def _engine(url: str) -> sa.Engine:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    if engine.dialect.name == "sqlite":

        @sa.event.listens_for(engine, "connect")
        def _autocommit(connection: Any, record: Any) -> None:
            connection.isolation_level = None  # no lazy BEGIN: DDL joins the transaction

        @sa.event.listens_for(engine, "begin")
        def _begin(connection: sa.Connection) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _runs_table(metadata: sa.MetaData) -> sa.Table:
    import sqlalchemy as sa

    return sa.Table(
        RUNS_TABLE,
        metadata,
        sa.Column("run_id", sa.String(200), primary_key=True),
        sa.Column("committed_at", sa.Float),
        sa.Column("tables", sa.Text),
    )


class SQLStrategy(CommitStrategy):
    name = "sql"
    external = True

    @property
    def table(self) -> SQLOutputAdapter:
        adapter = self.adapter
        if not isinstance(adapter, SQLOutputAdapter):
            raise ConfigurationError(f"the SQL strategy needs a SQLOutputAdapter, got {adapter!r}")
        return adapter

    @property
    def run_id(self) -> str:
        return self.staging.run_id

    @property
    def target_name(self) -> str:
        table = self.table
        return f"SQL table {table.table_name} of {table.shown_url} (run {self.run_id})"

    def _error(
        self, message: str, run_id: str, table: str | None = None, **details: Any
    ) -> CommitError:
        where = f"table {table} of " if table else ""
        return CommitError(
            f"SQL {where}database {self.table.shown_url}, run {run_id}: {message}",
            path=self.table.shown_url,
            table=table,
            run_id=run_id,
            **details,
        )

    def group(self) -> str | None:
        return self.table.commit_key().rpartition("#")[0]

    def prepare(self, files: Sequence[StagedFile]) -> dict[str, Any]:
        table = self.table
        parts, schema = self._loadable([Path(f.path) for f in files])
        for field in schema:
            if _column_type(field) is None:
                raise self._error(
                    f"column {field.name} has type {field.type}, which has no SQL type here; "
                    "nothing was committed",
                    self.run_id,
                    table.table_name,
                    operation="prepare",
                )
        return {
            "kind": self.name,
            "database": table.shown_url,
            "table": table.table_name,
            "run_id": self.run_id,
            "tables": [
                {"table": table.table_name, "mode": table.mode, "parts": [str(p) for p in parts]}
            ],
        }

    def _loadable(self, parts: Sequence[Path]) -> tuple[list[Path], pa.Schema]:
        """The parts with rows (or the first alone) and their schema, checked to agree."""
        chosen: pa.Schema | None = None
        first: pa.Schema | None = None
        loadable: list[Path] = []
        for shard, path in enumerate(parts):
            try:
                metadata = pq.read_metadata(path)
            except (OSError, pa.ArrowException) as exc:
                raise self._error(
                    f"cannot read part {path} (shard {shard}): {exc}; nothing was committed",
                    self.run_id,
                    self.table.table_name,
                    shard=shard,
                    operation="prepare",
                ) from exc
            schema = metadata.schema.to_arrow_schema()
            first = first if first is not None else schema
            if metadata.num_rows == 0:
                continue
            loadable.append(path)
            if chosen is None:
                chosen = schema
            elif not schema.equals(chosen):
                raise self._error(
                    f"part {path} (shard {shard}) has schema {schema}, other shards have "
                    f"{chosen}; nothing was committed",
                    self.run_id,
                    self.table.table_name,
                    shard=shard,
                    operation="prepare",
                )
        schema = chosen if chosen is not None else (first or pa.schema([]))
        return loadable or list(parts[:1]), schema

    def join(self, entry: dict[str, Any], group: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Every table of the run's group (same database) in this target's entry."""
        return entry | {"tables": [spec for member in group for spec in member["tables"]]}

    @contextlib.contextmanager
    def _locked(self, run_id: str) -> Iterator[sa.Engine]:
        table = self.table

        def error(message: str) -> ZoopipeHPCError:
            return self._error(message, run_id, operation="lock")

        lock = commit_lock(table.anchor, table.lock_timeout)
        with hold(
            Path(lock.lock_file),
            table.lock_timeout,
            what=f"SQL database {table.shown_url}",
            error=error,
        ):
            engine = _engine(table.url)
            try:
                yield engine
            finally:
                engine.dispose()

    def landed(self, entry: dict[str, Any]) -> bool:
        import sqlalchemy as sa

        run_id = str(entry["run_id"])
        with self._locked(run_id) as engine:
            try:
                with engine.connect() as connection:
                    if not sa.inspect(connection).has_table(RUNS_TABLE):
                        return False
                    runs = _runs_table(sa.MetaData())
                    found = connection.execute(
                        sa.select(runs.c.run_id).where(runs.c.run_id == run_id)
                    ).first()
                    return found is not None
            except sa.exc.SQLAlchemyError as exc:
                raise self._error(
                    f"cannot read {RUNS_TABLE}: {exc}", run_id, operation="landed"
                ) from exc

    def publish(self, entry: dict[str, Any]) -> None:
        import sqlalchemy as sa

        run_id = str(entry["run_id"])
        tables: list[dict[str, Any]] = list(entry["tables"])
        current: str | None = None
        with self._locked(run_id) as engine:
            try:
                with engine.begin() as connection:
                    runs = _runs_table(sa.MetaData())
                    runs.create(connection, checkfirst=True)
                    found = connection.execute(
                        sa.select(runs.c.run_id).where(runs.c.run_id == run_id)
                    ).first()
                    if found is not None:
                        log.info("run %s is already in %s", run_id, self.table.shown_url)
                        return
                    for spec in tables:
                        current = str(spec["table"])
                        self._load(
                            connection, run_id, current, str(spec["mode"]), list(spec["parts"])
                        )
                    current = None
                    connection.execute(
                        runs.insert(),
                        {
                            "run_id": run_id,
                            "committed_at": time.time(),
                            "tables": json.dumps([str(s["table"]) for s in tables]),
                        },
                    )
            except sa.exc.SQLAlchemyError as exc:
                what = f"loading table {current}" if current else "the transaction"
                raise self._error(
                    f"{what} failed: {exc}; the transaction was rolled back and every table of "
                    "the database is as it was",
                    run_id,
                    current,
                    operation="publish",
                ) from exc

    def _load(
        self, connection: sa.Connection, run_id: str, name: str, mode: str, parts: list[str]
    ) -> None:
        import sqlalchemy as sa

        schema = pq.read_schema(parts[0])
        table: sa.Table
        exists = sa.inspect(connection).has_table(name)
        if mode == "append" and exists:
            table = sa.Table(name, sa.MetaData(), autoload_with=connection)
            unknown = [f.name for f in schema if f.name not in table.c]
            if unknown:
                raise self._error(
                    f"loading table {name} failed: it has no column {', '.join(unknown)}; the "
                    "transaction was rolled back and every table of the database is as it was",
                    run_id,
                    name,
                    operation="publish",
                )
        else:
            columns = [sa.Column(f.name, _column_type(f)) for f in schema]
            table = sa.Table(name, sa.MetaData(), *columns)
            if exists:
                table.drop(connection)
            table.create(connection)
        for part in parts:
            for batch in pq.ParquetFile(part).iter_batches(batch_size=self.table.batch_rows):
                rows = batch.to_pylist()
                if rows:
                    connection.execute(table.insert(), rows)

    def published(self, entry: dict[str, Any]) -> str:
        names = ", ".join(str(s["table"]) for s in entry["tables"])
        return f"loaded run {entry['run_id']} into {entry['database']} ({names})"
