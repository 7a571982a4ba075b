"""Durable jobs: submit, watch, resume, retry, cancel. The job directory is the truth.

A job directory holds the resolved config, the manifest (shards, Slurm arrays, attempts,
state), the signed payloads of the shards, their progress records and logs; the outputs are
staged next to their targets under the job's run id. Any process that can read the directory
(the user's shell, a later ``resume`` after the login node died, a Slurm job that commits) can
carry the job forward; every state change goes through :meth:`JobDirectory.update`.
"""

from __future__ import annotations

import logging
import os
import shlex
import socket
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil
import yaml  # type: ignore[import-untyped, unused-ignore]

from ..commit._staging import new_run_id
from ..commit.staged import read_result
from ..coordinators.file_merge import FileMergeCoordinator
from ..engines._worker import report_from_snapshot
from ..engines.base import BaseEngine, WorkerResult
from ..engines.multiprocess import MultiProcessEngine
from ..engines.slurm import SlurmCLI, SlurmEngine
from ..engines.slurm._payload import PayloadStore
from ..engines.slurm._submitter import sbatch_script
from ..engines.slurm.engine import SubmissionKind
from ..engines.slurm.parameters import SlurmParameters, render_job_script
from ..engines.slurm.task import shard_payload_name
from ..errors import ConfigurationError, JobError, ZoopipeHPCError
from ..manager import PipeManager
from ..pipe import Pipe
from ..plan import RunPlan
from ..progress import read_progress
from ..report import PipeReport, PipeStatus
from ._local_runner import LocalRunner
from .config import JobConfig
from .manifest import JobDirectory, JobState, Manifest, ShardRecord

__all__ = [
    "JobError",
    "JobHandle",
    "JobSummary",
    "ShardStatus",
    "dry_run",
    "finish_commit",
    "finish_recover",
    "list_jobs",
    "open_job",
    "submit",
]

log = logging.getLogger(__name__)

#: The environment variable that tells a detached job's recover job that it owns the retries:
#: its value is the ``retry_owner.token`` recorded in the manifest before it was submitted.
RECOVER_TOKEN = "ZOOPIPE_HPC_RECOVER_TOKEN"

ReportCallback = Callable[[PipeReport, list[PipeReport]], None]


@dataclass(frozen=True)
class ShardStatus:
    """One line of ``zoopipe-hpc status``."""

    index: int
    state: str
    rows: int
    rows_per_second: float
    errors: int
    attempts: int
    node: str
    log: str
    message: str


@dataclass(frozen=True)
class JobSummary:
    """One line of ``zoopipe-hpc list``."""

    path: Path
    name: str
    state: str
    engine: str
    shards: int
    done: int
    created: float


def _shard_state(report: PipeReport) -> str:
    return report.status.value


