"""Apache Iceberg input: one snapshot of a table, read data file by data file.

The snapshot (the table's current one, or ``snapshot_id``) is pinned when the adapter is made,
so the shards of ``parallelize_pipe`` all read the same snapshot even if writers append to the
table meanwhile. ``split(n)`` gives each shard whole data files, in the snapshot's planned
order, balanced by record count. A snapshot with delete files is refused: its data files hold
rows that are no longer in the table. See ``docs/iceberg.md``.

pyiceberg is imported only when a table is used (``pip install 'zoopipe_hpc[iceberg]'``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

import pyarrow as pa

from ..errors import ConfigurationError, InputError
from ._iceberg_table import (
    IcebergTableAccess,
    catalog_settings,
    require_pyiceberg,
)
from .base import BaseInputAdapter, InputBatch, check_workers

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import FileScanTask, Table

__all__ = ["IcebergInputAdapter"]


class IcebergInputAdapter(IcebergTableAccess, BaseInputAdapter):
    """Reads one snapshot of an Apache Iceberg table in bounded Arrow record batches.

    ``table``, ``catalog``, ``catalog_properties`` and ``warehouse`` are those of
    :class:`~zoopipe_hpc.IcebergOutputAdapter`. ``snapshot_id`` reads that snapshot; by
    default the table's current snapshot when the adapter is made (a table with no snapshot
    reads as empty). ``split(n)`` shares out whole data files; ``files`` (the data files'
    paths) restricts a shard to some of them. ``source`` is the table's location.
    """

    def __init__(
        self,
        table: str,
        *,
        catalog: str | Catalog | None = None,
        catalog_properties: Mapping[str, str] | None = None,
        warehouse: str | os.PathLike[str] | None = None,
        snapshot_id: int | None = None,
        batch_size: int = 65_536,
        files: Sequence[str] | None = None,
    ) -> None:
        require_pyiceberg()
        parts = [p for p in str(table).split(".") if p] if isinstance(table, str) else []
        if not parts:
            raise ConfigurationError(f"table must be 'namespace.name', got {table!r}")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ConfigurationError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.namespace = tuple(parts[:-1]) or ("default",)
        self.table_name = parts[-1]
        self.create = False
        self.batch_size = batch_size
        self.files = list(files) if files is not None else None
        self.warehouse = Path(warehouse).absolute() if warehouse is not None else None
        (
            self._catalog,
            self._catalog_class,
            self._catalog_name,
            self._catalog_properties,
        ) = catalog_settings("IcebergInputAdapter", catalog, self.warehouse, catalog_properties)
        self.snapshot_id: int | None = snapshot_id
        self._pinned = False
        self._location: str | None = None
        self._try_pin()
        super().__init__(self.source)

    # -- identity and pickling ----------------------------------------------------------------

    @property
    def source(self) -> str:
        """The table's location (kept as text: it may be a URI), or its identifier until the
        table is found."""
        return self._location if self._location is not None else self.identifier

    def describe(self) -> str:
        snapshot = f", snapshot {self.snapshot_id}" if self.snapshot_id is not None else ""
        files = f", {len(self.files)} data files" if self.files is not None else ""
        return f"IcebergInputAdapter({self.identifier!r} at {self.source!r}{snapshot}{files})"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_catalog"] = None  # connections do not travel; reopened where needed
        return state

    def _error(self, message: str) -> InputError:
        return InputError(
            f"Iceberg table {self.identifier}: {message}", path=self.source, table=self.identifier
        )

    # -- the snapshot -------------------------------------------------------------------------

    def _load(self) -> Table | None:
        """The table, or None if the catalog has no such table."""
        from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

        try:
            return self.catalog().load_table(self.identifier)
        except (NoSuchTableError, NoSuchNamespaceError):
            return None

    def _try_pin(self) -> None:
        """Fix the snapshot (and the location) if the table exists; retried on first use."""
        table = self._load()
        if table is None:
            return
        location = table.location()
        parsed = urlparse(location)
        self._location = unquote(parsed.path) if parsed.scheme == "file" else location
        if self.snapshot_id is None:
            current = table.current_snapshot()
            self.snapshot_id = int(current.snapshot_id) if current is not None else None
        elif table.snapshot_by_id(self.snapshot_id) is None:
            raise self._error(f"no snapshot {self.snapshot_id}")
        self._pinned = True

    def _table(self) -> Table:
        table = self._load()
        if table is None:
            raise self._error("no such table in the catalog")
        if not self._pinned:
            self._try_pin()
        return table

    def _tasks(self, table: Table) -> list[FileScanTask]:
        """The snapshot's planned data files (of this shard), in planned order."""
        if self.snapshot_id is None:
            return []
        if table.snapshot_by_id(self.snapshot_id) is None:
            raise self._error(f"snapshot {self.snapshot_id} is gone (expired?)")
        try:
            tasks = list(table.scan(snapshot_id=self.snapshot_id).plan_files())
        except (OSError, ValueError) as exc:
            raise self._error(f"cannot plan snapshot {self.snapshot_id}: {exc}") from exc
        deleting = [task for task in tasks if task.delete_files]
        if deleting:
            raise self._error(
                f"snapshot {self.snapshot_id} has delete files (positional or equality "
                f"deletes, e.g. on {deleting[0].file.file_path}); IcebergInputAdapter reads "
                "only snapshots without deletes: compact the table first"
            )
        if self.files is None:
            return tasks
        wanted = set(self.files)
        chosen = [task for task in tasks if task.file.file_path in wanted]
        if len(chosen) != len(wanted):
            found = {task.file.file_path for task in chosen}
            lost = sorted(wanted - found)
            raise self._error(f"snapshot {self.snapshot_id} has no data file {lost[0]}")
        return chosen

    # -- the adapter --------------------------------------------------------------------------

    def check(self) -> None:
        self._tasks(self._table())

    def max_shards(self, wanted: int) -> int:
        """One shard per data file at most (a file is never cut)."""
        if self.files is not None:
            return max(1, min(wanted, len(self.files)))
        return max(1, min(wanted, len(self._tasks(self._table()))))

    def split(self, workers: int) -> list[BaseInputAdapter]:
        """``workers`` shards of whole data files, in planned order, with about the same
        number of records each; every shard reads the pinned snapshot."""
        check_workers(workers)
        tasks = self._tasks(self._table())
        sizes = [int(task.file.record_count) for task in tasks]
        total = sum(sizes)
        shards: list[list[str]] = [[] for _ in range(workers)]
        seen = 0
        for task, size in zip(tasks, sizes, strict=True):
            # A file goes to the shard its middle record falls in: contiguous, in order.
            index = min(workers - 1, ((2 * seen + size) * workers) // (2 * total)) if total else 0
            shards[index].append(str(task.file.file_path))
            seen += size
        return [self._shard(files) for files in shards]

    def _shard(self, files: list[str]) -> IcebergInputAdapter:
        clone = object.__new__(IcebergInputAdapter)
        clone.__dict__.update(self.__getstate__())
        clone._catalog = self._catalog if self._catalog_class is None else None
        clone.files = files
        return clone

    def batches(self) -> Iterator[InputBatch]:
        table = self._table()
        tasks = self._tasks(table)
        if not tasks:
            return
        from pyiceberg.expressions import AlwaysTrue
        from pyiceberg.io.pyarrow import ArrowScan

        schema = table.scan(snapshot_id=self.snapshot_id).projection()
        scan = ArrowScan(table.metadata, table.io, schema, AlwaysTrue())
        for task in tasks:
            batches = scan.to_record_batches([task])
            while True:
                try:
                    batch = next(batches)
                except StopIteration:
                    break
                except (OSError, pa.ArrowException) as exc:
                    raise self._error(
                        f"cannot read data file {task.file.file_path}: {exc}"
                    ) from exc
                for start in range(0, batch.num_rows, self.batch_size):
                    piece = batch.slice(start, self.batch_size)
                    yield InputBatch(source=self.source, table=pa.Table.from_batches([piece]))
