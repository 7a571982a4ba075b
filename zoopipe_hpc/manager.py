"""PipeManager: run many pipes, or one pipe split into shards, through an engine."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Self

from ._deadline import Deadline
from .adapters.base import BaseInputAdapter, check_workers
from .coordinators.base import BaseCoordinator, CompositeCoordinator
from .coordinators.file_merge import FileMergeCoordinator
from .coordinators.iceberg import IcebergCoordinator
from .engines.base import BaseEngine, WorkerResult
from .engines.multiprocess import MultiProcessEngine
from .errors import (
    CommitError,
    ConfigurationError,
    ShardFailedError,
    StateError,
    ZoopipeHPCError,
)
from .pipe import Pipe
from .plan import RunLayout, RunPlan
from .report import PipeReport
from .validation.executors import BatchExecutor

if TYPE_CHECKING:
    from .display import ProgressDisplay

__all__ = ["PipeManager", "SHARD_LIMIT"]

log = logging.getLogger(__name__)
#: How many failed shards the error of a failed run names (all of them are in its ``failures``).
_LISTED_FAILURES = 10

ReportCallback = Callable[[PipeReport], None]


class PipeManager:
    """Runs ``pipes`` through ``engine`` (default :class:`MultiProcessEngine`) with lifecycle hooks.

    Every run is one transaction: the workers only stage their outputs, and the manager
    commits every target of every pipe together once all pipes succeeded, or none of them.
    ``run()`` returns True when everything was committed; it returns False when a pipe failed,
    the run timed out or was cancelled, or the commit failed: every target is then as it was,
    and the reasons are in :attr:`error` and in each failed pipe's report.
    """

    def __init__(
        self,
        pipes: Sequence[Pipe],
        engine: BaseEngine | None = None,
        coordinator: BaseCoordinator | None = None,
    ) -> None:
        pipes = list(pipes)
        if not pipes:
            raise ConfigurationError("PipeManager needs at least one pipe")
        for index, pipe in enumerate(pipes):
            if not isinstance(pipe, Pipe):
                raise ConfigurationError(f"pipes[{index}] is not a Pipe: {pipe!r}")
            pipe.pipe_index = index
        self._init(RunLayout.of_pipes(pipes), engine, coordinator, None, None)

    def _init(
        self,
        layout: RunLayout,
        engine: BaseEngine | None,
        coordinator: BaseCoordinator | None,
        run_id: str | None,
        job_dir: str | os.PathLike[str] | None,
    ) -> None:
        self.layout = layout
        layout.plan(run_id, job_dir)  # refuses colliding targets now, not at start()
        self._pipes = layout.pipes
        self.engine = engine if engine is not None else MultiProcessEngine()
        where = f"the workers of {type(self.engine).__name__} (other processes)"
        for pipe in self._pipes:
            for adapter in (pipe.input_adapter, pipe.output_adapter, pipe.error_output_adapter):
                if adapter is not None:
                    adapter.check_travel(where)
        self.user_coordinator = coordinator
        self.coordinator: BaseCoordinator = CompositeCoordinator(
            [coordinator] if coordinator is not None else []
        )
        self._run_id = run_id
        self._job_dir = job_dir
        #: The plan of the current (or last) run: the pipes the workers run, the transaction.
        self.plan: RunPlan | None = None
        self._started = False
        self._outcome: bool | None = None
        self.error: ZoopipeHPCError | None = None

    # -- construction -----------------------------------------------------------------------

    @classmethod
    def parallelize_pipe(
        cls,
        pipe: Pipe,
        workers: int,
        merge: bool = True,
        executor: BatchExecutor | None = None,
        engine: BaseEngine | None = None,
        coordinator: BaseCoordinator | None = None,
        *,
        run_id: str | None = None,
        job_dir: str | os.PathLike[str] | None = None,
    ) -> PipeManager:
        """Split ``pipe`` into ``workers`` shards, one pipe each.

        With ``merge=True`` the shards write parts of each target and the run's commit merges
        them into the target (one file, or one Iceberg snapshot). With ``merge=False`` each
        shard writes its own ``<name>.part-NNNNN<suffix>`` next to the target; all of them are
        published together too. ``coordinator`` adds hooks of your own. ``run_id`` and
        ``job_dir`` are for durable jobs: the staging folders' run id, and the job directory
        that owns them (they are kept while that job is not over, whoever started it).
        """
        layout = cls.shard_layout(pipe, workers, merge, executor, coordinator)
        manager = cls.__new__(cls)
        manager._init(layout, engine, coordinator, run_id, job_dir)
        return manager

    @staticmethod
    def shard_layout(
        pipe: Pipe,
        workers: int,
        merge: bool = True,
        executor: BatchExecutor | None = None,
        coordinator: BaseCoordinator | None = None,
    ) -> RunLayout:
        """The layout of ``parallelize_pipe``: the shards and how their outputs are committed.

        The input is split into ``workers`` shards; above 64, into no more than it can fill
        (its ``max_shards``, but 64 at least; a warning says so). More than
        :data:`SHARD_LIMIT` is refused.
        """
        helper = coordinator or BaseCoordinator()
        count = _shard_count(pipe.input_adapter, workers)
        shards = helper.prepare_shards(pipe.input_adapter, count)
        if len(shards) != count:
            raise ConfigurationError(
                f"{type(helper).__name__}.prepare_shards returned {len(shards)} shards "
                f"when asked for {count}"
            )
        pipes = []
        for index, shard in enumerate(shards):
            part = Pipe(
                input_adapter=shard,
                output_adapter=pipe.output_adapter,
                schema_model=pipe.schema_model,
                error_output_adapter=pipe.error_output_adapter,
                executor=executor or pipe.executor,
                columnar=pipe.columnar,
                pre_validation_hooks=pipe.pre_validation_hooks,
                post_validation_hooks=pipe.post_validation_hooks,
            )
            part.pipe_index = index
            pipes.append(part)
        return RunLayout.sharded(pipe, pipes, merge)

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Plan the run, begin its transaction, run the coordinators' ``on_start`` and launch
        every pipe. Returns at once."""
        if self._started and self._outcome is None:
            raise StateError("this PipeManager is already running")
        plan = self.layout.plan(self._run_id, self._job_dir)
        self.plan = plan
        self.coordinator = CompositeCoordinator(
            [
                *([self.user_coordinator] if self.user_coordinator is not None else []),
                _commit_coordinator(plan),
            ]
        )
        self._started = True
        self._outcome = None
        self.error = None
        try:
            self.coordinator.on_start(self)
            self.engine.start(plan.pipes)
        except BaseException as exc:
            self._fail(exc)
            raise

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for every pipe, then commit or roll back. False if ``timeout`` expired first."""
        if not self._started:
            raise StateError("start() the manager before waiting on it")
        if not self.engine.wait(timeout):
            return False
        self._finalize(merge=True)
        return True

    def run(
        self,
        wait: bool = True,
        merge: bool = True,
        timeout: float | None = None,
        on_report_update: ReportCallback | None = None,
        progress: bool | None = None,
    ) -> bool:
        """Start (if needed), wait, then commit or roll back; True only if everything committed.

        ``timeout``: past it, the pipes are stopped and everything is rolled back (returns
        False). ``merge=False`` skips the coordinators' ``on_finish`` (the parts stay staged).
        ``on_report_update`` is called with the aggregate report while waiting.
        ``progress``: ``None`` (default) shows a progress widget in a Jupyter notebook and
        nothing elsewhere; ``True`` also shows a live bar on a terminal's stderr; ``False``
        shows nothing.
        """
        deadline = Deadline(timeout)  # starting counts: it can take long with many pipes
        if not self._started or self._outcome is not None:
            self.start()
        if not wait:
            return True
        display = _progress_display(progress)
        callback = on_report_update
        if display is not None:

            def callback(report: PipeReport) -> None:
                display.update(report, self.pipe_reports)
                if on_report_update is not None:
                    on_report_update(report)

        try:
            finished = self._wait_with_updates(deadline.remaining(), callback)
        except KeyboardInterrupt:
            # Ctrl-C on a login node or in a notebook: stop the workers (scancel on Slurm)
            # and roll back before giving control back.
            log.warning("interrupted: stopping the pipes and rolling back")
            self.shutdown()
            raise
        finally:
            if display is not None:
                display.close(self.report)
        if not finished:
            self.engine.shutdown()
            self._fail(ShardFailedError(f"timed out after {timeout} s", failures={}))
            return False
        self._finalize(merge)
        return bool(self._outcome)

    def _wait_with_updates(self, timeout: float | None, callback: ReportCallback | None) -> bool:
        if callback is None:
            return self.engine.wait(timeout)
        deadline = Deadline(timeout)
        while True:
            done = self.engine.wait(deadline.step(0.5))
            callback(self.report)
            if done:
                return True
            if deadline.expired:
                return False

    def _finalize(self, merge: bool) -> None:
        if self._outcome is not None:
            return
        results = self.engine.results()
        failures = {
            r.pipe_index: r.message or r.status.value
            for r in results
            if not r.succeeded or r.outcome is None
        }
        if failures:
            listed = sorted(failures.items())[:_LISTED_FAILURES]
            details = "; ".join(f"shard {i}: {m}" for i, m in listed)
            if len(failures) > len(listed):
                details += (
                    f"; and {len(failures) - len(listed)} more "
                    "(every one in manager.pipe_reports and in the error's failures)"
                )
            self._fail(
                ShardFailedError(
                    f"{len(failures)} of {len(results)} pipes failed, nothing was committed: "
                    f"{details}",
                    failures=failures,
                )
            )
            return
        if not merge:
            self._outcome = True
            return
        try:
            # A coordinator that raises has every coordinator's on_error called (the run's
            # transaction rolls back there, once) before the error reaches this point.
            self.coordinator.on_finish(self, results)
        except BaseException as exc:
            self._outcome = False
            if not isinstance(exc, Exception):
                raise
            self.error = (
                exc
                if isinstance(exc, ZoopipeHPCError)
                else CommitError(f"commit failed: {type(exc).__name__}: {exc}", cause=repr(exc))
            )
            log.error("commit failed: %s", self.error)
            return
        self._outcome = True

    def _fail(self, error: BaseException) -> None:
        self._outcome = False
        if isinstance(error, ZoopipeHPCError):
            self.error = error
        elif isinstance(error, Exception):
            self.error = ShardFailedError(
                f"run failed: {type(error).__name__}: {error}", failures={}
            )
        log.error("run failed: %s", error)
        self._roll_back(error)

    def _roll_back(self, error: BaseException) -> None:
        try:
            self.coordinator.on_error(self, error)
        except Exception:  # noqa: BLE001 - reported, the original failure matters more
            log.exception("rollback after %s failed", error)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop every running pipe and roll back whatever they staged."""
        if not self._started:
            return
        if self._outcome is None:
            self.engine.shutdown(timeout)
            self._fail(ShardFailedError("cancelled by shutdown()", failures={}))
        else:
            self.engine.shutdown(timeout)

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
            return
        if self._outcome is None:
            self.wait()
        self.engine.shutdown()

    # -- reporting --------------------------------------------------------------------------

    @property
    def pipes(self) -> list[Pipe]:
        return list(self._pipes)

    @property
    def pipe_count(self) -> int:
        return len(self._pipes)

    @property
    def is_running(self) -> bool:
        return self._started and self.engine.is_running

    @property
    def succeeded(self) -> bool | None:
        """True once committed, False once failed or rolled back, None while undecided."""
        return self._outcome

    @property
    def pipe_reports(self) -> list[PipeReport]:
        if not self._started:
            return [PipeReport(pipe_index=i) for i in range(len(self._pipes))]
        return self.engine.pipe_reports

    def get_pipe_report(self, index: int) -> PipeReport:
        return self.pipe_reports[index]

    @property
    def report(self) -> PipeReport:
        """The aggregate of every pipe's report (the engine's: O(pipes not settled) a look)."""
        if not self._started:
            return PipeReport.aggregate(self.pipe_reports)
        return self.engine.report

    def results(self) -> list[WorkerResult]:
        return self.engine.results()

    def __repr__(self) -> str:
        state = "running" if self.is_running else ("idle" if not self._started else "done")
        return f"PipeManager({len(self._pipes)} pipes, {type(self.engine).__name__}, {state})"


