"""Hooks: user code that transforms records before and after validation, under ZooPipe's names.

A row hook (:class:`BaseHook`) gets the batch's records as envelopes (:class:`EntryTypedDict`)
and returns them; it may change ``raw_data`` before validation, ``validated_data`` after it, or
mark an entry failed (``status = EntryStatus.FAILED`` with ``errors``) so it goes to the error
output. An Arrow hook (:class:`BaseArrowHook`) gets the batch as a ``pyarrow.Table`` and returns
one, so a vectorized transform never leaves Arrow and a pipe keeps its columnar fast path.

Lifecycle (as ZooPipe documents it): ``setup(store)`` once per worker before the first batch,
with that worker's store; ``execute`` once per batch in priority order (lower first), with a
fresh, empty store per batch shared by the hooks of that batch; ``teardown(store)`` once at the
end with the worker's store, also when the pipe fails. See ``docs/hooks.md``.
"""

from __future__ import annotations

import enum
from typing import Any, TypedDict

import pyarrow as pa

__all__ = [
    "BaseArrowHook",
    "BaseHook",
    "EntryStatus",
    "EntryTypedDict",
    "HookPriority",
    "HookStore",
]

#: Shared state of hooks: the worker's store in ``setup``/``teardown``, a batch's in ``execute``.
HookStore = dict[str, Any]


class EntryStatus(enum.Enum):
    """Where a record is in its life: read (``PENDING``), accepted (``VALIDATED``), rejected
    (``FAILED``, by validation or by a hook)."""

    PENDING = "pending"
    VALIDATED = "validated"
    FAILED = "failed"


class EntryTypedDict(TypedDict):
    """The envelope of one record as row hooks see it.

    ``id`` and ``position`` are the record's 0-based position in the pipe's input (its shard's,
    under ``parallelize_pipe``); ``raw_data`` is the record as read, ``validated_data`` what the
    model dumped (None before validation or when it failed), ``errors`` the reasons it failed
    (pydantic's error dicts, or what a hook put there), ``metadata`` free for hooks (``source``
    and ``line`` are set when known).
    """

    id: Any
    position: int | None
    status: EntryStatus
    raw_data: dict[str, Any]
    validated_data: dict[str, Any] | None
    errors: list[dict[str, Any]]
    metadata: dict[str, Any]


class HookPriority:
    """Usual priorities; a lower value runs earlier."""

    VERY_HIGH = 0
    HIGH = 25
    NORMAL = 50
    LOW = 75
    VERY_LOW = 100


class _Lifecycle:
    """What both kinds of hook share: a priority and the per-worker setup and teardown."""

    def __init__(self, priority: int = HookPriority.NORMAL) -> None:
        self.priority = int(priority)

    def setup(self, store: HookStore) -> None:
        """Called once per worker before its first batch, with the worker's store."""

    def teardown(self, store: HookStore) -> None:
        """Called once per worker after its last batch, also when the pipe failed."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(priority={self.priority})"


class BaseHook(_Lifecycle):
    """A hook that sees the records of a batch one envelope each.

    Subclasses override :meth:`execute` (and :meth:`setup`/:meth:`teardown` when they hold a
    resource). A hook travels to the workers with its pipe, so it must be picklable: open
    connections in ``setup``, not in ``__init__``.
    """

    def execute(self, entries: list[EntryTypedDict], store: HookStore) -> list[EntryTypedDict]:
        """Change the entries (in place or as a new list) and return them."""
        return entries


class BaseArrowHook(_Lifecycle):
    """A hook that sees a batch as one ``pyarrow.Table`` (not in ZooPipe).

    Before validation the table holds the records as read (the input's columns); after it, the
    accepted records in the output's columns (the model's fields). Return a table: columns may
    be added, replaced or removed; rows may be filtered, though before validation the error
    records of rows after a filter lose their line numbers.
    """

    def execute_table(self, table: pa.Table, store: HookStore) -> pa.Table:
        """Return the batch's table, changed."""
        return table
