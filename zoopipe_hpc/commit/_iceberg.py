"""The Iceberg strategy: every part of a run appended to a table as one snapshot, idempotently.

``prepare`` checks every part against the table's schema (nothing moves yet); ``publish``, run
after the commit record is durable, moves the parts into the table's data folder under names
fixed by the run id and appends them in one catalog transaction whose snapshot summary carries
the run id. Run again after a crash, it finds the run id in the table's history and appends
nothing twice, or moves the parts that had not moved and appends them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..adapters.iceberg import IcebergOutputAdapter
from ..errors import ConfigurationError
from .staged import StagedFile
from .strategies import CommitStrategy

__all__ = ["IcebergStrategy"]


class IcebergStrategy(CommitStrategy):
    name = "iceberg"
    external = True

    @property
    def table(self) -> IcebergOutputAdapter:
        adapter = self.adapter
        if not isinstance(adapter, IcebergOutputAdapter):
            raise ConfigurationError(
                f"the Iceberg strategy needs an IcebergOutputAdapter, got {adapter!r}"
            )
        return adapter

    @property
    def run_id(self) -> str:
        return self.table.run_id or self.staging.run_id

    @property
    def target_name(self) -> str:
        return f"Iceberg table {self.table.identifier} (run {self.run_id})"

    def begin(self) -> None:
        self.table.prepare()

    def prepare(self, files: Sequence[StagedFile]) -> dict[str, Any]:
        table = self.table
        parts = [Path(f.path) for f in files]
        shards = list(range(len(parts)))
        schema = table._files_schema(parts, shards, self.run_id)
        loaded = table.load_table(schema)
        if table.committed_run(loaded, self.run_id) is None:
            table._check_files(loaded, parts, shards, self.run_id)
        return {
            "kind": self.name,
            "table": table.identifier,
            "run_id": self.run_id,
            "parts": [str(p) for p in parts],
        }

    def publish(self, entry: dict[str, Any]) -> None:
        table = self.table
        run_id = str(entry["run_id"])
        parts = [Path(p) for p in entry["parts"]]
        loaded = table.load_table(None)
        if table.committed_run(loaded, run_id) is not None:
            return
        published = table._publish_files(parts, run_id)
        try:
            table._append(loaded, published, run_id)
        except BaseException as exc:
            table._after_failed_append(published, run_id, exc)
            raise

    def landed(self, entry: dict[str, Any]) -> bool:
        table = self.table
        return table.committed_run(table.load_table(None), str(entry["run_id"])) is not None

    def published(self, entry: dict[str, Any]) -> str:
        return f"appended run {entry['run_id']} to {self.target_name} ({len(entry['parts'])} files)"
