"""A Pipe: read records, validate them, write the valid ones and keep the invalid ones.

This module is longer than most (about 470 lines) on purpose: it is the one place where a
pipe's counters change, and its two batch paths (row by row, and columnar with a row fallback)
share those counters, the chunking rule and the bookkeeping of invalid records under one lock;
split over modules they would have to reach into each other's state.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Protocol, Self

import psutil
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel

from ._hooks import POST, PRE, HookChain, checked_hooks
from ._model_import import resolve_model
from .adapters._read_ahead import reading
from .adapters.base import BaseInputAdapter, BaseOutputAdapter, InputBatch, OutputWriter
from .commit.staged import StagedFile, WorkerOutcome
from .errors import (
    ArgumentTypeError,
    ConfigurationError,
    HookError,
    PipeTimeoutError,
    SchemaError,
    StateError,
    ValidatorError,
)
from .hooks import BaseArrowHook, BaseHook, EntryStatus, EntryTypedDict, HookStore
from .report import PipeReport, PipeStatus
from .validation._arrow import ERROR_SCHEMA, rows_to_table, schema_for_model
from .validation._columnar import ColumnarValidator, columnar_enabled
from .validation._rows import RowValidator
from .validation.executors import BatchExecutor, SingleThreadExecutor

__all__ = ["Pipe", "ProgressSink"]

log = logging.getLogger(__name__)

#: How many invalid records are logged one by one when there is no error output.
_LOGGED_INVALID = 20


class ProgressSink(Protocol):
    """Where a running pipe publishes its counters (a progress record, for engines)."""

    def update(
        self, total_processed: int, success_count: int, error_count: int, *, force: bool = False
    ) -> None: ...


#: What ``run(on_report_update=...)`` calls with a snapshot of the report.
ReportCallback = Callable[[PipeReport], None]


class _Cancelled(Exception):
    pass


class Pipe:
    """Reads ``input_adapter``, validates each record against ``schema_model`` and writes it.

    Valid records go to ``output_adapter`` in input order; invalid ones go to
    ``error_output_adapter`` with the original record and pydantic's errors (without one, they
    are counted and logged, never written as valid). ``success_count + error_count ==
    total_processed`` at every moment. Outputs are staged and replace their targets only when
    the whole input was processed; a failure leaves the previous files untouched.

    With ``columnar=True`` (the default) a model whose fields are all of covered kinds is
    validated column by column with pyarrow compute, and only the rows that path cannot vouch
    for go through pydantic one by one; results are identical either way (see
    ``docs/columnar.md``). ``columnar=False``, or ``ZOOPIPE_HPC_COLUMNAR=0`` in the environment
    of the process that runs the pipe, validates every row through pydantic.

    ``pre_validation_hooks`` and ``post_validation_hooks`` transform records before and after
    validation (see :mod:`zoopipe_hpc.hooks` and ``docs/hooks.md``). A pipe whose hooks are all
    Arrow hooks keeps the columnar path; a row hook makes the pipe validate row by row.

    ZooPipe's parameters: ``logger`` receives the pipe's warnings (invalid records without an
    error output) and a background run's failure (default: the ``zoopipe_hpc.pipe`` logger,
    left unconfigured; pass ``get_logger()`` for ZooPipe's stdout lines);
    ``report_update_interval`` is how many validated batches pass between two calls of
    ``run(on_report_update=...)`` (0: only at the end). :attr:`report` itself is exact at every
    moment, whatever the interval.

    ``with Pipe(...) as pipe:`` starts the pipe in the background; leaving the block waits for
    it (as :class:`PipeManager` does), or, when the block raises, stops it (ABORTED, outputs
    discarded) and lets the exception through. A failure of the run stays in
    ``pipe.report`` (``status``, ``exception``) and is logged, as in ZooPipe.

    The first four parameters may also come in ZooPipe's positional order, ``Pipe(input, output,
    error_output, model)``: an output adapter in the third place is the error output. From the
    fifth on, name them.

    A Pipe is picklable (its hooks too): it can travel to another process or a compute node.
    """

    def __init__(
        self,
        input_adapter: BaseInputAdapter,
        output_adapter: BaseOutputAdapter,
        schema_model: type[BaseModel] | str | None = None,
        error_output_adapter: BaseOutputAdapter | None = None,
        executor: BatchExecutor | None = None,
        columnar: bool = True,
        pre_validation_hooks: Sequence[BaseHook | BaseArrowHook] | None = None,
        post_validation_hooks: Sequence[BaseHook | BaseArrowHook] | None = None,
        logger: logging.Logger | None = None,
        report_update_interval: int = 1,
    ) -> None:
        if isinstance(schema_model, BaseOutputAdapter) and not isinstance(
            error_output_adapter, BaseOutputAdapter
        ):
            # ZooPipe's positional order: (input, output, error output, model).
            schema_model, error_output_adapter = error_output_adapter, schema_model
        if isinstance(executor, (list, tuple)):
            raise ConfigurationError(
                "the fifth positional argument of Pipe is the executor; ZooPipe's positional "
                "order (pre_validation_hooks fifth) is followed only up to the model: name "
                "pre_validation_hooks=, post_validation_hooks=, logger= ... "
            )
        if not isinstance(input_adapter, BaseInputAdapter):
            raise ConfigurationError(
                f"input_adapter must be an input adapter, got {input_adapter!r}"
            )
        if not isinstance(output_adapter, BaseOutputAdapter):
            raise ConfigurationError(
                f"output_adapter must be an output adapter, got {output_adapter!r}"
            )
        if error_output_adapter is not None and not isinstance(
            error_output_adapter, BaseOutputAdapter
        ):
            raise ConfigurationError(
                f"error_output_adapter must be an output adapter, got {error_output_adapter!r}"
            )
        if isinstance(schema_model, str):
            resolve_model(schema_model)  # fail early, on the submitting side
        elif schema_model is not None and not (
            isinstance(schema_model, type) and issubclass(schema_model, BaseModel)
        ):
            raise SchemaError(
                f"schema_model must be a pydantic BaseModel subclass or 'module:Name', "
                f"got {schema_model!r}"
            )
        self.input_adapter = input_adapter
        self.output_adapter = output_adapter
        self.schema_model = schema_model
        self.error_output_adapter = error_output_adapter
        self.executor = executor or SingleThreadExecutor()
        self.columnar = bool(columnar)
        self.pre_validation_hooks = checked_hooks(pre_validation_hooks, "pre_validation_hooks")
        self.post_validation_hooks = checked_hooks(post_validation_hooks, "post_validation_hooks")
        self._set_zoopipe_options(logger, report_update_interval)
        self.pipe_index = 0
        self._init_runtime()

    def _set_zoopipe_options(self, logger: logging.Logger | None, interval: int) -> None:
        """Check and keep ZooPipe's ``logger`` and ``report_update_interval``."""
        if logger is not None and not isinstance(logger, logging.Logger):
            raise ArgumentTypeError(f"logger must be a logging.Logger, got {logger!r}")
        if isinstance(interval, bool) or not isinstance(interval, int):
            raise ArgumentTypeError(
                f"report_update_interval must be an integer (batches), got {interval!r}"
            )
        if interval < 0:
            raise ConfigurationError(
                f"report_update_interval must be 0 (only at the end) or more, got {interval}"
            )
        self.logger = logger if logger is not None else log
        self.report_update_interval = interval

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is not None:
            self.shutdown()
        else:
            self.wait()

    def _init_runtime(self) -> None:
        self._report = PipeReport(pipe_index=self.pipe_index)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._exception: BaseException | None = None
        #: The files the last run staged (role, path, rows, size, checksum).
        self.staged_files: list[StagedFile] = []

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for key in ("_report", "_lock", "_stop", "_thread", "_exception", "staged_files"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("columnar", True)
        state.setdefault("pre_validation_hooks", [])
        state.setdefault("post_validation_hooks", [])
        state.setdefault("logger", log)
        state.setdefault("report_update_interval", 1)
        self.__dict__.update(state)
        self._init_runtime()

    def __repr__(self) -> str:
        return (
            f"Pipe({self.input_adapter!r} -> {self.output_adapter!r}, "
            f"schema={getattr(self.schema_model, '__name__', self.schema_model)!r})"
        )

    def with_outputs(
        self, output_adapter: BaseOutputAdapter, error_output_adapter: BaseOutputAdapter | None
    ) -> Pipe:
        """This pipe, writing to other outputs (a run's plan gives it its staged parts)."""
        clone = Pipe(
            self.input_adapter,
            output_adapter,
            self.schema_model,
            error_output_adapter,
            self.executor,
            columnar=self.columnar,
            pre_validation_hooks=self.pre_validation_hooks,
            post_validation_hooks=self.post_validation_hooks,
        )
        clone.pipe_index = self.pipe_index
        clone._set_zoopipe_options(self.logger, self.report_update_interval)
        return clone

    def for_attempt(self, attempt_id: str) -> Pipe:
        """This pipe, writing its shard parts under ``attempt_id``."""
        errors = self.error_output_adapter
        return self.with_outputs(
            self.output_adapter.for_attempt(attempt_id),
            errors.for_attempt(attempt_id) if errors is not None else None,
        )

    def outcome(self, attempt_id: str = "") -> WorkerOutcome:
        """What the last successful run staged, as a worker reports it to the commit."""
        report = self._report
        return WorkerOutcome(
            self.pipe_index,
            attempt_id,
            report.total_processed,
            report.success_count,
            report.error_count,
            tuple(self.staged_files),
        )

    # -- live state -------------------------------------------------------------------------

    @property
    def report(self) -> PipeReport:
        """A snapshot of this pipe's counters (safe to read from any thread)."""
        with self._lock:
            report = self._report.copy()
        report.is_alive = self._thread is not None and self._thread.is_alive()
        return report

    @property
    def exception(self) -> BaseException | None:
        """What made the last run fail, if it failed."""
        return self._exception

    # -- running in the background ----------------------------------------------------------

    def start(self, wait: bool = False) -> None:
        """Run in a background thread of this process; see :meth:`wait` and :meth:`shutdown`.

        ``wait=True`` (ZooPipe's parameter) also waits for the end.
        """
        self._start_thread(None)
        if wait:
            self.wait()

    def _start_thread(self, progress: ProgressSink | None) -> None:
        if self._thread is not None and self._thread.is_alive():
            raise StateError("this pipe is already running")
        self._stop.clear()
        with self._lock:  # the run's report replaces it at once; until then: not finished
            self._report = PipeReport(pipe_index=self.pipe_index, status=PipeStatus.RUNNING)
        self._thread = threading.Thread(
            target=self._run_quietly, args=(progress,), name="zoopipe-pipe", daemon=True
        )
        self._thread.start()

    def _run_quietly(self, progress: ProgressSink | None) -> None:
        try:
            self._run_here(progress)
        except _Cancelled:
            pass
        except BaseException as exc:  # noqa: BLE001 - recorded in the report and in self.exception
            self.logger.error("pipe run failed: %s: %s", type(exc).__name__, exc)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a background run; True if it finished (successfully or not)."""
        if self._thread is None:
            return self._report.is_finished
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def shutdown(self, timeout: float = 5.0) -> None:
        """Ask a background run to stop after the current batch; its outputs are discarded."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    # -- the work ---------------------------------------------------------------------------

    def run(
        self,
        wait: bool = True,
        timeout: float | None = None,
        on_report_update: ReportCallback | None = None,
        *,
        progress: ProgressSink | None = None,
    ) -> PipeReport:
        """Process the whole input and commit the outputs; returns the final report.

        ZooPipe's parameters: ``on_report_update`` is called with a snapshot of the report
        every ``report_update_interval`` batches and at the end (ZooPipe prints a progress line
        by default; here nothing is printed unless a callback is given). ``wait=False`` starts
        the run in the background (as :meth:`start`) and returns the report at once.
        ``timeout`` runs in the background and waits that many seconds: past them, the run is
        stopped (ABORTED, outputs discarded) and :class:`~zoopipe_hpc.errors.PipeTimeoutError`
        raised. Otherwise the run happens in this thread.

        Unlike ZooPipe's ``run()``, which returns True once finished, this returns the
        :class:`PipeReport` and raises what made the run fail, after discarding this run's
        staged outputs. A pipe planned into a run (its outputs are staged parts) only stages its
        files; the run's transaction publishes them. Any other pipe is a run of its own: it
        plans a one-pipe transaction, stages, and commits it.
        """
        sink = progress
        if on_report_update is not None:
            sink = _Reporting(self, on_report_update, progress)
        if wait and timeout is None:
            return self._run_here(sink)
        self._start_thread(sink)
        if not wait:
            return self.report
        if not self.wait(timeout):
            self.shutdown()
            raise PipeTimeoutError(f"the pipe did not finish within {timeout} s: stopped")
        report = self.report
        if self._exception is not None:
            raise self._exception
        return report

    def _run_here(self, progress: ProgressSink | None) -> PipeReport:
        """One run in this thread: see :meth:`run`."""
        if self.output_adapter.is_part:
            return self._run_staged(progress, self.output_adapter, self.error_output_adapter)
        from .plan import RunLayout

        plan = RunLayout.of_pipes([self]).plan()
        transaction = plan.transaction
        try:
            transaction.begin()
        except BaseException as exc:
            self._record_failure(exc)
            raise
        planned = plan.pipes[0]
        try:
            report = self._run_staged(
                progress, planned.output_adapter, planned.error_output_adapter
            )
        except BaseException:
            transaction.rollback("the pipe failed")
            raise
        try:
            transaction.commit({0: self.outcome()})
        except BaseException as exc:
            self._record_failure(exc)
            raise
        return report

    def _record_failure(self, exc: BaseException) -> None:
        self._exception = exc
        with self._lock:
            self._report.status = (
                PipeStatus.ABORTED if isinstance(exc, _Cancelled) else PipeStatus.FAILED
            )
            self._report.message = f"{type(exc).__name__}: {exc}"
            self._report.exception = None if isinstance(exc, _Cancelled) else exc
            self._report.end_timestamp = time.time()

    def _run_staged(
        self,
        progress: ProgressSink | None,
        output_adapter: BaseOutputAdapter,
        error_output_adapter: BaseOutputAdapter | None,
    ) -> PipeReport:
        """Process the whole input into staged parts; ``staged_files`` lists them after."""
        self.staged_files = []
        with self._lock:
            self._report = PipeReport(
                pipe_index=self.pipe_index, status=PipeStatus.RUNNING, start_time=time.time()
            )
        self._exception = None
        self._chunk = min(8, self.executor.batch_size)
        self._position = 0
        writers: list[OutputWriter] = []
        hooks = (
            HookChain(self.pre_validation_hooks, self.post_validation_hooks)
            if self.pre_validation_hooks or self.post_validation_hooks
            else None
        )
        store: HookStore = {}  # the worker's store: setup and teardown
        try:
            model = resolve_model(self.schema_model)
            validator = RowValidator(model)
            columnar = (
                ColumnarValidator.compile(model)
                if model is not None and self.columnar and columnar_enabled()
                else None
            )
            self.input_adapter.check()
            schema = schema_for_model(model) if model is not None else None
            output = output_adapter.open(schema)
            writers.append(output)
            errors = error_output_adapter.open(ERROR_SCHEMA) if error_output_adapter else None
            if errors is not None:
                writers.append(errors)
            if hooks is not None:
                hooks.setup(store)
            with reading(self.input_adapter) as batches:
                for batch in batches:
                    if self._stop.is_set():
                        raise _Cancelled("stopped by shutdown()")
                    if hooks is not None and not (
                        hooks.arrow_only and columnar is not None and batch.table is not None
                    ):
                        self._process_hooked(
                            batch, validator, output, errors, progress, hooks, schema
                        )
                    elif columnar is not None and batch.table is not None:
                        self._process_columnar(
                            batch, columnar, validator, output, errors, progress, hooks
                        )
                    else:
                        self._process(batch, validator, output, errors, progress)
            if hooks is not None:
                hooks.teardown(store)
            staged = [("output", output.commit())]
            writers.remove(output)
            if errors is not None:
                staged.append(("errors", errors.commit()))
                writers.remove(errors)
            with self._lock:
                counts = {"output": self._report.success_count, "errors": self._report.error_count}
            self.staged_files = [StagedFile.of(role, path, counts[role]) for role, path in staged]
        except BaseException as exc:
            for writer in writers:
                writer.abort()
            if hooks is not None:
                try:
                    hooks.teardown(store)
                except HookError as late:  # the first failure is the one reported
                    log.warning("after the pipe failed: %s", late)
            self._record_failure(exc)
            raise
        finally:
            self.executor.close()
        with self._lock:
            self._report.status = PipeStatus.COMPLETED
            self._report.end_timestamp = time.time()
            self._report.ram_bytes = _rss()
            report = self._report.copy()
        if progress is not None:
            progress.update(
                report.total_processed, report.success_count, report.error_count, force=True
            )
        return report

    def _process(
        self,
        batch: InputBatch,
        validator: RowValidator,
        output: OutputWriter,
        errors: OutputWriter | None,
        progress: ProgressSink | None,
    ) -> None:
        """Validate and write one input batch, chunk by chunk, publishing progress after each.

        Chunks start small and double while they are quick (up to the executor's batch size),
        and halve when one takes over a second, so progress moves even when a model is slow.
        """
        records = batch.records
        malformed = sorted(batch.malformed, key=_line_key)
        start = 0
        while start < len(records) or malformed:
            chunk = records[start : start + self._chunk]
            began = time.perf_counter()
            try:
                result = self.executor.validate(validator, chunk)
            except ValidatorError as exc:  # name the row that raised
                line = batch.locate(start + (exc.index or 0))
                raise exc.at(batch.source, line) from exc.__cause__
            elapsed = time.perf_counter() - began
            end = start + len(chunk)
            output.write(result.valid)
            bad = [
                {
                    "source": batch.source,
                    "line": batch.locate(start + index),
                    "record": chunk[index],
                    "errors": problems,
                }
                for index, problems in result.invalid
            ]
            if malformed:
                # Malformed input goes out with the chunk it sits in, keeping the input order.
                boundary = batch.locate(end) if end < len(records) else None
                take = len(malformed)
                if boundary is not None:
                    take = sum(1 for item in malformed if _line_key(item) < boundary)
                if take:
                    bad = sorted(bad + malformed[:take], key=_line_key)
                    malformed = malformed[take:]
            self._account(len(result.valid), bad, errors, progress)
            if elapsed > 1.0:
                self._chunk = max(1, self._chunk // 2)
            elif elapsed < 0.25:
                self._chunk = min(self.executor.batch_size, self._chunk * 2)
            start = end

    def _process_columnar(
        self,
        batch: InputBatch,
        columnar: ColumnarValidator,
        validator: RowValidator,
        output: OutputWriter,
        errors: OutputWriter | None,
        progress: ProgressSink | None,
        hooks: HookChain | None = None,
    ) -> None:
        """Validate one batch column by column; rows the fast path cannot vouch for go to pydantic.

        The output keeps the input order: vouched rows and rows pydantic accepted are put back
        in place before writing; invalid rows come only from pydantic, so their error records
        are exactly those of the row path. ``hooks`` (Arrow hooks only) change the batch's
        table before validation and the accepted table after it.
        """
        table = batch.table
        if table is None:  # pragma: no cover - the caller checks
            raise StateError("the columnar path needs a batch with a table")
        locate = batch.locate
        store: HookStore = {}
        if hooks is not None:
            read = table.num_rows
            table = hooks.run_table(PRE, table, store, batch.source)
            if table.num_rows != read:  # rows were filtered: lines are no longer known
                locate = _no_line
        accepted, ok = columnar(table)
        fallback = pc.indices_nonzero(pc.invert(ok))
        valid_count = accepted.num_rows
        bad: list[dict[str, Any]] = []
        valid_rows: list[dict[str, Any]] = []
        order: pa.Array | None = None
        if len(fallback):
            rows = table.take(fallback).to_pylist()
            where = fallback.to_pylist()
            try:
                result = self.executor.validate(validator, rows)
            except ValidatorError as exc:  # name the row that raised
                raise exc.at(batch.source, locate(where[exc.index or 0])) from exc.__cause__
            invalid = {index for index, _ in result.invalid}
            # Without an error output, records past the few that are logged are dropped:
            # their lines (a read of the input) are not looked up.
            located = len(result.invalid)
            if errors is None and not batch.malformed:
                located = max(0, _LOGGED_INVALID - self._report.error_count)
            bad = [
                {
                    "source": batch.source,
                    "line": locate(where[index]) if count < located else None,
                    "record": rows[index],
                    "errors": problems,
                }
                for count, (index, problems) in enumerate(result.invalid)
            ]
            valid_rows = result.valid
            if valid_rows:
                placed = [p for i, p in enumerate(where) if i not in invalid]
                positions = pa.concat_arrays(
                    [pc.indices_nonzero(ok), pa.array(placed, pa.uint64())]
                )
                order = pc.sort_indices(positions)
                valid_count += len(valid_rows)
        if hooks is not None and hooks.post:
            accepted = self._post_table(hooks, accepted, valid_rows, order, store, batch.source)
            valid_count = accepted.num_rows
            valid_rows, order = [], None
        output.write_table(accepted, valid_rows, order)
        malformed = sorted(batch.malformed, key=_line_key)
        if malformed:
            bad = sorted(bad + malformed, key=_line_key)
        self._account(valid_count, bad, errors, progress)

    @staticmethod
    def _post_table(
        hooks: HookChain,
        accepted: pa.Table,
        rows: list[dict[str, Any]],
        order: pa.Array | None,
        store: HookStore,
        source: str,
    ) -> pa.Table:
        """The batch's accepted records as one table in input order, through the post hooks,
        in the output's columns."""
        schema = accepted.schema
        if rows:
            accepted = pa.concat_tables([accepted, rows_to_table(rows, schema)])
            if order is not None:
                accepted = accepted.take(order)
        changed = hooks.run_table(POST, accepted, store, source)
        missing = [name for name in schema.names if name not in changed.column_names]
        if missing:
            raise HookError(
                hook=type(hooks.post[-1]).__name__,
                stage=POST,
                error_type="SchemaError",
                error_message=f"the table lost the output columns {missing}",
                path=source,
            )
        return changed.select(schema.names)

    def _process_hooked(
        self,
        batch: InputBatch,
        validator: RowValidator,
        output: OutputWriter,
        errors: OutputWriter | None,
        progress: ProgressSink | None,
        hooks: HookChain,
        schema: pa.Schema | None,
    ) -> None:
        """One batch through the hooks and row validation, in slices of the executor's batch
        size; each slice is a hook batch (a fresh store) and is counted once written."""
        records = batch.records
        malformed = sorted(batch.malformed, key=_line_key)
        if not records:  # nothing for the hooks: only input that is not a record
            if malformed:
                self._account(0, malformed, errors, progress)
            return
        size = self.executor.batch_size
        for start in range(0, len(records), size):
            chunk = records[start : start + size]
            store: HookStore = {}
            first = self._position
            entries: list[EntryTypedDict] = [
                {
                    "id": first + offset,
                    "position": first + offset,
                    "status": EntryStatus.PENDING,
                    "raw_data": row,
                    "validated_data": None,
                    "errors": [],
                    "metadata": {"source": batch.source, "line": batch.locate(start + offset)},
                }
                for offset, row in enumerate(chunk)
            ]
            self._position += len(chunk)
            entries = hooks.run_rows(PRE, entries, store, batch.source, schema)
            pending = [e for e in entries if e["status"] is not EntryStatus.FAILED]
            try:
                result = self.executor.validate(validator, [e["raw_data"] for e in pending])
            except ValidatorError as exc:  # name the row that raised
                line = pending[exc.index or 0]["metadata"].get("line")
                raise exc.at(batch.source, line) from exc.__cause__
            rejected = dict(result.invalid)
            accepted = iter(result.valid)
            for index, entry in enumerate(pending):
                problems = rejected.get(index)
                if problems is None:
                    entry["validated_data"] = next(accepted)
                    entry["status"] = EntryStatus.VALIDATED
                else:
                    entry["status"] = EntryStatus.FAILED
                    entry["errors"].extend(problems)
            entries = hooks.run_rows(POST, entries, store, batch.source, schema)
            good: list[dict[str, Any]] = []
            bad: list[dict[str, Any]] = []
            for entry in entries:
                if entry["status"] is EntryStatus.FAILED:
                    meta = entry["metadata"]
                    bad.append(
                        {
                            "source": meta.get("source", batch.source),
                            "line": meta.get("line"),
                            "record": entry["raw_data"],
                            "errors": entry["errors"],
                        }
                    )
                else:
                    data = entry["validated_data"]
                    good.append(data if data is not None else entry["raw_data"])
            if start + size >= len(records) and malformed:
                bad = sorted(bad + malformed, key=_line_key)
                malformed = []
            output.write(good)
            self._account(len(good), bad, errors, progress)

    def _account(
        self,
        valid_count: int,
        bad: Sequence[dict[str, Any]],
        errors: OutputWriter | None,
        progress: ProgressSink | None,
    ) -> None:
        """Keep the invalid records of a chunk, count the chunk, and publish the counters."""
        if bad:
            self._keep_invalid(bad, errors)
        with self._lock:
            r = self._report
            r.success_count += valid_count
            r.error_count += len(bad)
            r.total_processed = r.success_count + r.error_count
            r.ram_bytes = _rss()
            counts = (r.total_processed, r.success_count, r.error_count)
        if progress is not None:
            progress.update(*counts)

    def _keep_invalid(self, bad: Sequence[dict[str, Any]], errors: OutputWriter | None) -> None:
        if errors is not None:
            errors.write(bad)
            return
        already = self._report.error_count
        for offset, item in enumerate(bad):
            if already + offset < _LOGGED_INVALID:
                where = f"{item['source']}:{item['line']}" if item["line"] else item["source"]
                self.logger.warning(
                    "invalid record at %s (no error output): %s", where, item["errors"]
                )


class _Reporting:
    """The progress sink of ``run(on_report_update=...)``: passes every update on to the
    engine's sink, if any, and calls the callback every ``report_update_interval`` batches and
    at the end."""

    def __init__(self, pipe: Pipe, callback: ReportCallback, inner: ProgressSink | None) -> None:
        self._pipe = pipe
        self._callback = callback
        self._inner = inner
        self._batches = 0

    def update(
        self, total_processed: int, success_count: int, error_count: int, *, force: bool = False
    ) -> None:
        if self._inner is not None:
            self._inner.update(total_processed, success_count, error_count, force=force)
        self._batches += 1
        every = self._pipe.report_update_interval
        if force or (every > 0 and self._batches % every == 0):
            self._callback(self._pipe.report)


def _no_line(index: int) -> int | None:
    return None


def _line_key(item: dict[str, Any]) -> int:
    line = item.get("line")
    return line if isinstance(line, int) else 0


_PROCESS: psutil.Process | None = None


def _rss() -> int:
    global _PROCESS
    if _PROCESS is None or _PROCESS.pid != os.getpid():
        _PROCESS = psutil.Process()
    try:
        return int(_PROCESS.memory_info().rss)
    except psutil.Error:
        return 0