class JobHandle:
    """A job, known by its directory. Cheap to create; reads the manifest when asked."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.directory = JobDirectory(path)
        #: The engine this handle drives the job with (it submits, retries and concludes): set
        #: by submit(), resume() and retry(), never by a command that only looks.
        self._engine: BaseEngine | None = None
        #: A read-only engine that follows the Slurm tasks for reports, and what it follows.
        self._watcher: SlurmEngine | None = None
        self._watched: list[list[str]] = []
        self._merger: FileMergeCoordinator | None = None
        self._runner = LocalRunner(self.directory.path)

    @property
    def path(self) -> Path:
        return self.directory.path

    def manifest(self) -> Manifest:
        return self.directory.read()

    def config(self) -> JobConfig:
        return JobConfig.from_resolved(self.manifest().config)

    # -- building the pieces from the directory -------------------------------------------

    def plan(self, manifest: Manifest | None = None) -> RunPlan:
        """The job's run plan, rebuilt from its config and run id: the same plan its shards
        were staged with, in whatever process asks (the commit job, a later ``resume``)."""
        manifest = manifest or self.manifest()
        config = JobConfig.from_resolved(manifest.config)
        layout = PipeManager.shard_layout(config.make_pipe(), len(manifest.shards))
        return layout.plan(manifest.run_id, self.path)

    def _merger_for(self, manifest: Manifest) -> FileMergeCoordinator:
        if self._merger is None:
            self._merger = FileMergeCoordinator(self.plan(manifest).transaction)
        return self._merger

    def _slurm_engine(self, manifest: Manifest, *, read_only: bool = False) -> SlurmEngine:
        """A Slurm engine for this job: with the job's retries and the manifest as its ledger,
        or ``read_only`` (no retries, no ledger; it never submits or cancels)."""
        config = JobConfig.from_resolved(manifest.config)
        return SlurmEngine(
            folder=self.path.parent,
            job_folder=self.path,
            max_retries=0 if read_only else config.engine.max_retries,
            poll_interval=1.0,
            ledger=None if read_only else _JobLedger(self, config.engine.max_retries),
            **config.engine.slurm_parameters(),
        )

    def _driver(self) -> SlurmEngine:
        """The engine this handle drives the job's Slurm tasks with (submits and retries)."""
        if self._engine is not None:
            return assert_slurm(self._engine)
        manifest = self.manifest()
        if manifest.engine != "slurm":
            raise JobError(f"{self.path}: a local job has no scheduler to attach to")
        engine = self._slurm_engine(manifest)
        engine.attach(self.path, [s.submissions for s in manifest.shards])
        self._engine = engine
        return engine

    def _watching(self, manifest: Manifest) -> SlurmEngine:
        """A read-only engine following the tasks the manifest records now (another process,
        the job's retry owner, may have submitted new ones since the last look)."""
        submissions = [list(s.submissions) for s in manifest.shards]
        if self._watcher is None or self._watched != submissions:
            engine = self._slurm_engine(manifest, read_only=True)
            engine.attach(self.path, submissions, read_only=True)
            self._watcher, self._watched = engine, submissions
        return self._watcher

    def _take_retries(self, why: str) -> None:
        """Make this process the owner of the job's retries (an attached run, resume, retry)."""
        owner = _this_process()

        def change(m: Manifest) -> None:
            m.retry_owner = owner

        self.directory.update(change, what=f"{why}: retries owned by {_describe_owner(owner)}")

    def _refuse_if_driven_elsewhere(self, manifest: Manifest) -> None:
        """Refuse to drive a job that a live process on this host drives (resume, retry)."""
        owner = manifest.retry_owner
        if _is_this_process(owner):
            if self._engine is None:
                raise self._held_by_another_handle()
            return
        if owner.get("kind") != "attached" or _nobody_drives(owner):
            return
        if owner.get("host") == socket.gethostname():
            raise JobError(
                f"{self.path}: this job is being run by {_describe_owner(owner)}; follow it "
                f"with `zoopipe-hpc watch {self.path}`"
            )
        log.warning(
            "%s: taking the job over from %s (on another host: whether it still runs cannot be "
            "seen from here; it retries nothing from now on)",
            self.path.name,
            _describe_owner(owner),
        )

    # -- reporting ---------------------------------------------------------------------------

    def state(self) -> JobState:
        return self.manifest().state

    def shard_reports(self) -> list[PipeReport]:
        """One report per shard: live where an engine watches it, else from the manifest."""
        manifest = self.manifest()
        reports = [_report_from_record(s, self.path / "progress") for s in manifest.shards]
        engine = self._engine
        if engine is None and manifest.engine == "slurm" and not manifest.state.is_final:
            if any(s.submissions for s in manifest.shards):
                engine = self._watching(manifest)  # only looks: never submits, retries, cancels
        if engine is not None:
            for report in engine.pipe_reports:
                reports[report.pipe_index] = report
        return reports

    def _results(self) -> list[WorkerResult]:
        """Every shard's outcome, a completed one with what it staged (its result file)."""
        results = []
        folder = self.path / "progress"
        for r in self.shard_reports():
            outcome = None
            if r.status is PipeStatus.COMPLETED and r.attempt_id:
                # By attempt id (unique): a local run of some shards numbers its own records.
                for path in folder.glob(f"result-*.{r.attempt_id}.json"):
                    outcome = read_result(path, r.attempt_id)
            results.append(WorkerResult(r.pipe_index, r.status, r, r.message, outcome))
        return results

    def report(self) -> PipeReport:
        return PipeReport.aggregate(self.shard_reports())

    def shard_status(self) -> list[ShardStatus]:
        manifest = self.manifest()
        rows = []
        for record, report in zip(manifest.shards, self.shard_reports(), strict=True):
            state = (
                record.state if record.state in ("completed", "cancelled") else report.status.value
            )
            rows.append(
                ShardStatus(
                    index=record.index,
                    state=state,
                    rows=report.total_processed,
                    rows_per_second=report.items_per_second,
                    errors=report.error_count,
                    attempts=len(record.submissions),
                    node=report.host or report.extra.get("node", ""),
                    log=report.extra.get("log", ""),
                    message=report.message or record.message,
                )
            )
        return rows

    # -- driving -----------------------------------------------------------------------------

    def wait(self, on_report: ReportCallback | None = None, poll: float = 1.0) -> bool:
        """Watch until every shard is over, then commit (all succeeded) or mark the job failed.

        A failed job keeps its staged parts: ``retry`` resubmits only the failed shards. For
        a detached job the commit is Slurm's to do: this waits for the manifest to say so.
        Returns True when the job is committed.
        """
        manifest = self.manifest()
        if manifest.state.is_final:
            return manifest.state is JobState.COMMITTED
        if manifest.finish_jobs and manifest.engine == "slurm":
            return self._follow(on_report, poll)
        local = manifest.engine == "local"
        if local and not self._runner.held:
            return self._follow(on_report, poll, local_runner=True)
        if not local and self._engine is None:
            # Not the handle that drives this job (submit, resume and retry make one): watch.
            if _is_this_process(manifest.retry_owner):
                raise self._held_by_another_handle()
            return self._follow(on_report, poll, slurm_owner=True)
        while True:
            reports = self.shard_reports()
            if on_report is not None:
                on_report(PipeReport.aggregate(reports), reports)
            if all(r.is_finished for r in reports):
                break
            if self._engine is None:  # local, claimed by resume() with nothing left to run
                unfinished = [r.pipe_index for r in reports if not r.is_finished]
                raise JobError(f"{self.path}: shards {unfinished} are not running")
            time.sleep(poll)
        committed = self._conclude(self._results())
        self._runner.release()
        return committed

    def _claim_local_run(self) -> None:
        """Become the process that runs this local job, or say who is."""
        if self._runner.try_claim():
            return
        owner = self._runner.owner()
        if owner is not None and self._runner.is_this_process(owner):
            raise self._held_by_another_handle()
        who = self._runner.describe(owner) if owner is not None else "another process"
        raise JobError(
            f"{self.path}: this local job is being run by {who}; follow it with "
            f"`zoopipe-hpc watch {self.path}`"
        )

    def _held_by_another_handle(self) -> JobError:
        return JobError(
            f"{self.path}: this process already runs the job through another JobHandle; "
            "use that one (the handle submit(), resume() or retry() was called on)"
        )

    def _follow(
        self,
        on_report: ReportCallback | None,
        poll: float,
        local_runner: bool = False,
        slurm_owner: bool = False,
    ) -> bool:
        """Watch the manifest until someone else concludes the job; True if it was committed.

        That someone is Slurm's finish jobs for a detached job, the process that runs a local
        job (``local_runner``), or the attached process that owns a Slurm job's retries
        (``slurm_owner``). If that process is gone and the job is not concluded (for Slurm:
        once every shard is over), a :class:`JobError` says that ``resume`` finishes it.
        """

        def over(manifest: Manifest) -> bool:
            return manifest.state.is_final or manifest.state is JobState.FAILED

        if local_runner:  # nobody would conclude a job this process runs while it waits here
            owner = self._runner.owner()
            if owner is not None and self._runner.is_this_process(owner):
                raise self._held_by_another_handle()

        while True:
            manifest = self.manifest()
            reports = self.shard_reports() if on_report is not None or slurm_owner else []
            if on_report is not None:
                on_report(PipeReport.aggregate(reports), reports)
            if over(manifest):
                return manifest.state is JobState.COMMITTED
            owner = manifest.retry_owner
            if slurm_owner and all(r.is_finished for r in reports) and _nobody_drives(owner):
                manifest = self.manifest()  # it may have concluded just now
                if over(manifest):
                    return manifest.state is JobState.COMMITTED
                raise JobError(
                    f"{self.path}: every shard is over, but the process that ran this job "
                    f"({_describe_owner(owner)}) is gone; `zoopipe-hpc resume {self.path}` "
                    f"concludes it"
                )
            if local_runner and self._runner.owner() is None:
                manifest = self.manifest()  # it may have concluded just now
                if over(manifest):
                    return manifest.state is JobState.COMMITTED
                raise JobError(
                    f"{self.path}: no process is running this local job any more (the one "
                    f"that ran it died); `zoopipe-hpc resume {self.path}` finishes it"
                )
            time.sleep(poll)

    def _conclude(self, results: list[WorkerResult]) -> bool:
        """Record the shards' outcomes; commit if all succeeded. Idempotent."""
        manifest = self.manifest()
        if manifest.state.is_final:
            return manifest.state is JobState.COMMITTED
        if manifest.state is JobState.COMMITTING and self._finish_decided_commit(manifest):
            return True

        def record(m: Manifest) -> None:
            for result in results:
                shard = m.shards[result.pipe_index]
                shard.state = result.status.value
                shard.attempt_id = result.report.attempt_id
                shard.message = result.message

        failed = [r for r in results if not r.succeeded or r.outcome is None]
        if failed:
            summary = "; ".join(f"shard {r.pipe_index}: {r.message}" for r in failed)

            def fail(m: Manifest) -> None:
                record(m)
                m.state = JobState.FAILED
                m.message = f"{len(failed)} of {len(results)} shards failed: {summary}"

            self.directory.update(fail, what="shards failed; staged parts kept for retry")
            log.error("job %s failed: %s", self.path.name, summary)
            return False

        def committing(m: Manifest) -> None:
            record(m)
            m.state = JobState.COMMITTING

        manifest = self.directory.update(committing, what="all shards completed; committing")
        transaction = self._merger_for(manifest).transaction
        try:
            transaction.begin()  # this process may not be the one that began it
            self._merger_for(manifest).on_finish(None, results)
        except ZoopipeHPCError as exc:
            if transaction.state == "decided":
                # Decided: the record is kept, and resume (or the next run) finishes it.
                unfinished = f"commit decided but not finished: {exc}"

                def decided(m: Manifest) -> None:
                    m.message = unfinished

                self.directory.update(decided, what="commit decided, publishing failed")
                log.error("job %s: %s", self.path.name, exc)
                return False
            reason = f"commit failed, targets untouched: {exc}"

            def commit_failed(m: Manifest) -> None:
                m.state = JobState.ROLLED_BACK
                m.message = reason

            self.directory.update(commit_failed, what="commit failed; rolled back")
            log.error("job %s: commit failed: %s", self.path.name, exc)
            return False

        def committed(m: Manifest) -> None:
            m.state = JobState.COMMITTED
            m.message = ""

        self.directory.update(committed, what="committed")
        return True

    def _finish_decided_commit(self, manifest: Manifest) -> bool:
        """A process that was committing died after the decision: finish from the record."""
        if not self._merger_for(manifest).transaction.recover(keep_undone=True):
            return False  # no record, or undone with the parts kept: commit again

        def committed(m: Manifest) -> None:
            m.state = JobState.COMMITTED
            m.message = "committed (finished from the commit record after a crash)"

        self.directory.update(committed, what="commit finished from its record")
        return True

    def retry(self) -> list[int]:
        """Resubmit only the shards that failed (one new array); returns their indices."""
        manifest = self.manifest()
        if manifest.state.is_final:
            raise JobError(f"{self.path}: the job is {manifest.state.value}; nothing to retry")
        failed = [s.index for s in manifest.shards if s.state in ("failed", "cancelled")]
        if not failed:
            raise JobError(f"{self.path}: no failed shard to retry (state {manifest.state.value})")
        if manifest.engine == "slurm":
            detached = bool(manifest.finish_jobs)
            if not detached:  # whoever asks for the retry watches it, and owns its retries
                self._take_retries("retry")
            self._driver().resubmit(failed)
            if detached:  # new finish jobs; the new recover job owns the retries
                submit_finish_jobs(self)
                self._engine = None
        else:
            self._run_local(failed)
        return failed

    def resume(self) -> list[int]:
        """Reattach after the login-node process died; returns the shards submitted again.

        Slurm: running and finished tasks keep going, nothing is submitted again. Local: shards
        without a successful record are run again.
        """
        manifest = self.manifest()
        if manifest.state.is_final:
            return []
        if manifest.engine == "slurm":
            if manifest.finish_jobs:  # detached: Slurm's recover job owns the retries
                return []
            if manifest.state is not JobState.FAILED:
                self._refuse_if_driven_elsewhere(manifest)
            if not _is_this_process(manifest.retry_owner):
                self._take_retries("resume")
            self._driver()
            return []
        self._claim_local_run()
        manifest = self.manifest()  # as the previous runner left it
        done = {s.index for s in manifest.shards if s.state == "completed"}
        todo = [s.index for s in manifest.shards if s.index not in done]
        if todo:
            self._run_local(todo)
        return todo

    def cancel(self) -> None:
        """Cancel the arrays and the finishing jobs, discard the staged parts."""
        manifest = self.manifest()
        if manifest.state.is_final:
            raise JobError(f"{self.path}: the job is already {manifest.state.value}")
        if manifest.engine == "slurm":
            manifest = self._revoke_retries()  # nobody retries what is being cancelled
            ids = sorted(set(manifest.arrays) | set(manifest.finish_jobs.values()))
            if ids:
                SlurmCLI().run(["scancel", *ids])
        elif self._engine is not None:
            self._engine.shutdown()  # this process runs it: stop its workers
        else:
            self._claim_local_run()  # refuses while another process runs it
        self._merger_for(manifest).on_error(None, JobError("cancelled"))

        def cancelled(m: Manifest) -> None:
            m.state = JobState.CANCELLED
            m.message = "cancelled by the user; staged parts discarded"

        self.directory.update(cancelled, what="cancelled")
        self._runner.release()

    def _record_outcomes(self, results: list[WorkerResult]) -> None:
        """Record each shard's outcome and leave the job's state as it is."""

        def change(m: Manifest) -> None:
            for result in results:
                shard = m.shards[result.pipe_index]
                shard.state = result.status.value
                shard.attempt_id = result.report.attempt_id
                shard.message = result.message

        self.directory.update(change, what="shard outcomes recorded")

    def _revoke_retries(self) -> Manifest:
        def change(m: Manifest) -> None:
            m.retry_owner = {}

        return self.directory.update(change, what="cancelling: no retries from now on")

    def roll_back(self, reason: str) -> None:
        """Give up: discard the staged parts; the targets stay as they were."""
        manifest = self.manifest()
        if manifest.state.is_final:
            return
        self._merger_for(manifest).on_error(None, JobError(reason))

        def rolled_back(m: Manifest) -> None:
            m.state = JobState.ROLLED_BACK
            m.message = reason

        self.directory.update(rolled_back, what="rolled back")

    # -- local engine ------------------------------------------------------------------------

    def _run_local(self, indices: list[int]) -> None:
        """Run these shards from their payloads in local processes, recording attempts."""
        self._claim_local_run()
        store = PayloadStore(self.path)
        pipes = [store.load(shard_payload_name(i)) for i in indices]
        engine = _LocalSubset(indices, self.path / "progress", self._record_local_attempts)
        engine.start(pipes)
        self._engine = engine

    def _record_local_attempts(self, indices: list[int], attempts: list[str]) -> None:
        def change(m: Manifest) -> None:
            for index, attempt in zip(indices, attempts, strict=True):
                m.shards[index].submissions.append(attempt)
                m.shards[index].attempt_id = attempt  # its progress record is the live one
                m.shards[index].state = "running"
            m.state = JobState.RUNNING

        self.directory.update(change, what=f"local run of shards {indices}")


