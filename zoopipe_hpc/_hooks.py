"""Running a pipe's hooks: their order, their lifecycle, and the errors they raise.

A :class:`HookChain` holds a pipe's pre- and post-validation hooks in priority order (stable:
hooks of the same priority keep the order they were given in). Every call into user code goes
through :func:`_call`, so that whatever a hook raises becomes a
:class:`~zoopipe_hpc.errors.HookError` naming the hook and the stage.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import pyarrow as pa

from .errors import ConfigurationError, HookError
from .hooks import BaseArrowHook, BaseHook, EntryStatus, EntryTypedDict, HookStore
from .validation._arrow import rows_to_table

__all__: list[str] = []

Hook = BaseHook | BaseArrowHook
_T = TypeVar("_T")

PRE = "pre_validation"
POST = "post_validation"


def checked_hooks(hooks: Sequence[Any] | None, name: str) -> list[Hook]:
    """``hooks`` as a list, refusing anything that is not a hook."""
    if hooks is None:
        return []
    if isinstance(hooks, BaseHook | BaseArrowHook) or not isinstance(hooks, Sequence):
        raise ConfigurationError(f"{name} must be a list of hooks, got {hooks!r}")
    found: list[Hook] = []
    for hook in hooks:
        if not isinstance(hook, BaseHook | BaseArrowHook):
            raise ConfigurationError(
                f"{name} must hold BaseHook or BaseArrowHook instances, got {hook!r}"
            )
        found.append(hook)
    return found


def _call(hook: Hook, stage: str, source: str | None, call: Callable[..., _T], *args: Any) -> _T:
    try:
        return call(*args)
    except Exception as exc:  # noqa: BLE001 - user code: named, then raised
        raise HookError(
            hook=type(hook).__name__,
            stage=stage,
            error_type=type(exc).__name__,
            error_message=str(exc),
            path=source,
        ) from exc


def _wrong_result(hook: Hook, stage: str, source: str, got: object, wanted: str) -> HookError:
    return HookError(
        hook=type(hook).__name__,
        stage=stage,
        error_type="TypeError",
        error_message=f"it returned {type(got).__name__}, not {wanted}",
        path=source,
    )


class HookChain:
    """A pipe's hooks for one run: set up once, run per batch, torn down once."""

    def __init__(self, pre: Sequence[Hook], post: Sequence[Hook]) -> None:
        self.pre = sorted(pre, key=lambda hook: hook.priority)
        self.post = sorted(post, key=lambda hook: hook.priority)
        #: True when no hook needs rows: the batch can stay a table from input to output.
        self.arrow_only = all(isinstance(h, BaseArrowHook) for h in (*self.pre, *self.post))
        self._set_up: list[Hook] = []

    # -- lifecycle --------------------------------------------------------------------------

    def setup(self, store: HookStore) -> None:
        """Set every hook up with the worker's ``store`` (pre-validation hooks first)."""
        for hook in (*self.pre, *self.post):
            _call(hook, "setup", None, hook.setup, store)
            self._set_up.append(hook)

    def teardown(self, store: HookStore) -> None:
        """Tear down each hook that was set up, once; raises the first failure after all ran."""
        hooks, self._set_up = self._set_up, []
        first: HookError | None = None
        for hook in hooks:
            try:
                _call(hook, "teardown", None, hook.teardown, store)
            except HookError as exc:
                first = first or exc
        if first is not None:
            raise first

    # -- Arrow batches ----------------------------------------------------------------------

    def run_table(self, stage: str, table: pa.Table, store: HookStore, source: str) -> pa.Table:
        """``table`` through the Arrow hooks of ``stage`` (the chain must be ``arrow_only``)."""
        for hook in self.pre if stage == PRE else self.post:
            if not isinstance(hook, BaseArrowHook):  # pragma: no cover - the pipe checks
                raise HookError(
                    hook=type(hook).__name__,
                    stage=stage,
                    error_type="TypeError",
                    error_message="a row hook cannot run on a table",
                    path=source,
                )
            table = self._table_hook(hook, stage, table, store, source)
        return table

    @staticmethod
    def _table_hook(
        hook: BaseArrowHook, stage: str, table: pa.Table, store: HookStore, source: str
    ) -> pa.Table:
        result = _call(hook, stage, source, hook.execute_table, table, store)
        if not isinstance(result, pa.Table):
            raise _wrong_result(hook, stage, source, result, "a pyarrow.Table")
        return result

    # -- row batches ------------------------------------------------------------------------

    def run_rows(
        self,
        stage: str,
        entries: list[EntryTypedDict],
        store: HookStore,
        source: str,
        schema: pa.Schema | None,
    ) -> list[EntryTypedDict]:
        """``entries`` through the hooks of ``stage``; Arrow hooks among them get the live
        entries' data as a table (``raw_data`` before validation, ``validated_data`` after)."""
        for hook in self.pre if stage == PRE else self.post:
            if isinstance(hook, BaseHook):
                result = _call(hook, stage, source, hook.execute, entries, store)
                if not isinstance(result, list):
                    raise _wrong_result(hook, stage, source, result, "a list of entries")
                entries = result
            else:
                entries = self._rows_through_table(hook, stage, entries, store, source, schema)
        return entries

    def _rows_through_table(
        self,
        hook: BaseArrowHook,
        stage: str,
        entries: list[EntryTypedDict],
        store: HookStore,
        source: str,
        schema: pa.Schema | None,
    ) -> list[EntryTypedDict]:
        live: list[EntryTypedDict] = []
        rows: list[dict[str, Any]] = []
        for entry in entries:
            data = entry["raw_data"] if stage == PRE else entry["validated_data"]
            if entry["status"] is not EntryStatus.FAILED and data is not None:
                live.append(entry)
                rows.append(data)
        table = pa.Table.from_pylist(rows) if stage == PRE else rows_to_table(rows, schema)
        changed = self._table_hook(hook, stage, table, store, source).to_pylist()
        if len(changed) == len(live):
            for entry, row in zip(live, changed, strict=True):
                if stage == PRE:
                    entry["raw_data"] = row
                else:
                    entry["validated_data"] = row
            return entries
        # Rows were filtered or added: the survivors are new entries without a position.
        live_ids = {id(e) for e in live}
        kept = [e for e in entries if id(e) not in live_ids]
        status = EntryStatus.PENDING if stage == PRE else EntryStatus.VALIDATED
        for row in changed:
            kept.append(
                {
                    "id": None,
                    "position": None,
                    "status": status,
                    "raw_data": row,
                    "validated_data": None if stage == PRE else row,
                    "errors": [],
                    "metadata": {"source": source, "line": None},
                }
            )
        return kept
