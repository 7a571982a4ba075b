"""The commit strategy of an in-process output (PyGeneratorOutputAdapter), private.

The adapter's target is the caller's process, not a file: like a catalog it is published
before the decision (``external``), by handing the staged records to the adapter, and a run
that is rolled back tells the adapter so that a waiting reader is not left waiting.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .staged import StagedFile
from .strategies import CommitStrategy

__all__ = ["PythonStrategy"]


class PythonStrategy(CommitStrategy):
    name = "python"
    external = True

    def begin(self) -> None:
        self.adapter._begin()  # type: ignore[attr-defined]

    def prepare(self, files: Sequence[StagedFile]) -> dict[str, Any]:
        return {
            "kind": self.name,
            "target": str(self.staging.target),
            "files": [str(f.path) for f in files],
        }

    def publish(self, entry: dict[str, Any]) -> None:
        self.adapter._deliver(entry["files"], entry)  # type: ignore[attr-defined]

    def landed(self, entry: dict[str, Any]) -> bool:
        return bool(self.adapter._landed(entry))  # type: ignore[attr-defined]

    def rolled_back(self, reason: str) -> None:
        self.adapter._rolled_back(reason)  # type: ignore[attr-defined]

    def published(self, entry: dict[str, Any]) -> str:
        return f"handed the records of {self.parts} part(s) to {self.adapter.describe()}"
