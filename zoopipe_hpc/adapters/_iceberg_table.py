"""The catalog and the table of an Iceberg output: opened, located, created, looked up (private).

:class:`IcebergTableAccess` is the part of the Iceberg output adapter
(:class:`~zoopipe_hpc.adapters.iceberg.IcebergOutputAdapter`) that talks to the catalog: it
opens the catalog (the embedded SQLite one, a named one, or the user's own object), places or
finds the table's location, creates the namespace and the table under a lock where creators
may race, and finds the snapshot a run appended. The adapter adds writing the Parquet parts
and committing them as one snapshot.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import unquote, urlparse

import pyarrow as pa

from ..commit._locks import locked
from ..errors import CommitError, ConfigurationError

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table

__all__ = [
    "CatalogSettings",
    "catalog_settings",
    "EMBEDDED_CATALOG_FILE",
    "EMBEDDED_CATALOG_NAME",
    "RUN_ID_PROPERTY",
    "IcebergTableAccess",
    "require_pyiceberg",
]

# The logger of the public module, so that logging set up for it still sees these records.
log = logging.getLogger("zoopipe_hpc.adapters.iceberg")

#: Snapshot summary property that records which run appended a snapshot.
RUN_ID_PROPERTY = "zoopipe.run-id"
#: The SQLite file of the embedded catalog, inside the warehouse folder.
EMBEDDED_CATALOG_FILE = "catalog.db"
EMBEDDED_CATALOG_NAME = "zoopipe"


class CatalogSettings(NamedTuple):
    """How an Iceberg adapter reaches its catalog (see :func:`catalog_settings`)."""

    catalog: Catalog | None
    catalog_class: type[Catalog] | None
    name: str
    properties: dict[str, str]


def catalog_settings(
    adapter: str,
    catalog: Catalog | str | None,
    warehouse: Path | None,
    properties: Mapping[str, Any] | None,
) -> CatalogSettings:
    """The catalog of an Iceberg adapter named ``adapter``: the embedded SQLite catalog in
    ``warehouse`` (``catalog=None``), one loaded by name, or the user's own object."""
    extra = dict(properties or {})
    if catalog is None:
        if warehouse is None:
            raise ConfigurationError(
                f"{adapter} needs warehouse= (a folder) for its embedded catalog, "
                "or a catalog= of your own"
            )
        embedded = {
            "uri": f"sqlite:///{warehouse / EMBEDDED_CATALOG_FILE}",
            "warehouse": warehouse.as_uri(),
            **extra,
        }
        return CatalogSettings(None, None, EMBEDDED_CATALOG_NAME, embedded)
    if isinstance(catalog, str):
        return CatalogSettings(None, None, catalog, extra)
    own = {str(k): str(v) for k, v in catalog.properties.items()}
    return CatalogSettings(catalog, type(catalog), catalog.name, own)


_INSTALL_HINT = "pip install 'zoopipe_hpc[iceberg]'"


def require_pyiceberg() -> None:
    try:
        import pyiceberg  # noqa: F401
    except ImportError as exc:
        raise ConfigurationError(
            f"Iceberg outputs need pyiceberg with its SQL catalog: {_INSTALL_HINT}"
        ) from exc


def _local_path(location: str, what: str) -> Path:
    """A local (or shared-filesystem) path from a ``file://`` URI or a plain path."""
    parsed = urlparse(location)
    if parsed.scheme in ("", "file"):
        return Path(unquote(parsed.path) if parsed.scheme else location).absolute()
    raise ConfigurationError(
        f"{what} {location!r} is not on a local or shared filesystem; IcebergOutputAdapter "
        "writes its data files through the filesystem (file:// locations only)"
    )