class _JobLedger:
    """The manifest as a Slurm engine's submission ledger (see ``SubmissionLedger``).

    Every ``sbatch`` of a shard is announced in the manifest first (``submitting``), under the
    job lock, together with the checks that decide whether it may happen at all: not once the
    job is over; an automatic retry only by the job's retry owner and only while the shard has
    submissions left in its round (``1 + max_retries``), whichever process made the others.
    """

    def __init__(self, handle: JobHandle, max_retries: int) -> None:
        self.handle = handle
        self.max_retries = max_retries

    def reserve(self, indices: list[int], kind: SubmissionKind) -> tuple[str, list[int]]:
        token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        allowed: list[int] = []

        def change(m: Manifest) -> None:
            allowed[:] = _may_submit(m, indices, kind, self.max_retries)
            m.submitting[token] = list(allowed)
            for index in allowed:
                if kind == "resubmit":  # asked for by a person: a new round of submissions
                    m.shards[index].round_start = len(m.shards[index].submissions)

        try:
            self.handle.directory.update(change, what=f"submitting shards {indices} ({kind})")
        except _Refused as exc:
            log.warning("%s: shards %s not submitted: %s", self.handle.path.name, indices, exc)
            return token, []
        return token, allowed

    def record(self, token: str, array: str, indices: list[int]) -> None:
        unwanted: list[str] = []

        def change(m: Manifest) -> None:
            m.submitting.pop(token, None)
            m.arrays.append(array)
            over = m.state.is_final
            for task, index in enumerate(indices):
                m.shards[index].submissions.append(f"{array}_{task}")
                m.shards[index].state = "cancelled" if over else "pending"
            if over:
                unwanted.append(m.state.value)
            else:
                m.state = JobState.RUNNING

        self.handle.directory.update(
            change, what=f"submitted array {array} ({len(indices)} shards)"
        )
        if unwanted:  # the job ended while sbatch ran (a cancel): the array must not run
            log.warning(
                "%s: array %s came after the job was %s; cancelling it", token, array, *unwanted
            )
            SlurmCLI().run(["scancel", array])

    def release(self, token: str) -> None:
        def change(m: Manifest) -> None:
            m.submitting.pop(token, None)

        self.handle.directory.update(change, what="sbatch refused; submission withdrawn")


