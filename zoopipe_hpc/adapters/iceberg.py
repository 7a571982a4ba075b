"""Apache Iceberg output: Parquet parts appended to a table in one atomic, idempotent snapshot.

Writers (a single :class:`~zoopipe_hpc.Pipe`, or the shards of ``parallelize_pipe``) write
Parquet files into a staging folder next to the table's data folder. The commit moves them into
the data folder and adds them to the table with pyiceberg's ``add_files`` in one transaction:
one ``append`` snapshot whose summary carries the run id (``zoopipe.run-id``). Nothing is
visible to readers before the catalog accepts that snapshot; a run id that is already in the
table's history is never appended again. See ``docs/iceberg.md``.

pyiceberg is imported only when a table is used (``pip install 'zoopipe_hpc[iceberg]'``).
"""

from __future__ import annotations

import copy
import logging
import os
import random
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..commit._atomic import fsync_path
from ..errors import ArgumentTypeError, CommitError, ConfigurationError
from ._iceberg_table import (
    EMBEDDED_CATALOG_FILE,
    RUN_ID_PROPERTY,
    IcebergTableAccess,
    catalog_settings,
    require_pyiceberg,
)
from .base import BaseOutputAdapter, _FileSink
from .parquet import _ParquetSink

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table


__all__ = ["IcebergOutputAdapter", "RUN_ID_PROPERTY", "EMBEDDED_CATALOG_FILE"]

log = logging.getLogger(__name__)