class IcebergTableAccess:
    """The catalog and table side of :class:`~zoopipe_hpc.adapters.iceberg.IcebergOutputAdapter`.

    The adapter's ``__init__`` sets the attributes declared here.
    """

    namespace: tuple[str, ...]
    table_name: str
    create: bool
    warehouse: Path | None
    location: Path
    _catalog: Catalog | None
    _catalog_class: type[Catalog] | None
    _catalog_name: str
    _catalog_properties: dict[str, str]

    @property
    def identifier(self) -> str:
        """The table's identifier, ``namespace.name``."""
        return ".".join((*self.namespace, self.table_name))

    @property
    def _embedded_warehouse(self) -> Path | None:
        """The warehouse folder of the embedded SQLite catalog; None for any other catalog."""
        if self._catalog_class is None and self._catalog_name == EMBEDDED_CATALOG_NAME:
            return self.warehouse
        return None

    def catalog(self) -> Catalog:
        """The catalog, opened on first use in this process."""
        if self._catalog is not None:
            return self._catalog
        require_pyiceberg()
        if self._catalog_class is not None:
            catalog = self._catalog_class(self._catalog_name, **self._catalog_properties)
        elif self._embedded_warehouse is not None:
            from pyiceberg.catalog.sql import SqlCatalog

            self._embedded_warehouse.mkdir(parents=True, exist_ok=True)
            with self._creation_lock():  # the first opening creates the catalog's SQL tables
                catalog = SqlCatalog(self._catalog_name, **self._catalog_properties)
        else:
            from pyiceberg.catalog import load_catalog

            catalog = load_catalog(self._catalog_name, **self._catalog_properties)
        self._catalog = catalog
        return catalog

    def _resolve_location(self) -> Path:
        from pyiceberg.exceptions import NoSuchTableError

        try:
            table = self.catalog().load_table(self.identifier)
        except NoSuchTableError:
            if not self.create:
                raise ConfigurationError(
                    f"Iceberg table {self.identifier} does not exist (create=False)"
                ) from None
        else:
            return _local_path(table.location(), f"the location of table {self.identifier}")
        warehouse = self._catalog_properties.get("warehouse")
        if warehouse is None:
            raise ConfigurationError(
                f"cannot place new Iceberg table {self.identifier}: the catalog has no "
                "'warehouse' property; give warehouse= or create the table first"
            )
        root = _local_path(warehouse, "the warehouse")
        return root / f"{'.'.join(self.namespace)}.db" / self.table_name

    def load_table(self, schema: pa.Schema | None = None) -> Table:
        """The table; created from ``schema`` if it does not exist and ``create`` is set."""
        from pyiceberg.exceptions import NoSuchTableError

        catalog = self.catalog()
        try:
            return catalog.load_table(self.identifier)
        except NoSuchTableError:
            if not self.create or schema is None:
                raise CommitError(
                    f"Iceberg table {self.identifier} does not exist", table=self.identifier
                ) from None
        if not len(schema):
            raise CommitError(
                f"cannot create Iceberg table {self.identifier}: the output has no columns "
                "(give the pipe a schema_model, or create the table first)",
                table=self.identifier,
            )
        with self._creation_lock():
            return self._create_table(catalog, schema)

    def _creation_lock(self) -> contextlib.AbstractContextManager[None]:
        """Serialises the creation of the embedded catalog, namespace and table across processes.

        The shards of a first ``merge=False`` run all create them at once, and pyiceberg's SQL
        catalog checks for a namespace before inserting it, so two creators can both pass the
        check (the loser gets an ``IntegrityError``). A catalog of the user's own gets no lock:
        :meth:`_create_table` tolerates losing the race there.
        """
        if self._embedded_warehouse is not None:
            return locked(self._embedded_warehouse / EMBEDDED_CATALOG_FILE)
        return contextlib.nullcontext()

    def _create_table(self, catalog: Catalog, schema: pa.Schema) -> Table:
        """Create the namespace and the table unless they exist; another creator may win."""
        from pyiceberg.exceptions import NoSuchTableError

        try:
            return catalog.load_table(self.identifier)  # created while we waited for the lock
        except NoSuchTableError:
            pass
        try:
            catalog.create_namespace_if_not_exists(self.namespace)
        except Exception:  # a catalog that reports a lost race otherwise (SQL: IntegrityError)
            if not catalog.namespace_exists(self.namespace):
                raise
            log.debug("namespace %s was created by another writer", ".".join(self.namespace))
        table = catalog.create_table_if_not_exists(
            self.identifier, schema=schema, location=self.location.as_uri()
        )
        log.info("created Iceberg table %s at %s", self.identifier, table.location())
        return table

    def committed_run(self, table: Table, run_id: str) -> int | None:
        """The id of the snapshot of the current branch appended by ``run_id``, if any."""
        from pyiceberg.table.snapshots import ancestors_of

        for snapshot in ancestors_of(table.current_snapshot(), table.metadata):
            summary = snapshot.summary
            if summary is not None and summary.additional_properties.get(RUN_ID_PROPERTY) == run_id:
                return int(snapshot.snapshot_id)
        return None