#: The most shards a pipe is split into. Each shard is a process or a Slurm array task with its
#: own progress record and part file, and planning alone costs about 50 microseconds and 6 kB
#: a shard: past this many, the bookkeeping (a folder of 100,000 files on a shared filesystem)
#: outweighs any gain, and the number is far more likely a typo than a plan.
SHARD_LIMIT = 100_000
#: Up to this many shards are made as asked, empty or not: they cost little, and the part files
#: of ``merge=False`` and a job's Slurm tasks are then as many as the user said.
_SHARDS_AS_ASKED = 64


def _shard_count(adapter: BaseInputAdapter, workers: int) -> int:
    """How many shards ``parallelize_pipe(pipe, workers)`` makes of ``adapter``."""
    check_workers(workers)
    if workers > SHARD_LIMIT:
        raise ConfigurationError(
            f"workers={workers:,} for {adapter.describe()}: a pipe is split into at most "
            f"{SHARD_LIMIT:,} shards (each is a process or a Slurm task); ask for fewer"
        )
    if workers <= _SHARDS_AS_ASKED:
        return workers
    fill = adapter.max_shards(workers)
    if isinstance(fill, bool) or not isinstance(fill, int) or not 1 <= fill <= workers:
        raise ConfigurationError(
            f"{type(adapter).__name__}.max_shards({workers}) returned {fill!r}: "
            f"expected an integer from 1 to {workers}"
        )
    count = max(fill, _SHARDS_AS_ASKED)
    if count < workers:
        log.warning(
            "%s can fill at most %s shards: making %s shards, not the %s asked for (the "
            "others would have nothing to read)",
            adapter.describe(),
            f"{fill:,}",
            f"{count:,}",
            f"{workers:,}",
        )
    return count


def _progress_display(progress: bool | None) -> ProgressDisplay | None:
    from .display import auto_display, in_notebook

    if progress is False or (progress is None and not in_notebook()):
        return None
    return auto_display()


def _commit_coordinator(plan: RunPlan) -> FileMergeCoordinator:
    """The coordinator that commits the plan's transaction (ZooPipe's names for it)."""
    tables = any(t.strategy.name == "iceberg" for t in plan.transaction.targets)
    kind = IcebergCoordinator if tables else FileMergeCoordinator
    return kind(plan.transaction)