class _Refused(Exception):
    """Internal: a submission the manifest does not allow (nothing is written)."""


def _may_submit(
    manifest: Manifest, indices: list[int], kind: SubmissionKind, max_retries: int
) -> list[int]:
    """The shards of ``indices`` that may be submitted now; :class:`_Refused` if none."""
    if manifest.state.is_final:
        raise _Refused(f"the job is {manifest.state.value}")
    if kind == "first":
        again = [i for i in indices if manifest.submissions_used(i)]
        if again:
            raise _Refused(f"shards {again} were submitted already")
        return list(indices)
    if kind == "resubmit":
        return list(indices)
    owner = manifest.retry_owner
    if not _is_this_process(owner):
        raise _Refused(f"the retries of this job belong to {_describe_owner(owner)}")
    limit = 1 + max_retries
    allowed = [i for i in indices if manifest.submissions_used(i) < limit]
    if not allowed:
        raise _Refused(f"each was submitted {limit} times already (1 + max_retries)")
    return allowed


def _this_process() -> dict[str, str]:
    """This process as a retry owner (``kind: attached``)."""
    return {
        "kind": "attached",
        "host": socket.gethostname(),
        "pid": str(os.getpid()),
        "started": f"{psutil.Process().create_time():.2f}",
    }


def _is_this_process(owner: dict[str, str]) -> bool:
    """Whether ``owner`` (a manifest's ``retry_owner``) is the calling process."""
    if owner.get("kind") == "attached":
        return owner.get("host") == socket.gethostname() and owner.get("pid") == str(os.getpid())
    if owner.get("kind") == "detached":
        token = os.environ.get(RECOVER_TOKEN, "")
        return bool(token) and owner.get("token") == token
    return False