class IcebergOutputAdapter(IcebergTableAccess, BaseOutputAdapter):
    """Appends the valid records to an Apache Iceberg table, in one snapshot per run.

    ``table`` is ``"namespace.name"`` (``"name"`` alone uses the ``default`` namespace).
    ``catalog``: ``None`` (default) for the embedded catalog, a pyiceberg ``SqlCatalog`` on
    ``<warehouse>/catalog.db`` (SQLite) with its tables under ``warehouse``; a catalog name
    loaded with ``pyiceberg.catalog.load_catalog(name, **catalog_properties)``; or a pyiceberg
    ``Catalog`` object. The table's data location must be on a filesystem every writer sees.
    ``create``: create the table (and namespace) from the written schema if it does not exist.
    ``run_id`` makes a single pipe's commit idempotent across reruns (``parallelize_pipe``
    takes its own ``run_id``). ``commit_retries`` bounds the refresh-and-retry rounds after a
    concurrent commit (on top of pyiceberg's own retries).

    The adapter writes Parquet like :class:`~zoopipe_hpc.ParquetOutputAdapter`; its ``path``
    is the table's data folder, where committed files live as ``zoopipe-<run id>-NNNNN.parquet``.
    """

    format = "parquet"
    commit_strategy = "iceberg"

    def __init__(
        self,
        table: str,
        *,
        catalog: str | Catalog | None = None,
        catalog_properties: Mapping[str, str] | None = None,
        warehouse: str | os.PathLike[str] | None = None,
        create: bool = True,
        compression: str = "snappy",
        run_id: str | None = None,
        commit_retries: int = 5,
        retry_backoff: float = 0.2,
    ) -> None:
        require_pyiceberg()
        parts = [p for p in str(table).split(".") if p]
        if not parts or not isinstance(table, str):
            raise ConfigurationError(f"table must be 'namespace.name', got {table!r}")
        if not isinstance(commit_retries, int) or commit_retries < 0:
            raise ConfigurationError(f"commit_retries must be >= 0, got {commit_retries!r}")
        self.namespace: tuple[str, ...] = tuple(parts[:-1]) or ("default",)
        self.table_name = parts[-1]
        self.create = create
        self.compression = compression
        self.run_id = run_id
        self.commit_retries = commit_retries
        self.retry_backoff = retry_backoff
        self.warehouse = Path(warehouse).absolute() if warehouse is not None else None
        (
            self._catalog,
            self._catalog_class,
            self._catalog_name,
            self._catalog_properties,
        ) = catalog_settings("IcebergOutputAdapter", catalog, self.warehouse, catalog_properties)
        self.location = self._resolve_location()
        super().__init__(self.location / "data")

    # -- identity and pickling ----------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        """The folder committed data files are moved into."""
        return self.location / "data"

    def describe(self) -> str:
        return f"IcebergOutputAdapter({self.identifier!r} at {str(self.location)!r})"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_catalog"] = None  # connections do not travel; reopened where needed
        return state

    def _clone(self) -> IcebergOutputAdapter:
        clone = copy.copy(self)
        clone._part_of = None
        clone._part_index = None
        return clone

    def numbered(self, index: int) -> IcebergOutputAdapter:
        """Shard ``index`` committing its own snapshot (``parallelize_pipe(merge=False)``).

        A fixed ``run_id`` becomes ``<run_id>-part-NNNNN``: each shard's snapshot is idempotent
        on its own, instead of every shard after the first looking like a rerun of the first.
        """
        clone = super().numbered(index)  # a staging folder of its own, named after the shard
        if not isinstance(clone, IcebergOutputAdapter):  # pragma: no cover - _clone keeps the type
            raise ArgumentTypeError(f"{type(self).__name__}._clone returned {type(clone).__name__}")
        if self.run_id is not None:
            clone.run_id = f"{self.run_id}-part-{index:05d}"
        return clone

    # -- writing ------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Create the data folder (the staging folder sits next to it)."""
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CommitError(
                f"cannot create the data folder {self.data_dir} of Iceberg table "
                f"{self.identifier}: {exc}",
                table=self.identifier,
            ) from exc

    def _open_file(self, path: Path, schema: pa.Schema | None) -> _FileSink:
        return _ParquetSink(path, schema, self.compression)

    def merge(self, parts: Sequence[Path], destination: Path) -> None:
        raise ConfigurationError(
            f"{self.describe()} is committed as a table snapshot by its run's transaction, "
            "not merged into a file"
        )

    # -- committing ---------------------------------------------------------------------------

    def commit_files(
        self, files: Sequence[Path], run_id: str, shards: Sequence[int] | None = None
    ) -> int:
        """Append ``files`` (complete Parquet files, in order) to the table as one snapshot.

        Idempotent: if the table's current branch already has the snapshot of ``run_id``,
        nothing is appended and its id is returned. ``shards[i]`` names the shard of
        ``files[i]`` in errors. Raises :class:`CommitError`; the table is then unchanged and
        the files moved into the data folder are removed (unless the outcome is unknown).
        Returns the id of the run's snapshot.
        """
        shard_of = list(shards) if shards is not None else list(range(len(files)))
        schema = self._files_schema(files, shard_of, run_id)
        table = self.load_table(schema)
        existing = self.committed_run(table, run_id)
        if existing is not None:
            log.info(
                "run %s is already in Iceberg table %s (snapshot %d): not appending it again",
                run_id,
                self.identifier,
                existing,
            )
            return existing
        self._check_files(table, files, shard_of, run_id)
        published = self._publish_files(files, run_id)
        try:
            return self._append(table, published, run_id)
        except BaseException as exc:
            self._after_failed_append(published, run_id, exc)
            raise

    def _error(self, message: str, run_id: str, shard: int | None = None) -> CommitError:
        where = f" (shard {shard})" if shard is not None else ""
        return CommitError(
            f"Iceberg table {self.identifier}, run {run_id}{where}: {message}",
            table=self.identifier,
            run_id=run_id,
            shard=shard,
        )

    def _files_schema(self, files: Sequence[Path], shards: Sequence[int], run_id: str) -> pa.Schema:
        """The Arrow schema of the files (of the first one with rows), checked to agree."""
        chosen: pa.Schema | None = None
        first: pa.Schema | None = None
        for path, shard in zip(files, shards, strict=True):
            try:
                metadata = pq.read_metadata(path)
            except (OSError, pa.ArrowException) as exc:
                raise self._error(f"cannot read part {path}: {exc}", run_id, shard) from exc
            schema = metadata.schema.to_arrow_schema()
            if first is None:
                first = schema
            if metadata.num_rows == 0:
                continue
            if chosen is None:
                chosen = schema
            elif not schema.equals(chosen):
                raise self._error(
                    f"part {path} has schema {schema}, other shards have {chosen}", run_id, shard
                )
        if chosen is not None:
            return chosen
        return first if first is not None else pa.schema([])

    def _check_files(
        self, table: Table, files: Sequence[Path], shards: Sequence[int], run_id: str
    ) -> None:
        """Fail before anything moves if a part does not fit the table's schema."""
        from pyiceberg.io.pyarrow import parquet_file_to_data_file

        for path, shard in zip(files, shards, strict=True):
            try:
                parquet_file_to_data_file(table.io, table.metadata, path.as_uri())
            except (ValueError, TypeError, OSError, pa.ArrowException) as exc:
                raise self._error(
                    f"part {path} does not fit the table's schema: {exc}", run_id, shard
                ) from exc

    def _publish_files(self, files: Sequence[Path], run_id: str) -> list[Path]:
        """Move the parts into the data folder under names fixed by the run id and position.

        Not visible to readers yet: only the catalog commit makes a file part of the table. A
        rerun with the same run id replaces files a crashed attempt left here.
        """
        published = []
        for index, source in enumerate(files):
            destination = self.data_dir / f"zoopipe-{run_id}-{index:05d}.parquet"
            if source.exists() or not destination.exists():  # moved already before a crash
                os.replace(source, destination)
            published.append(destination)
        fsync_path(self.data_dir)
        return published

    def _append(self, table: Table, files: Sequence[Path], run_id: str) -> int:
        """One transaction: ``add_files`` of every file, with the run id in the snapshot summary.

        A commit that loses to a concurrent one (``CommitFailedException``, after pyiceberg's
        own retries) is retried after refreshing the table, at most ``commit_retries`` times
        with exponential backoff; each round first checks whether the run id landed after all.
        """
        from pyiceberg.exceptions import CommitFailedException

        properties = {RUN_ID_PROPERTY: run_id, "zoopipe.files": str(len(files))}
        uris = [path.as_uri() for path in files]
        attempt = 0
        while True:
            try:
                with table.transaction() as transaction:
                    transaction.add_files(uris, snapshot_properties=properties)
            except CommitFailedException as exc:
                if attempt == self.commit_retries:
                    raise self._error(
                        f"gave up after {attempt + 1} attempts lost to concurrent commits: {exc}",
                        run_id,
                    ) from exc
                delay = self.retry_backoff * (2**attempt) * (1 + random.random() / 10)
                log.warning(
                    "commit of run %s to Iceberg table %s lost to a concurrent commit (%s); "
                    "refreshing and retrying in %.2f s (%d/%d)",
                    run_id,
                    self.identifier,
                    exc,
                    delay,
                    attempt + 1,
                    self.commit_retries,
                )
                time.sleep(delay)
                attempt += 1
                table.refresh()
                landed = self.committed_run(table, run_id)
                if landed is not None:
                    return landed
                continue
            snapshot = self.committed_run(table, run_id)
            if snapshot is None:
                raise self._error(
                    "the commit returned but its snapshot is not in the table", run_id
                )
            log.info(
                "committed %d files to Iceberg table %s as snapshot %d (run %s)",
                len(files),
                self.identifier,
                snapshot,
                run_id,
            )
            return snapshot

    def _after_failed_append(
        self, published: Sequence[Path], run_id: str, error: BaseException
    ) -> None:
        """Remove the moved files if the commit certainly did not land; keep them otherwise."""
        from pyiceberg.exceptions import CommitFailedException

        if isinstance(error, CommitFailedException) or (
            isinstance(error, CommitError) and isinstance(error.__cause__, CommitFailedException)
        ):
            landed = False
        else:
            try:
                table = self.catalog().load_table(self.identifier)
                landed = self.committed_run(table, run_id) is not None
            except Exception as exc:  # noqa: BLE001 - outcome unknown: keep the files, say so
                log.error(
                    "cannot tell whether run %s reached Iceberg table %s (%s); keeping %s, "
                    "rerun with the same run id to finish or undo",
                    run_id,
                    self.identifier,
                    exc,
                    ", ".join(str(p) for p in published),
                )
                return
        if landed:
            log.warning(
                "run %s reached Iceberg table %s although the commit reported %r",
                run_id,
                self.identifier,
                error,
            )
            return
        for path in published:
            path.unlink(missing_ok=True)
