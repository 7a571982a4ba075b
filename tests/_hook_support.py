"""Hooks shared by the hook tests (importable by worker processes and compute nodes)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel

from zoopipe_hpc import BaseArrowHook, BaseHook, EntryStatus, EntryTypedDict, HookStore


class Tagged(BaseModel):
    """A user with the fields the hooks add: ``tag`` before validation, ``name`` upper after."""

    id: int
    name: str
    tag: str


class Journal(BaseHook):
    """Records each lifecycle call as a JSON line (pid, event, store) in ``path``."""

    def __init__(self, path: str | os.PathLike[str], label: str = "j", priority: int = 50) -> None:
        super().__init__(priority=priority)
        self.path = str(path)
        self.label = label

    def _note(self, event: str, store: HookStore, **extra: Any) -> None:
        line = {"pid": os.getpid(), "label": self.label, "event": event, "store": id(store)}
        line.update(extra)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")

    def setup(self, store: HookStore) -> None:
        store[f"setup_{self.label}"] = True
        self._note("setup", store)

    def execute(self, entries: list[EntryTypedDict], store: HookStore) -> list[EntryTypedDict]:
        self._note("execute", store, keys=sorted(store), rows=len(entries))
        store[f"seen_{self.label}"] = True
        return entries

    def teardown(self, store: HookStore) -> None:
        self._note("teardown", store, keys=sorted(store))


def journal(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


class AddTag(BaseHook):
    """Adds ``tag`` to each raw record; rejects the ids in ``reject``."""

    def __init__(self, reject: tuple[str, ...] = (), priority: int = 50) -> None:
        super().__init__(priority=priority)
        self.reject = reject

    def execute(self, entries: list[EntryTypedDict], store: HookStore) -> list[EntryTypedDict]:
        for entry in entries:
            entry["raw_data"]["tag"] = f"t{entry['raw_data']['id']}"
            if str(entry["raw_data"]["id"]) in self.reject:
                entry["status"] = EntryStatus.FAILED
                entry["errors"].append({"type": "rejected", "msg": "rejected by AddTag"})
        return entries


class UpperName(BaseHook):
    """Upper-cases ``name`` in the validated data."""

    def execute(self, entries: list[EntryTypedDict], store: HookStore) -> list[EntryTypedDict]:
        for entry in entries:
            data = entry["validated_data"]
            if entry["status"] is EntryStatus.VALIDATED and data is not None:
                data["name"] = data["name"].upper()
        return entries


class ArrowAddTag(BaseArrowHook):
    """What :class:`AddTag` does (without rejecting), in Arrow."""

    def execute_table(self, table: pa.Table, store: HookStore) -> pa.Table:
        tags = pc.binary_join_element_wise("t", pc.cast(table["id"], pa.string()), "")
        return table.append_column("tag", tags)


class ArrowUpperName(BaseArrowHook):
    """What :class:`UpperName` does, in Arrow."""

    def execute_table(self, table: pa.Table, store: HookStore) -> pa.Table:
        index = table.schema.get_field_index("name")
        return table.set_column(index, "name", pc.utf8_upper(table["name"]))


class Explode(BaseHook):
    """Raises on every batch."""

    def execute(self, entries: list[EntryTypedDict], store: HookStore) -> list[EntryTypedDict]:
        raise KeyError("no such key")