def _nobody_drives(owner: dict[str, str]) -> bool:
    """True when no process owns the retries: none recorded, or an attached owner on this host
    that is provably gone (its pid is dead or belongs to a later process)."""
    kind = owner.get("kind")
    if kind == "detached":
        return False
    if kind != "attached":
        return True
    if owner.get("host") != socket.gethostname():
        return False  # cannot be seen from here
    try:
        started = psutil.Process(int(owner.get("pid", ""))).create_time()
    except psutil.NoSuchProcess:
        return True
    except (ValueError, psutil.Error):
        return False
    recorded = owner.get("started")
    return recorded is not None and abs(started - float(recorded)) > 1.0


def _describe_owner(owner: dict[str, str]) -> str:
    if owner.get("kind") == "attached":
        return f"pid {owner.get('pid', '?')} on host {owner.get('host', '?')}"
    if owner.get("kind") == "detached":
        return f"the detached recover job {owner.get('job') or '(not submitted yet)'}"
    return "nobody"


class _LocalSubset(MultiProcessEngine):
    """MultiProcessEngine over some shards of a job, reporting under their job indices."""

    def __init__(
        self,
        indices: list[int],
        progress_dir: Path,
        on_attempts: Callable[[list[int], list[str]], None],
    ) -> None:
        super().__init__(progress_dir=progress_dir)
        self.indices = indices
        self._on_attempts = on_attempts

    def start(self, pipes: Sequence[Pipe]) -> None:
        super().start(pipes)
        self._on_attempts(self.indices, self.attempt_ids)

    @property
    def pipe_reports(self) -> list[PipeReport]:
        reports = super().pipe_reports
        for report in reports:
            report.pipe_index = self.indices[report.pipe_index]
        return reports


