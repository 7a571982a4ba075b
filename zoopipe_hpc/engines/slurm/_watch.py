"""How the Slurm engine follows its shards and decides when each one is over (private).

:class:`ShardWatch` is the part of :class:`~zoopipe_hpc.engines.slurm.SlurmEngine` that looks:
it attaches each shard to the newest progress record of its current submission, builds the
shard's report from it, asks Slurm (within the run's request budget, with a backoff after a
failed query spread over polls, and put off by short waits) about the shards whose record is
missing, stale or failed, and judges from the result file, the record
and Slurm's answer whether a shard is over and how. The engine adds what acts: the job folder,
the submissions (through the ledger), the retries, and the cancel.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..._deadline import Deadline
from ...commit.staged import WorkerOutcome, read_result, result_path
from ...progress import ProgressReader, ProgressState
from ...progress._freshness import warn_if_stale_cache
from ...report import PipeReport, PipeStatus
from .._attempts import parse_record_name, slurm_restart
from .._live import LiveReports
from .._worker import progress_path, report_from_snapshot
from ..base import BaseEngine
from ._budget import QueryBudget
from ._cli import SlurmCLI, SlurmCommandError
from ._frontier import ClaimFrontier
from ._listing import FolderListing
from ._packing import PACKED, packed_attempt, packed_state, tasks_by_array
from ._state import StateSource, StateSourceChoice, TaskState, choose_state_source
from ._submitter import ArraySubmitter

__all__ = ["Shard", "ShardWatch"]

# The logger of the public module, so that logging set up for it still sees these records.
log = logging.getLogger("zoopipe_hpc.engines.slurm.engine")

#: Terminal states after which Slurm may still requeue the task by itself.
_MAY_REQUEUE = frozenset({"NODE_FAIL", "PREEMPTED"})
#: Longest a run of short waits puts a due Slurm query off (the shortest pause between two
#: queries the engine makes anyway).
_QUERY_PUT_OFF_LIMIT = 2.0
#: Seconds between two queries while every doubtful shard is only still pending (no record yet).
PENDING_QUERY_EVERY = 60.0
#: Seconds a packed array that claimed shards may run none (its other shards unclaimed)
#: before Slurm is asked whether its tasks ended (e.g. stopped by the time limit between two
#: shards), rather than at the next once-a-minute query about pending tasks.
IDLE_ARRAY_AFTER = 2.0
#: Seconds a task Slurm reports FAILED (a non-zero exit) is given for its final record to reach
#: this node before the shard is judged from Slurm's answer alone (at most ``stale_after``;
#: not for a read-only engine, whose look reports what it sees). A task that fails
#: before its pipe starts (a payload refused, an import error) records why; on a shared
#: filesystem that record, and the folder entry naming it, reach another client within its
#: attribute cache timeout plus a poll (``docs/progress.md``, "The bound"), which is often later
#: than sacct's answer.
FAILED_RECORD_GRACE = 5.0
#: First and longest pause after a failed state query (doubled after each failure in a row).
_FAULT_DELAY_FIRST = 1.0
_FAULT_DELAY_MAX = 60.0


@dataclass
class Shard:
    """One shard of the run: its submissions, and what is known of the current one."""

    index: int
    #: (array job id, task id) of every submission, the current one last.
    submissions: list[tuple[str, int]] = field(default_factory=list)
    attempt_id: str = ""
    reader: ProgressReader | None = None
    slurm: TaskState | None = None
    final: PipeReport | None = None
    failures: list[str] = field(default_factory=list)
    #: When Slurm was first seen to report the task over while its record was not final.
    ended_since: float | None = None
    #: When (``time.time()``) Slurm's answer in :attr:`slurm` was received.
    slurm_seen_at: float = 0.0
    #: The current submission is a packed array's (see ``_packing``).
    packed: bool = False
    #: Submissions that continued the shard after its packed array ran out of time or tasks
    #: (never claimed, or stopped by the time limit): not retries of a failure.
    continuations: int = 0
    #: The result file of the attempt that settled the shard COMPLETED, read when it did.
    outcome: WorkerOutcome | None = None

    @property
    def job_id(self) -> str:
        job, task = self.submissions[-1]
        return f"{job}_*" if task == PACKED else f"{job}_{task}"

    def restart_of(self, attempt_id: str) -> int | None:
        """The restart count of ``attempt_id`` if it is a run of the current submission."""
        job, task = self.submissions[-1]
        if task == PACKED:
            attempt = packed_attempt(attempt_id, job)
            return attempt.restart if attempt is not None else None
        return slurm_restart(attempt_id, job, task)

    def pin_task(self, attempt_id: str) -> None:
        """A packed submission's shard is run by the task of ``attempt_id``: follow that one."""
        job, task = self.submissions[-1]
        attempt = packed_attempt(attempt_id, job) if task == PACKED else None
        if attempt is not None:
            self.submissions[-1] = (job, attempt.task)


