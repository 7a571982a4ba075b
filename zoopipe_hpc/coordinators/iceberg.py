"""IcebergCoordinator: ZooPipe's name for the coordinator of a run that appends to a table.

ZooPipe's ``IcebergCoordinator`` "collects the list of parquet files produced by each worker and
submits them to the Iceberg catalog in a single atomic transaction". Here that is the run's
transaction with the Iceberg strategy (:mod:`zoopipe_hpc.commit._iceberg`) for the table target:
the same coordinator as for files, under the name ZooPipe users know.
"""

from __future__ import annotations

from .file_merge import FileMergeCoordinator

__all__ = ["IcebergCoordinator"]


class IcebergCoordinator(FileMergeCoordinator):
    """The run's transaction, for a run whose output is an Iceberg table."""
