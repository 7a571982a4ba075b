"""SlurmEngine: every pipe (shard) is one task of one sbatch job array, or packed: several
shards share each task (``max_tasks``)."""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, get_args

from ..._deadline import wait_until
from ..._private import Use, ensure_private_dir
from ...commit._staging import new_run_id
from ...errors import ConfigurationError, PayloadRefused, StateError
from ...report import PipeReport, PipeStatus
from .._fail_fast import FailFast, failure_signature
from .._live import LiveReports
from ._budget import QueryBudget
from ._cli import SlurmCLI, SlurmCommandError
from ._limits import DEFAULT_LIMITS, SiteLimits, parse_site_limits
from ._packing import PACKED, Packing, choose_packing
from ._payload import PayloadStore
from ._state import StateSource, StateSourceChoice
from ._submitter import ArraySubmitter
from ._watch import Shard, ShardWatch
from .parameters import SlurmParameters
from .task import SLURM_STOP_REASONS, format_shards, shard_payload_name

if TYPE_CHECKING:
    from ...pipe import Pipe

__all__ = ["SlurmEngine", "SubmissionKind", "SubmissionLedger"]

log = logging.getLogger(__name__)

#: Why shards are submitted: the first time, retried by the engine after a failure, or again
#: on request (``resubmit``, e.g. ``zoopipe-hpc retry``).
SubmissionKind = Literal["first", "retry", "resubmit"]

_JOB_FOLDER_USE = Use(
    action="submit from this job folder",
    risk="anyone who can write there could replace its payloads and run code as you",
    error=PayloadRefused,
)


def _out_of_time(message: str) -> bool:
    """Whether a shard's failure is its task's time limit: Slurm's USR2 warning before it, or
    the limit itself (TIMEOUT)."""
    return SLURM_STOP_REASONS[signal.SIGUSR2] in message or "(TIMEOUT)" in message


class SubmissionLedger(Protocol):
    """Where a durable job keeps its submissions; the engine asks it before every ``sbatch``.

    ``reserve`` records the intent to submit (so a submission is on record before ``sbatch``
    runs) and returns a token and the shards that may be submitted: all, some, or none (then
    nothing is submitted). ``record`` confirms the reservation with the array's job id once
    ``sbatch`` answered (``packed``: the array's tasks share the shards, so no shard has a
    task of its own yet; see ``max_tasks``); ``release`` withdraws it when ``sbatch`` refused.
    """

    def reserve(self, indices: list[int], kind: SubmissionKind) -> tuple[str, list[int]]: ...

    def record(self, token: str, array: str, indices: list[int], *, packed: bool) -> None: ...

    def release(self, token: str) -> None: ...