class ShardWatch(BaseEngine):
    """The watching half of :class:`~zoopipe_hpc.engines.slurm.SlurmEngine` (see the module).

    The engine's ``__init__``, ``_launch`` and ``attach`` set the attributes declared here.
    """

    stale_after: float
    cli: SlurmCLI
    job_folder: Path | None
    _shards: list[Shard]
    _submitter: ArraySubmitter | None
    _source: StateSource | None
    #: Where Slurm states come from: ``auto`` (pyslurm, sacct or squeue), or one of them.
    state_source: StateSourceChoice
    #: Earliest time (on :attr:`_clock`) of the next state query, whatever it is about.
    _next_query: float
    #: Earliest time of the next query that is only about still pending tasks.
    _next_pending_query: float
    #: Pause after the next failed query (the retry backoff, spread over polls).
    _fault_delay: float
    _budget: QueryBudget
    #: The CLI of the state queries: one attempt per poll, counting into ``cli.calls``.
    _query_cli: SlurmCLI
    _clock: Callable[[], float]
    _hold_queries: bool
    _cancelled: bool
    #: An engine that only watches (``attach(..., read_only=True)``).
    read_only: bool
    _query_put_off_since: float | None
    #: Every shard's latest report; a poll looks at the unsettled shards only (see ``_live``).
    _live: LiveReports | None = None
    #: The progress folder's names not seen yet (read only when it may have new ones).
    _listing: FolderListing | None = None
    #: The arrays in which a shard settled COMPLETED (see ``SlurmEngine._continues``).
    _completed_arrays: set[str]
    #: How far the tasks of the packed arrays claimed their shards (see ``_scan_records``).
    _frontier: ClaimFrontier | None = None
    #: The shards not settled whose current submission runs one shard per task.
    _unpacked: set[int]
    #: Packed arrays seen running none of their shards, since when (``_clock``), or None once
    #: Slurm was asked about them (see ``_ask_about_idle_arrays``).
    _idle_arrays: dict[str, float | None]

    # -- records and reports ----------------------------------------------------------------

    def _watch_shards(self, shards: list[Shard]) -> None:
        """Follow these shards from now on (a new run, or arrays attached to)."""
        self._shards = shards
        self._live = LiveReports(len(shards))
        self._listing = None
        self._completed_arrays = set()
        self._frontier = None
        self._unpacked = set()
        self._idle_arrays = {}
        packed: dict[str, list[int]] = {}
        for shard in shards:
            if shard.submissions and shard.submissions[-1][1] == PACKED:
                packed.setdefault(shard.submissions[-1][0], []).append(shard.index)
            elif shard.submissions:
                self._unpacked.add(shard.index)
        for array, indices in packed.items():
            self._follow_claims(array, indices)

    def _reopen(self, shard: Shard) -> None:
        """The shard is submitted again: it is followed at every poll until it settles."""
        if self._live is not None:
            self._live.reopen(shard.index)

    def _follow_claims(self, array: str, shards: list[int]) -> None:
        """The shards of packed array ``array`` (in claim order): their records are found
        from their claims (:class:`~._frontier.ClaimFrontier`)."""
        if self.job_folder is None:
            return
        if self._frontier is None or self._frontier.job_folder != self.job_folder:
            self._frontier = ClaimFrontier(self.job_folder)
        self._frontier.follow(array, shards)

    def _mark_packing(self, shard: Shard) -> None:
        """Note whether the shard's current submission is a packed array's (see
        ``_needs_listing``)."""
        if shard.packed:
            self._unpacked.discard(shard.index)
        else:
            self._unpacked.add(shard.index)

    def _needs_listing(self, live: LiveReports) -> bool:
        """Whether a new record may be one that only a listing of the progress folder finds:
        a shard not settled that runs one per task (its task writes its record unannounced),
        a shard whose record is stale or failed (its task may be requeued: a new run, a new
        record), or the last listing is ``RELIST_EVERY`` seconds old (a claim missed).
        Otherwise the claims of the packed arrays (``_frontier``) tell of every new record."""
        if self._unpacked or self._listing is None or self._listing.relist_due():
            return True
        now = time.time()
        return any(
            (shard := self._shards[index]).reader is not None
            and shard.reader.last is not None
            and self._needs_slurm(shard, now)
            for index in live.watched
        )

    def _ask_about_idle_arrays(self, active: list[Shard]) -> None:
        """A packed array whose tasks claimed shards, have more to claim, and run none of them
        (no shard of it is watched) may have ended: its unclaimed shards wait for a state
        query. Once it stayed so for :data:`IDLE_ARRAY_AFTER` seconds, the next query comes
        now (within the budget), once per time the array goes idle."""
        if self._frontier is None:
            return
        busy = {s.submissions[-1][0] for s in active if s.packed and s.final is None}
        idle = self._frontier.started() - busy
        now = self._clock()
        for array in list(self._idle_arrays):
            if array not in idle:
                del self._idle_arrays[array]
        for array in idle:
            since = self._idle_arrays.setdefault(array, now)
            if since is not None and now - since >= IDLE_ARRAY_AFTER:
                self._query_soon()
                self._idle_arrays[array] = None

    def _scan_records(self) -> None:
        """Attach each shard to the newest record of its current submission (requeues included).

        A packed array's new claims name their shards' records (:class:`~._frontier.
        ClaimFrontier`); the progress folder is listed only when a record may be one the
        claims do not tell of (``_needs_listing``), and then only the names it got since the
        last look are read, and only when it may have new ones
        (:class:`~._listing.FolderListing`): a name once seen is never counted again (a record
        of an earlier submission, or of a shard settled since).
        """
        live = self._live
        if self.job_folder is None or live is None:
            return
        folder = self.job_folder / "progress"
        # Once per folder: a cache of this node that another node's records cannot get past.
        warn_if_stale_cache(folder, log)
        if self._listing is None or self._listing.folder != folder:
            self._listing = FolderListing(folder, lambda: self._clock())
        found: list[tuple[int, str, str]] = []
        if self._frontier is not None and self._frontier.job_folder == self.job_folder:
            for index, array, attempt in self._frontier.new_claims():
                if self._shards[index].submissions[-1][0] == array:
                    found.append((index, attempt, str(progress_path(folder, index, attempt))))
        if self._needs_listing(live):
            for name, path in self._listing.new_entries():
                parsed = parse_record_name(name)
                if parsed is not None:
                    found.append((parsed[0], parsed[1], path))
        newest: dict[int, tuple[int, str, str]] = {}
        for index, attempt, path in found:
            if index >= len(self._shards) or live.is_settled(index):
                continue
            shard = self._shards[index]
            restart = shard.restart_of(attempt)
            if restart is None:
                continue  # an earlier submission of this shard: never counted again
            current = shard.restart_of(shard.attempt_id) if shard.attempt_id else None
            if current is not None and restart <= current:
                continue  # an older run of the current submission's task, seen late
            if index not in newest or restart > newest[index][0]:
                newest[index] = (restart, attempt, path)
        for index, (_, attempt, path) in newest.items():
            shard = self._shards[index]
            shard.pin_task(attempt)
            shard.attempt_id = attempt
            shard.reader = ProgressReader(path, expected_attempt_id=attempt)
            live.wake(index)  # it has a record now: read at every poll until it settles

    def _shard_report(self, shard: Shard) -> PipeReport:
        if shard.final is not None:
            return shard.final  # settled: shared, not copied on every poll (treat as read-only)
        snapshot = shard.reader.poll() if shard.reader is not None else None
        report = report_from_snapshot(shard.index, snapshot)
        report.extra = self._extra(shard)
        if report.has_error:
            # The attempt ended badly, but the shard is not over until Slurm confirms it: a
            # requeued task runs again as a new attempt.
            report.status = PipeStatus.RUNNING
            report.message = f"attempt {report.attempt_id} ended ({report.message}); checking"
        return report

    def _extra(self, shard: Shard) -> dict[str, str]:
        extra = {"attempts": str(len(shard.submissions))}
        if shard.submissions:
            extra["slurm_job_id"] = shard.job_id
            job, task = shard.submissions[-1]
            if self._submitter is not None and task != PACKED:
                extra["log"] = str(self._submitter.log_paths(job, task)[1])
        if shard.slurm is not None:
            extra["slurm_state"] = shard.slurm.state
            if shard.slurm.node:
                extra["node"] = shard.slurm.node
        if shard.failures:
            extra["earlier_failures"] = " | ".join(shard.failures)
        if shard.continuations:
            extra["continuations"] = str(shard.continuations)
        return extra

    def _settle(self, shard: Shard, outcome: PipeReport) -> None:
        outcome.extra = self._extra(shard)
        shard.final = outcome
        if outcome.status is PipeStatus.COMPLETED:
            self._completed_arrays.add(shard.submissions[-1][0])
        self._unpacked.discard(shard.index)
        if self._live is not None:
            self._live.settle(shard.index, outcome)

    def _waits(self, shard: Shard) -> bool:
        """Whether a shard that is not over has nothing to look at until something new comes:
        no record yet, and Slurm says nothing (not asked yet) or that its task is queued or
        running (a packed array that has not reached it). It then waits (``LiveReports``):
        polls skip it until a record of it appears (``_scan_records``), a Slurm answer
        changes what is known of it (``_maybe_ask_slurm``) or it is submitted again."""
        return shard.reader is None and (shard.slurm is None or shard.slurm.active)

    # -- judgement ----------------------------------------------------------------------------

    def _needs_slurm(self, shard: Shard, now: float) -> bool:
        """Only Slurm can tell what became of a task whose record is missing, stale or failed.

        A missing record: still queued, or it never started. A stale one: its process or node
        died. A failed or cancelled one: over for good, or requeued to run again.
        """
        snapshot = shard.reader.last if shard.reader is not None else None
        if snapshot is None:
            return True
        if snapshot.state.is_final:
            return snapshot.state is not ProgressState.FINISHED
        return snapshot.is_stale(self.stale_after, now)

    def _shard_outcome(self, shard: Shard) -> WorkerOutcome | None:
        """The result file of the shard's current attempt, if it wrote one."""
        if shard.reader is None or not shard.attempt_id:
            return None
        return read_result(result_path(shard.reader.path), shard.attempt_id)

    def _outcome(self, report: PipeReport) -> WorkerOutcome | None:
        if not 0 <= report.pipe_index < len(self._shards):
            return None
        shard = self._shards[report.pipe_index]
        known = shard.outcome
        if shard.final is not None and known is not None and known.attempt_id == shard.attempt_id:
            return known  # read when the shard settled: not opened again
        return self._shard_outcome(shard)

    def _judge(self, shard: Shard, report: PipeReport, now: float) -> PipeReport | None:
        """The final report of a shard if it is over, else None."""
        state = shard.slurm
        outcome = self._shard_outcome(shard)
        if outcome is not None and (report.status is PipeStatus.COMPLETED or state is not None):
            # The result file decides, whatever the live record says (even a corrupt one).
            shard.outcome = outcome
            done = report.copy()
            done.status = PipeStatus.COMPLETED
            done.total_processed = outcome.total_processed
            done.success_count = outcome.success_count
            done.error_count = outcome.error_count
            done.is_alive = False
            done.end_timestamp = done.end_timestamp or now
            if shard.reader is not None and shard.reader.problem is not None:
                done.extra["progress_record"] = f"{shard.reader.path}: {shard.reader.problem}"
            return done
        if state is None or state.active:
            return None
        if state.state in _MAY_REQUEUE:
            # Slurm requeues a batch task after a node failure or a preemption a moment after
            # reporting it: look again before calling it final.
            # Final only once an answer given after the grace period still says so: with
            # the budget spent, that answer may come later than the grace period's end.
            since = shard.ended_since or now
            shard.ended_since = since
            if now - since < self.stale_after or shard.slurm_seen_at < since + self.stale_after:
                self._query_soon(2.0)
                return None
        log_path = self._extra(shard).get("log", "")
        snapshot = shard.reader.last if shard.reader is not None else None
        if snapshot is not None and snapshot.state.is_final:
            # The attempt said why it stopped; Slurm says how the task ended.
            final = report_from_snapshot(shard.index, snapshot)
            final.message = f"{final.message} [{state.describe()}; log: {log_path}]"
            if final.status is PipeStatus.CANCELLED and not (
                self._cancelled or state.state == "CANCELLED"
            ):
                final.status = PipeStatus.FAILED  # stopped by a node failure, not by a person
            return final
        since = shard.ended_since or now
        shard.ended_since = since
        if state.completed or state.state == "GONE":
            # The task ended well by Slurm's account but its final record has not reached us:
            # give the shared filesystem a grace period before calling it a failure.
            if now - since < self.stale_after:
                return None
        elif (
            state.state == "FAILED"  # the task exited non-zero by itself: it may have said why
            and not (self._cancelled or self.read_only)  # a look (status) reports what it sees
            and now - since < min(self.stale_after, FAILED_RECORD_GRACE)
        ):
            # The record saying why may be on its way (FAILED_RECORD_GRACE).
            return None
        failed = report.copy()
        failed.status = PipeStatus.CANCELLED if self._cancelled else PipeStatus.FAILED
        failed.message = f"{state.describe()}; log: {log_path}"
        if state.completed:
            failed.message = (
                f"Slurm task {shard.job_id} completed but left no final progress record; "
                f"log: {log_path}"
            )
        failed.is_alive = False
        failed.end_timestamp = failed.end_timestamp or now
        return failed

    # -- asking Slurm -------------------------------------------------------------------------

    def _query_soon(self, after: float = 0.0) -> None:
        """Let the next state query (pending tasks included) come ``after`` seconds from now,
        as far as the budget allows (after a submission, a requeue or a cancel)."""
        at = self._clock() + after
        self._next_query = min(self._next_query, at)
        self._next_pending_query = min(self._next_pending_query, at)

    def _maybe_ask_slurm(self, doubtful: list[Shard]) -> list[Shard] | None:
        """Ask Slurm about the doubtful shards if a query is due and the budget has a token.

        A query only about pending tasks (no record yet) is due once a minute; one about a
        stale or failed record as soon as the backoff after a fault allows. Both cover every
        doubtful shard in one call, the waiting ones too (they have no record). A due query
        without a token waits for a later poll. Returns None if Slurm was not asked, else the
        waiting shards whose Slurm state the answer changed (woken: judged in this poll).
        """
        if self._hold_queries:
            return None
        now = self._clock()
        urgent = any(s.reader is not None and s.reader.last is not None for s in doubtful)
        due = self._next_query if urgent else max(self._next_query, self._next_pending_query)
        if now < due or not self._budget.try_take():
            return None
        live = self._live
        waiting = [self._shards[i] for i in live.waiting] if live is not None else []
        before = [_known(s.slurm) for s in waiting]
        self._ask_slurm(doubtful + waiting)
        woken = [s for s, known in zip(waiting, before, strict=True) if _known(s.slurm) != known]
        if live is not None:
            for shard in woken:
                live.wake(shard.index)
        return woken

    def _ask_slurm(self, shards: list[Shard]) -> None:
        """One state query (a single attempt) about every array of ``shards``."""
        arrays = sorted({s.submissions[-1][0] for s in shards})
        try:
            if self._source is None:
                self._source = choose_state_source(self._query_cli, self.state_source)
            if self._source.name == "pyslurm":
                self.cli.calls["pyslurm"] += 1  # not a command, but a call to the controller
            states = self._source.query(arrays)
        except SlurmCommandError as exc:
            now = self._clock()
            log.warning(
                "could not ask Slurm about arrays %s (asking again in %.0f s): %s",
                arrays,
                self._fault_delay,
                exc,
            )
            self._next_query = self._next_pending_query = now + self._fault_delay
            self._fault_delay = min(self._fault_delay * 2, _FAULT_DELAY_MAX)
            return
        seen_at = time.time()
        squeue = self._source.name == "squeue"
        by_array = tasks_by_array(states)
        for shard in shards:
            shard.slurm = states.get(shard.job_id) or (
                TaskState(shard.job_id, "GONE") if squeue else None
            )
            shard.slurm_seen_at = seen_at
            if shard.packed:
                shard.slurm = packed_state(shard, states, self.job_folder, squeue, by_array)
            if shard.slurm is not None and shard.slurm.active:
                shard.ended_since = None
        now = self._clock()
        self._fault_delay = _FAULT_DELAY_FIRST
        self._next_query = now + max(self.poll_interval, _QUERY_PUT_OFF_LIMIT)
        self._next_pending_query = now + PENDING_QUERY_EVERY

    def _running_within(self, deadline: Deadline) -> bool:
        """A look for ``wait()`` that asks Slurm only when the wait has time for it.

        Reading the records takes a millisecond; a Slurm query (``sacct``) about a tenth of a
        second. A wait with less than a poll interval left puts a due query off, so that
        ``wait(0.01)`` returns in time, but never for more than :data:`_QUERY_PUT_OFF_LIMIT`
        seconds: a caller that only ever waits briefly still learns what Slurm knows.
        """
        left = deadline.remaining()
        now = self._clock()
        if left is None or left >= self.poll_interval or now >= self._next_query_limit:
            self._query_put_off_since = None
            return self.is_running
        if self._query_put_off_since is None:
            self._query_put_off_since = now
        self._hold_queries = True
        try:
            return self.is_running
        finally:
            self._hold_queries = False

    @property
    def _next_query_limit(self) -> float:
        """Until when a short wait may still put a due Slurm query off."""
        since = self._query_put_off_since
        return math.inf if since is None else since + _QUERY_PUT_OFF_LIMIT


def _known(state: TaskState | None) -> tuple[str, str] | None:
    """What a waiting shard's report shows of Slurm's answer (its state, its node)."""
    return None if state is None else (state.state, state.node)