def assert_slurm(engine: BaseEngine) -> SlurmEngine:
    if not isinstance(engine, SlurmEngine):
        raise JobError("this operation needs the Slurm engine")
    return engine


def _report_from_record(record: ShardRecord, progress_dir: Path) -> PipeReport:
    """A shard's report from the manifest, with its counters from its attempt's record."""
    if record.attempt_id:
        for path in progress_dir.glob(f"progress-*.{record.attempt_id}.rec"):
            snapshot = read_progress(path, expected_attempt_id=record.attempt_id)
            if snapshot is not None:
                report = report_from_snapshot(record.index, snapshot)
                report.extra = {"attempts": str(len(record.submissions))}
                return report
    status = {
        "completed": PipeStatus.COMPLETED,
        "failed": PipeStatus.FAILED,
        "cancelled": PipeStatus.CANCELLED,
        "running": PipeStatus.RUNNING,
    }.get(record.state, PipeStatus.PENDING)
    return PipeReport(
        pipe_index=record.index,
        status=status,
        message=record.message,
        attempt_id=record.attempt_id,
        extra={"attempts": str(len(record.submissions))},
    )


# -- module functions -------------------------------------------------------------------------


def submit(config: JobConfig, *, engine: str | None = None, detach: bool = False) -> JobHandle:
    """Create the job directory, stage the shards and submit them; returns at once."""
    kind = _engine_kind(config, engine, detach)
    run_id = new_run_id()
    path = config.jobs_path() / f"{config.name}-{run_id}"
    plan = PipeManager.shard_layout(config.make_pipe(), config.workers).plan(run_id, path)
    resolved = config.resolved()
    resolved["engine"]["kind"] = kind
    attached_slurm = kind == "slurm" and not detach
    handle = JobHandle(path)
    handle.directory.create(
        Manifest(
            job_id=path.name,
            name=config.name,
            engine=kind,
            run_id=run_id,
            config=resolved,
            shards=[
                ShardRecord(index=i, source=p.input_adapter.describe(), submissions=[])
                for i, p in enumerate(plan.pipes)
            ],
            created=time.time(),
            # An attached run retries its shards itself; a detached job's recover job does.
            retry_owner=_this_process() if attached_slurm else {},
        )
    )
    (path / "progress").mkdir(mode=0o700, exist_ok=True)
    if kind == "local":
        handle._claim_local_run()  # before anything runs: a watcher sees a live runner
    # For people: the config as resolved (extends applied, absolute paths). The manifest's
    # checksummed copy is the one zoopipe-hpc reads.
    (path / "job.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
    merger = FileMergeCoordinator(plan.transaction)
    handle._merger = merger
    merger.on_start(None)
    store = PayloadStore(path)
    store.create()
    for index, shard_pipe in enumerate(plan.pipes):
        store.dump(shard_payload_name(index), shard_pipe)
    if kind == "slurm":
        slurm = handle._slurm_engine(handle.manifest())
        handle._engine = slurm
        slurm.start_from_payloads(len(plan.pipes))  # the payloads written just above
        if detach:
            submit_finish_jobs(handle)
            handle._engine = None  # Slurm drives it now: this handle only watches
    else:
        handle._run_local(list(range(len(plan.pipes))))
    return handle


def _engine_kind(config: JobConfig, engine: str | None, detach: bool) -> str:
    kind = engine or config.engine.kind
    if kind not in ("local", "slurm"):
        raise ConfigurationError(f"engine must be 'local' or 'slurm', got {kind!r}")
    if detach and kind != "slurm":
        raise ConfigurationError(
            "--detach needs the Slurm engine: with local processes, nothing would be left to "
            "finish the job after this command returns"
        )
    return kind


def submit_finish_jobs(handle: JobHandle) -> dict[str, str]:
    """Submit the commit step (afterok) and the recovery step (afternotok) as Slurm jobs.

    They depend on the job's current arrays, so the target is committed, retried or rolled
    back by Slurm itself, whether or not anyone is still logged in. The recover job owns the
    job's retries from now on.
    """
    manifest = handle.manifest()
    config = JobConfig.from_resolved(manifest.config)
    # The arrays of the shards still to run: after a retry, not the earlier array, whose
    # failed task would make afterok impossible (and the commit job be killed with it).
    current = sorted(
        {
            s.submissions[-1].split("_")[0]
            for s in manifest.shards
            if s.submissions and s.state != "completed"
        }
    )
    token = uuid.uuid4().hex
    scripts = finish_job_scripts(config, handle.path, current, token=token)

    def own(m: Manifest) -> None:  # before sbatch: the new recover job may start at once
        m.retry_owner = {"kind": "detached", "token": token, "job": ""}

    handle.directory.update(own, what="retries owned by the next recover job")
    cli = SlurmCLI()
    jobs: dict[str, str] = {}
    for step, script in scripts.items():
        path = handle.path / "logs" / f"{step}-{token[:12]}.sh"
        path.write_text(script)
        jobs[step] = sbatch_script(cli, path)

    def change(m: Manifest) -> None:
        m.finish_jobs = jobs
        if m.retry_owner.get("token") == token:
            m.retry_owner = {**m.retry_owner, "job": jobs["recover"]}

    handle.directory.update(change, what=f"finish jobs {jobs} after arrays {current}")
    return jobs


def finish_job_scripts(
    config: JobConfig, path: Path, arrays: Sequence[str], *, token: str
) -> dict[str, str]:
    """The sbatch scripts of a detached job's commit (afterok) and recover (afternotok) jobs.

    Rendered like the array's (``render_job_script``), with the array's partition, account,
    qos, constraint, extra directives and setup lines, one CPU, and ``engine.finish_time`` and
    ``engine.finish_mem``; their logs are ``logs/<step>-<job id>.out``. The recover job gets
    ``token``, which makes it the owner of the retries (see ``retry_owner``).
    """
    parameters = SlurmParameters.validate_kwargs(**config.engine.slurm_parameters())
    python = shlex.quote(sys.executable)
    logs = path / "logs"
    scripts: dict[str, str] = {}
    for step, condition in (("commit", "afterok"), ("recover", "afternotok")):
        own = parameters.for_follow_up(
            job_name=f"{config.name}-{step}",
            time=config.engine.finish_time,
            mem=config.engine.finish_mem,
        )
        scripts[step] = render_job_script(
            own,
            command=f"{python} -m zoopipe_hpc.cli _{step} {shlex.quote(str(path))}",
            log_folder=logs,
            tasks=None,
            environment={
                "ZOOPIPE_HPC_JOB_FOLDER": str(path),
                **({RECOVER_TOKEN: token} if step == "recover" else {}),
            },
            log_file=logs / f"{step}-%j.out",
            directives={
                "dependency": f"{condition}:{':'.join(arrays)}",
                "kill-on-invalid-dep": "yes",
                "chdir": str(path),
            },
        )
    return scripts


def dry_run(
    config: JobConfig, *, engine: str | None = None, detach: bool = False
) -> list[tuple[str, str]]:
    """What :func:`submit` would hand to ``sbatch``, as (what, script) in submission order.

    Nothing is submitted and no job directory is made; the scripts name the job directory as
    ``<jobs_dir>/<name>-<run id>`` and the array as ``<array job id>``. The job file is checked
    as ``submit`` checks it (the schema model is imported). A local job submits nothing: [].
    """
    kind = _engine_kind(config, engine, detach)
    config.make_pipe()
    if kind != "slurm":
        return []
    path = config.jobs_path() / f"{config.name}-<run id>"
    slurm = SlurmEngine(folder=path.parent, job_folder=path, **config.engine.slurm_parameters())
    scripts = [(f"array of {config.workers} shards", slurm.job_script(config.workers))]
    if detach:
        arrays = ["<array job id>"]
        for step, script in finish_job_scripts(config, path, arrays, token="<token>").items():
            scripts.append((f"{step} job", script))
    return scripts


def open_job(path: str | os.PathLike[str]) -> JobHandle:
    handle = JobHandle(path)
    handle.manifest()  # refuses a missing or tampered manifest at once
    return handle


def list_jobs(jobs_dir: str | os.PathLike[str]) -> list[JobSummary]:
    """Every job directory under ``jobs_dir``, newest first (unreadable ones are reported)."""
    summaries = []
    root = Path(jobs_dir)
    if not root.is_dir():
        return []
    for path in sorted(root.iterdir(), reverse=True):
        if not (path / JobDirectory.MANIFEST).exists():
            continue
        try:
            m = JobDirectory(path).read()
        except ZoopipeHPCError as exc:
            summaries.append(JobSummary(path, path.name, f"unreadable: {exc}", "?", 0, 0, 0.0))
            continue
        done = sum(1 for s in m.shards if s.state == "completed")
        summaries.append(
            JobSummary(path, m.name, m.state.value, m.engine, len(m.shards), done, m.created)
        )
    return summaries


def finish_commit(path: str | os.PathLike[str], timeout: float = 300.0) -> bool:
    """The detached commit step (a Slurm job that runs once every task succeeded)."""
    handle = open_job(path)
    if handle.manifest().state.is_final:
        return handle.manifest().state is JobState.COMMITTED
    _wait_for_records(handle, timeout)
    return handle._conclude(handle._results())


def finish_recover(path: str | os.PathLike[str], timeout: float = 300.0) -> bool:
    """The detached recovery step (a Slurm job that runs when a task failed).

    Only the recover job the manifest names as the retry owner acts. If every failed shard has
    submissions left (``1 + max_retries`` in all, counted in the manifest), they are
    resubmitted, with a new commit and recovery step; otherwise the staged parts are discarded
    and the targets stay as they were.
    """
    handle = open_job(path)
    manifest = handle.manifest()
    if manifest.state.is_final:
        return False
    if not _is_this_process(manifest.retry_owner):
        log.warning(
            "%s: this recover job (%s) does not own the job's retries (%s): nothing to do",
            handle.path.name,
            os.environ.get("SLURM_JOB_ID", "not a Slurm job"),
            _describe_owner(manifest.retry_owner),
        )
        return False
    _wait_for_records(handle, timeout)
    results = handle._results()
    failed = [r for r in results if not r.succeeded]
    if not failed:
        return handle._conclude(results)
    # The shards' outcomes go on record; the job stays running while this step decides, so
    # that a watcher does not take it for failed while it is being retried or rolled back.
    handle._record_outcomes(results)
    manifest = handle.manifest()
    limit = 1 + JobConfig.from_resolved(manifest.config).engine.max_retries
    indices = [r.pipe_index for r in failed]
    spent = [i for i in indices if manifest.submissions_used(i) >= limit]
    if not spent:
        resubmitted = handle._driver().resubmit(indices, automatic=True)
        handle._engine = None
        if resubmitted:
            submit_finish_jobs(handle)
            return False
    summary = "; ".join(f"shard {r.pipe_index}: {r.message}" for r in failed)
    handle.roll_back(
        f"{len(failed)} of {len(results)} shards failed, shards {spent or indices} with no "
        f"retries left (max_retries {limit - 1}): {summary}"
    )
    return False


def _wait_for_records(handle: JobHandle, timeout: float) -> None:
    """Slurm says the tasks are over; give their last records time to reach this node."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(r.is_finished for r in handle.shard_reports()):
            return
        time.sleep(1.0)