class SlurmEngine(ShardWatch):
    """Runs every pipe as one task of a Slurm job array (sbatch; see ``task`` for what runs).

    Slurm parameters are given in Slurm's words (``partition``, ``time``, ``cpus_per_task``,
    ``mem``, ``account``, ``qos``, ``constraint``, ``gres``, ``array_parallelism``, ``extra``
    directives, ``setup`` lines, ``job_name``) and validated at once. ``job_script()`` shows the
    exact script without submitting.

    Parameters of the engine itself:
        folder: the job folders' parent on the shared filesystem (default ``./zoopipe-jobs``);
            each run gets ``<folder>/<run id>`` (mode 0700) with payloads, progress records
            and Slurm logs.
        max_retries: how often a failed shard is resubmitted (only the failed shards, in one
            new array per round).
        ledger: a durable job's record of its submissions (:class:`SubmissionLedger`); with
            one, every ``sbatch`` is reserved in it first, and it decides which retries happen.
        poll_interval: seconds between reads of the progress records.
        stale_after: a running task whose record has not moved for this long is checked with
            Slurm (tasks refresh their heartbeat every 5 s).
        python: the command that starts Python on the compute nodes (default: this
            interpreter, which must be on the shared filesystem).
        max_queries_per_minute: the run's request budget: state queries (sacct, squeue,
            pyslurm) a minute, sustained, with bursts of up to 10 (see docs/slurm.md).
        state_source: where task states come from: ``"auto"`` (pyslurm matching the
            cluster, else sacct where accounting works, else squeue), ``"sacct"`` or
            ``"squeue"`` (a site without accounting, or whose slurmdbd is slow).
        max_tasks: pack the shards onto at most this many array tasks: each task claims the
            next shard nobody took yet and runs up to ``workers_per_task`` at a time, so fast
            nodes take more shards and none runs twice (see ``_claims``). Default: one shard
            per task, unless that would pass the site's MaxArraySize or MaxJobCount (then the
            engine packs by itself, and logs how).
        workers_per_task: shards a packed task runs at once (default: ``cpus_per_task``, or
            every CPU of the node with ``exclusive=True`` or ``nodes=1``).
    """

    def __init__(
        self,
        folder: str | os.PathLike[str] | None = None,
        *,
        max_retries: int = 0,
        poll_interval: float = 1.0,
        stale_after: float = 20.0,
        python: str | None = None,
        cli: SlurmCLI | None = None,
        job_folder: str | os.PathLike[str] | None = None,
        ledger: SubmissionLedger | None = None,
        max_queries_per_minute: float = 4.0,
        state_source: StateSourceChoice = "auto",
        max_tasks: int | None = None,
        workers_per_task: int | None = None,
        **slurm: Any,
    ) -> None:
        if max_retries < 0:
            raise ConfigurationError(f"max_retries must be 0 or more, got {max_retries}")
        for name, value in (("max_tasks", max_tasks), ("workers_per_task", workers_per_task)):
            if value is not None and (isinstance(value, bool) or value < 1):
                raise ConfigurationError(f"{name} must be 1 or more, got {value!r}")
        self.max_tasks = max_tasks
        self.workers_per_task = workers_per_task
        self.parameters = SlurmParameters.validate_kwargs(**slurm)
        self.folder = (Path(folder) if folder is not None else Path("zoopipe-jobs")).absolute()
        self.max_retries = max_retries
        self.poll_interval = poll_interval
        self.stale_after = stale_after
        self.python = python
        self.cli = cli or SlurmCLI()
        #: Use exactly this job folder (a durable job's directory), not a new one in ``folder``.
        self.requested_job_folder = Path(job_folder).absolute() if job_folder is not None else None
        self.ledger = ledger
        #: True for an engine that only watches (``attach(..., read_only=True)``): it never runs
        #: ``sbatch`` or ``scancel``.
        self.read_only = False
        self.job_folder: Path | None = None
        self._shards: list[Shard] = []
        self._submitter: ArraySubmitter | None = None
        self._source: StateSource | None = None
        self._clock = time.monotonic
        if state_source not in get_args(StateSourceChoice):
            raise ConfigurationError(
                f"state_source must be one of {get_args(StateSourceChoice)}, got {state_source!r}"
            )
        self.state_source: StateSourceChoice = state_source
        self._budget = QueryBudget(max_queries_per_minute, clock=lambda: self._clock())
        self._query_cli = self.cli.single_attempt()
        self._limits: SiteLimits | None = None
        self._next_query = 0.0
        self._next_pending_query = 0.0
        self._fault_delay = 1.0
        self._hold_queries = False
        self._cancelled = False
        self._fail_fast = FailFast()
        #: Shards whose failure at the start waits for its retry, and since when (``_clock``):
        #: the others may still end with the same error (see ``_due_retries``).
        self._held_retries: dict[int, float] = {}
        #: Whether the run's closing line (its Slurm calls) was logged.
        self._closing_logged = False
        #: When the current run of short waits began (None: the last look could ask Slurm).
        self._query_put_off_since: float | None = None

    # -- submission -------------------------------------------------------------------------

    def _make_submitter(self, job_folder: Path) -> ArraySubmitter:
        return ArraySubmitter(
            job_folder,
            self.parameters,
            self.cli,
            python=self.python,
            environment={"ZOOPIPE_HPC_JOB_FOLDER": str(job_folder)},
        )

    def job_script(self, tasks: int = 1) -> str:
        """The sbatch script the first submission of ``tasks`` shards (``0..tasks-1``) would
        have (a dry run), with the command every task runs; packed (``max_tasks``, or by itself
        past the site's limits), an array of at most ``max_tasks`` tasks that share them. A dry
        run asks Slurm nothing: it plans with the site's limits if this engine read them
        already (:meth:`site_limits`), else with Slurm's defaults."""
        folder = self.job_folder or self.requested_job_folder or (self.folder / "<run id>")
        packing = self._packing(tasks, self._limits or DEFAULT_LIMITS)
        return self._make_submitter(folder).script(range(tasks), packing)

    def site_limits(self) -> SiteLimits:
        """The limits the cluster reports (``scontrol show config``), read once."""
        if self._limits is None:
            self._limits = parse_site_limits(self.cli.run(["scontrol", "show", "config"]))
            self._within_the_sites_rate_limit(self._limits)
        return self._limits

    def _within_the_sites_rate_limit(self, limits: SiteLimits) -> None:
        """Where the controller rate-limits each user, the state queries take at most half
        of the user's rate and bucket: sbatch, srun and the user's own commands share it."""
        if limits.rate_limit_per_minute is None or limits.rate_limit_bucket is None:
            return
        before = self._budget.per_minute
        self._budget.limit_to(limits.rate_limit_per_minute / 2, limits.rate_limit_bucket // 2)
        if self._budget.per_minute < before:
            log.info(
                "the site limits each user to %.0f requests a minute (bucket %d): state "
                "queries at most %.1f a minute, bursts of %d",
                limits.rate_limit_per_minute,
                limits.rate_limit_bucket,
                self._budget.per_minute,
                self._budget.capacity,
            )

    def max_array_size(self) -> int:
        """The cluster's MaxArraySize (tasks of one array are indexed 0..MaxArraySize-1)."""
        return self.site_limits().max_array_size

    def _packing(self, shards: int, limits: SiteLimits | None = None) -> Packing | None:
        """How ``shards`` shards are submitted (None: one per task), see ``_packing``."""
        return choose_packing(
            shards,
            max_tasks=self.max_tasks,
            workers_per_task=self.workers_per_task,
            parameters=self.parameters,
            limits=limits or self.site_limits(),
        )

    def start(self, pipes: Sequence[Pipe]) -> None:
        if self.is_running:
            raise StateError("this engine is already running")
        job_folder = self._make_job_folder()
        store = PayloadStore(job_folder)
        store.create()
        for index, pipe in enumerate(pipes):
            store.dump(shard_payload_name(index), pipe)
        self._launch(len(pipes))

    def start_from_payloads(self, shards: int) -> None:
        """Submit shards ``0..shards-1`` whose payloads are already in ``job_folder``.

        A durable job writes its payloads once, into its job directory, before it submits;
        this submits them as they are instead of writing them again.
        """
        if self.is_running:
            raise StateError("this engine is already running")
        if self.requested_job_folder is None:
            raise ConfigurationError("start_from_payloads() needs the engine's job_folder")
        store = PayloadStore(self.requested_job_folder)
        missing = [i for i in range(shards) if not store.path(shard_payload_name(i)).is_file()]
        if shards < 1 or missing:
            raise ConfigurationError(
                f"{store.folder}: no payload for shard(s) {missing or [0]}; write them with "
                f"PayloadStore.dump() first, or use start(pipes)"
            )
        self._make_job_folder()
        self._launch(shards)

    def _make_job_folder(self) -> Path:
        job_folder = self.requested_job_folder
        if job_folder is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            job_folder = self.folder / new_run_id()
        else:
            job_folder.parent.mkdir(parents=True, exist_ok=True)
        # The tasks refuse a job folder anyone else could write to: refuse it here first.
        ensure_private_dir(job_folder, "job folder", _JOB_FOLDER_USE, tighten=True)
        for name in ("progress", "logs"):
            ensure_private_dir(job_folder / name, f"{name} folder", _JOB_FOLDER_USE)
        self.job_folder = job_folder
        return job_folder

    def _launch(self, shards: int) -> None:
        if self.job_folder is None:
            raise StateError("the job folder is not made yet")
        self._submitter = self._make_submitter(self.job_folder)
        self._watch_shards([Shard(index) for index in range(shards)])
        self._cancelled = False
        self._fail_fast = FailFast()
        self._held_retries = {}
        self._closing_logged = False
        self._source = None
        self.read_only = False
        self._submit([s.index for s in self._shards], "first")

    def _submit(self, indices: list[int], kind: SubmissionKind) -> list[int]:
        """Submit these shards (one array per MaxArraySize); returns those submitted.

        With a ledger, each array is reserved first and only the shards it allows are submitted.
        """
        if self.read_only:
            raise StateError(
                f"this engine only watches the job in {self.job_folder}; it submits nothing "
                f"(shards {indices} were not submitted)"
            )
        if self._submitter is None or self.job_folder is None:
            raise StateError("start() the engine first")
        packing = self._packing(len(indices))
        # Packed, one array takes every shard; else one array per MaxArraySize shards.
        size = max(1, len(indices)) if packing is not None else self.max_array_size()
        submitted: list[int] = []
        for offset in range(0, len(indices), size):
            chunk = indices[offset : offset + size]
            token = ""
            if self.ledger is not None:
                token, chunk = self.ledger.reserve(list(chunk), kind)
                if not chunk:
                    continue
            try:
                job_id = self._submitter.submit(chunk, packing)
            except SlurmCommandError as exc:
                # sbatch exited non-zero: nothing was submitted. A timeout (-1) or an answer
                # without a job id (0) may have submitted: the reservation then stays on
                # record, counted as a submission.
                if self.ledger is not None and exc.details.get("returncode") not in (-1, 0):
                    self.ledger.release(token)
                raise
            if self.ledger is not None:
                self.ledger.record(token, job_id, list(chunk), packed=packing is not None)
            submitted.extend(chunk)
            if packing is not None:
                self._follow_claims(job_id, list(chunk))
            for task, index in enumerate(chunk):
                shard = self._shards[index]
                shard.submissions.append((job_id, task if packing is None else PACKED))
                shard.packed = packing is not None
                self._mark_packing(shard)
                shard.attempt_id = ""
                shard.reader = None
                shard.slurm = None
                shard.final = None
                shard.ended_since = None
                self._reopen(shard)
        self._query_soon()
        return submitted

    def resubmit(self, indices: Sequence[int], *, automatic: bool = False) -> list[int]:
        """Submit these shards again (one new array), e.g. after fixing what made them fail.

        ``automatic``: a retry the job makes by itself (counted against ``max_retries`` by the
        ledger), not one a person asked for. Returns the shards submitted.
        """
        self._cancelled = False
        return self._submit(sorted(set(indices)), "retry" if automatic else "resubmit")

    def attach(
        self,
        job_folder: str | os.PathLike[str],
        submissions: Sequence[Sequence[str]],
        *,
        read_only: bool = False,
    ) -> None:
        """Watch arrays submitted earlier (by a process that may be gone) without submitting.

        ``submissions[i]`` lists shard ``i``'s Slurm tasks (``"<array>_<task>"``), the current
        one last, as a durable job's manifest records them (``"<array>_*"``: any task of a
        packed array, see ``max_tasks``). A ``read_only`` engine only
        watches: it never retries a failed shard, ``resubmit`` raises
        :class:`~zoopipe_hpc.errors.StateError`, and ``shutdown`` cancels nothing.
        """
        if self.is_running:
            raise StateError("this engine is already running")
        self.read_only = read_only
        self.job_folder = Path(job_folder).absolute()
        self._submitter = self._make_submitter(self.job_folder)
        shards = []
        for index, tasks in enumerate(submissions):
            shard = Shard(index)
            for task in tasks:
                array, _, number = task.partition("_")
                shard.packed = number == "*"  # a packed array's: any of its tasks
                shard.submissions.append((array, PACKED if shard.packed else int(number)))
            shards.append(shard)
        self._watch_shards(shards)
        self._cancelled = False
        self._fail_fast = FailFast()
        self._held_retries = {}
        self._closing_logged = False
        self._source = None
        self._query_soon()

    def live_arrays(self) -> list[str]:
        """Arrays of this run that still have unfinished shards."""
        return sorted({s.submissions[-1][0] for s in self._shards if s.final is None})

    # -- refreshing: every shard not settled judged (see _watch), the failed ones retried ---

    def _refresh(self) -> list[PipeReport]:
        live = self._look()
        return live.reports() if live is not None else []

    def _look(self) -> LiveReports | None:
        """One poll: the shards not settled yet are read and judged; a settled one costs
        nothing (its final report is kept, its files are never opened again)."""
        live = self._live
        if not self._shards or live is None:
            return None
        self._scan_records()
        now = time.time()
        active = [self._shards[index] for index in live.watched]
        for shard in active:
            live.put(shard.index, self._shard_report(shard))
        doubtful = [s for s in active if self._needs_slurm(s, now)]
        woken = self._maybe_ask_slurm(doubtful) if doubtful or live.waiting_count else None
        if woken:  # Slurm's answer changed what is known of these waiting shards
            for shard in woken:
                live.put(shard.index, self._shard_report(shard))
            active = sorted(active + woken, key=lambda s: s.index)
        self._ask_about_idle_arrays(active)
        retry: list[tuple[Shard, PipeReport, str]] = []
        continued: list[Shard] = []
        for shard in active:
            outcome = self._judge(shard, live.get(shard.index), now)
            if outcome is None:
                if self._waits(shard):
                    if woken is not None:  # Slurm answered after its report was made
                        live.put(shard.index, self._shard_report(shard))
                    live.set_waiting(shard.index)
                continue
            if outcome.status is PipeStatus.CANCELLED and self._fail_fast.tripped is not None:
                first = self._fail_fast.tripped[1]
                outcome.message = f"{outcome.message}; the run failed fast (see shard {first})"
            if outcome.status is PipeStatus.FAILED:
                if self._continues(shard, outcome):
                    shard.continuations += 1
                    continued.append(shard)
                    retry.append((shard, outcome, f"{shard.job_id}: {outcome.message}"))
                    continue
                if shard.index not in self._held_retries:  # a held failure counted once
                    self._fail_fast.observe(shard.index, outcome.message, outcome.total_processed)
                if self._may_retry(shard):
                    retry.append((shard, outcome, f"{shard.job_id}: {outcome.message}"))
                    continue
            self._held_retries.pop(shard.index, None)
            self._settle(shard, outcome)
        if self._fail_fast.tripped is not None:
            for shard, outcome, _ in retry:
                self._settle(shard, outcome)
            retry = []
            self._held_retries.clear()
            self._stop_after_failing_fast()
        retry = self._due_retries(retry, active, live)
        if retry:
            resubmitted = set(self._submit([shard.index for shard, _, _ in retry], "retry"))
            for shard, outcome, failure in retry:
                if shard.index not in resubmitted:  # the ledger allowed no more submissions
                    self._settle(shard, outcome)
                    continue
                shard.failures.append(failure)
                if shard not in continued:
                    log.warning(
                        "shard %d failed (%s); resubmitted (submission %d, max_retries %d)",
                        shard.index,
                        outcome.message,
                        len(shard.submissions),
                        self.max_retries,
                    )
                live.put(shard.index, self._shard_report(shard))
            if continued:
                log.warning(
                    "%d shard(s) the packed array did not get to (unclaimed, or stopped by its "
                    "time limit) continue on a new packed array (not counted as retries): %s",
                    len(continued),
                    format_shards([s.index for s in continued]),
                )
        if not self._closing_logged and live.all_settled:
            self._closing_logged = True
            calls = ", ".join(f"{tool} {n}" for tool, n in sorted(self.slurm_calls().items()))
            log.info(
                "%s: every shard is over; Slurm calls of this run: %s",
                self.job_folder,
                calls or "none",
            )
        return live

    def _due_retries(
        self, retry: list[tuple[Shard, PipeReport, str]], active: list[Shard], live: LiveReports
    ) -> list[tuple[Shard, PipeReport, str]]:
        """The failed shards of ``retry`` to resubmit now.

        A failure before the first record (one that fail fast counts) waits while another shard
        may still end with the same error (one unfinished that has read no record), for at
        most ``stale_after`` seconds. The tasks of an array do not fail at the same moment,
        and on a shared filesystem their records reach the coordinator through its own
        client's caches: retried at once, the first failure would be resubmitted before the
        second one showed that the error is every shard's.
        """
        now = self._clock()
        failing = {shard.index for shard, _, _ in retry}
        # A waiting shard (still queued, see ``_waits``) has read no record.
        others_may_fail = bool(retry) and (
            live.waiting_count > 0
            or any(
                s.final is None
                and s.index not in failing
                and live.get(s.index).total_processed == 0
                for s in active
            )
        )
        due = []
        for shard, outcome, failure in retry:
            at_start = failure_signature(outcome.message, outcome.total_processed) is not None
            if others_may_fail and at_start:
                since = self._held_retries.setdefault(shard.index, now)
                if now - since < self.stale_after:
                    continue
            self._held_retries.pop(shard.index, None)
            due.append((shard, outcome, failure))
        return due

    def _stop_after_failing_fast(self) -> None:
        """Once: report the error and cancel the tasks still queued or running."""
        if self._cancelled or self.read_only:
            return
        log.error("%s: %s", self.job_folder, self._fail_fast.describe())
        self._cancel_live()
        self._query_soon()

    def _cancel_live(self) -> None:
        """``scancel`` every array of the run that still has tasks; later failures are
        CANCELLED."""
        self._cancelled = True
        live = self.live_arrays()
        if live:
            try:
                self.cli.run(["scancel", *live])
            except SlurmCommandError as exc:
                log.error("scancel %s failed: %s", " ".join(live), exc)

    def _may_retry(self, shard: Shard) -> bool:
        """Whether to try a retry; a ledger has the last word (it counts the job's submissions,
        whichever process made them), else this engine's own count does."""
        if self.read_only or self._cancelled or self.max_retries == 0:
            return False
        retries = len(shard.submissions) - 1 - shard.continuations
        return self.ledger is not None or retries < self.max_retries

    def _continues(self, shard: Shard, outcome: PipeReport) -> bool:
        """Whether a failed shard of a packed array is resubmitted as a continuation, not a
        retry: its array ran out of time or tasks before the shard could run.

        A shard no task claimed continues if its array finished other shards (so every
        continuation makes progress and their number is bounded); a shard the time limit
        stopped (its USR2 warning, or the limit itself: TIMEOUT) continues once (twice is the
        shard's own slowness, a failure).
        """
        if not shard.packed or self.read_only or self._cancelled or self.ledger is not None:
            return False
        if self._fail_fast.tripped is not None:
            return False
        message = outcome.message or ""
        if "(UNCLAIMED)" in message:
            return shard.submissions[-1][0] in self._arrays_with_progress()
        return _out_of_time(message) and not any(_out_of_time(f) for f in shard.failures)

    def _arrays_with_progress(self) -> set[str]:
        """The arrays in which at least one shard completed (kept as the shards settle)."""
        return self._completed_arrays

    # -- BaseEngine -------------------------------------------------------------------------

    @property
    def pipe_reports(self) -> list[PipeReport]:
        return self._refresh()

    def shutdown(self, timeout: float = 5.0) -> None:
        """Cancel every array of this run that still has tasks (``scancel``).

        A read-only engine only stops watching: the tasks keep running.
        """
        if not self._shards or self.read_only:
            return
        self._cancel_live()

        def all_final() -> bool:
            if self._live is None or self._live.all_settled:
                return True
            self._query_soon()  # ask at every look the budget allows: the tasks are cancelled
            self._look()
            return self._live.all_settled

        wait_until(all_final, timeout, min(self.poll_interval, 0.5))
        for shard in [s for s in self._shards if s.final is None]:
            report = self._shard_report(shard)
            report.status = PipeStatus.CANCELLED
            report.message = report.message or f"cancelled (scancel {shard.job_id})"
            report.is_alive = False
            self._settle(shard, report)

    def slurm_calls(self) -> dict[str, int]:
        """How many times each Slurm command (and pyslurm, as ``pyslurm``) was called by this
        engine, retries included."""
        return dict(self.cli.calls)
