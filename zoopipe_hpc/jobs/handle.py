"""The :class:`JobHandle`: a durable job, known by its directory, watched and driven from it.

A handle reads the job (:class:`JobReader`) and concludes it (:class:`JobConcluder`); this
module adds the driving: ``wait`` (watch the shards, then conclude), ``retry``, ``resume`` and
``cancel``, with the job's retries owned by the one process that drives it (recorded in the
manifest: see :mod:`zoopipe_hpc.jobs._ownership`). A handle that did not submit, resume or
retry the job only watches: it never submits, retries or cancels a task by itself.
"""

from __future__ import annotations

import copy
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .._deadline import wait_until
from ..engines.base import BaseEngine
from ..engines.multiprocess import MultiProcessEngine
from ..engines.slurm import SlurmCLI, SlurmEngine
from ..engines.slurm._payload import PayloadStore
from ..engines.slurm.task import shard_payload_name
from ..errors import JobError, SlurmCommandError
from ..pipe import Pipe
from ..report import PipeReport
from ._concluding import JobConcluder
from ._ownership import describe_owner, is_this_process, nobody_drives, this_process
from .follow_up import submit_finish_jobs
from .manifest import JobState, Manifest

__all__ = ["JobHandle", "ReportCallback", "assert_slurm", "open_job"]

log = logging.getLogger(__name__)

#: Seconds between two looks of a watch at a detached job's finish jobs.
_STRANDED_EVERY = 30.0

ReportCallback = Callable[[PipeReport, list[PipeReport]], None]


class JobHandle(JobConcluder):
    """A job, known by its directory. Cheap to create; reads the manifest when asked."""

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

    def _take_retries(self, why: str) -> None:
        """Make this process the owner of the job's retries (an attached run, resume, retry)."""
        owner = this_process()

        def change(m: Manifest) -> None:
            m.retry_owner = owner

        self.directory.update(change, what=f"{why}: retries owned by {describe_owner(owner)}")

    def _refuse_if_driven_elsewhere(self, manifest: Manifest) -> None:
        """Refuse to drive a job that a live process on this host drives (resume, retry)."""
        owner = manifest.retry_owner
        if is_this_process(owner):
            if self._engine is None:
                raise self._held_by_another_handle()
            return
        if owner.get("kind") != "attached" or nobody_drives(owner):
            return
        if owner.get("host") == socket.gethostname():
            raise JobError(
                f"{self.path}: this job is being run by {describe_owner(owner)}; follow it "
                f"with `zoopipe-hpc watch {self.path}`"
            )
        log.warning(
            "%s: taking the job over from %s (on another host: whether it still runs cannot be "
            "seen from here; it retries nothing from now on)",
            self.path.name,
            describe_owner(owner),
        )

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
            if is_this_process(manifest.retry_owner):
                raise self._held_by_another_handle()
            return self._follow(on_report, poll, slurm_owner=True)

        driver = self._engine if not local else None

        def all_over() -> bool:
            if driver is not None:
                # The Slurm engine that drives the job follows every shard: its look costs
                # O(shards not settled), and neither the manifest nor a report per shard is
                # read or made again at every poll.
                running = driver.is_running
                if on_report is not None:
                    on_report(driver.report, driver.pipe_reports)
                return not running
            reports = self.shard_reports()
            if on_report is not None:
                on_report(PipeReport.aggregate(reports), reports)
            if all(r.is_finished for r in reports):
                return True
            if self._engine is None:  # local, claimed by resume() with nothing left to run
                unfinished = [r.pipe_index for r in reports if not r.is_finished]
                raise JobError(f"{self.path}: shards {unfinished} are not running")
            return False

        wait_until(all_over, None, interval=poll)  # no deadline: until every shard is over
        committed = self._conclude(self._results())
        self._runner.release()
        return committed

    def _stranded_due(self) -> bool:
        """Whether a watch may ask Slurm about the finish jobs now: at most twice a minute, so
        that watching a detached job stays inside the engine's request budget."""
        now = time.monotonic()
        if now - getattr(self, "_stranded_asked", -1e9) < _STRANDED_EVERY:
            return False
        self._stranded_asked = now
        return True

    def _stranded(self, manifest: Manifest) -> bool:
        """A detached job nobody will conclude: every shard is over, the job is not, and
        Slurm runs none of its finish jobs (the commit job died, or was cancelled with the
        recover job). One state query, made only when every shard is over."""
        if manifest.state.is_final or manifest.state is JobState.FAILED:
            return False
        if manifest.state is not JobState.COMMITTING:
            if not all(r.is_finished for r in self.shard_reports(manifest)):
                return False
        ids = sorted(manifest.finish_jobs.values())
        try:
            out = SlurmCLI().run(
                ["squeue", "--noheader", "--jobs", ",".join(ids), "--format=%i|%T"]
            )
        except SlurmCommandError as exc:
            if "invalid job id" in str(exc).lower():  # gone from the queue long ago
                now = self.manifest()
                return now.finish_jobs == manifest.finish_jobs and not now.state.is_final
            log.warning("cannot ask Slurm about finish jobs %s: %s", ids, exc)
            return False  # unknown: never conclude beside a commit job that may be running
        if any(line.strip() for line in out.splitlines()):
            return False
        # None of them in the queue: stranded only if the manifest still names the same finish
        # jobs (a recover job that just resubmitted has recorded new ones before it exited).
        now = self.manifest()
        return now.finish_jobs == manifest.finish_jobs and not (
            now.state.is_final or now.state is JobState.FAILED
        )

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
        committed = False

        def over(manifest: Manifest) -> bool:
            nonlocal committed
            committed = manifest.state is JobState.COMMITTED
            return manifest.state.is_final or manifest.state is JobState.FAILED

        detached = bool(self.manifest().finish_jobs) and not local_runner and not slurm_owner
        if local_runner:  # nobody would conclude a job this process runs while it waits here
            owner = self._runner.owner()
            if owner is not None and self._runner.is_this_process(owner):
                raise self._held_by_another_handle()

        def concluded() -> bool:
            # At most one read a look (none while the file is unchanged); the reports are
            # built from it. Before a watch ends in an error, a fresh read is asked again.
            manifest = self.looked_manifest()
            reports = self.shard_reports(manifest) if on_report is not None or slurm_owner else []
            if on_report is not None:
                on_report(PipeReport.aggregate(reports), reports)
            if over(manifest):
                return True
            owner = manifest.retry_owner
            if slurm_owner and all(r.is_finished for r in reports) and nobody_drives(owner):
                if over(self.manifest()):  # it may have concluded just now
                    return True
                raise JobError(
                    f"{self.path}: every shard is over, but the process that ran this job "
                    f"({describe_owner(owner)}) is gone; `zoopipe-hpc resume {self.path}` "
                    f"concludes it"
                )
            if detached and self._stranded_due() and self._stranded(manifest):
                if over(self.manifest()):  # it may have concluded just now
                    return True
                raise JobError(
                    f"{self.path}: Slurm's commit and recover jobs "
                    f"({', '.join(manifest.finish_jobs.values())}) are over but the job is "
                    f"{manifest.state.value}; `zoopipe-hpc resume {self.path}` concludes it"
                )
            if local_runner and self._runner.owner() is None:
                if over(self.manifest()):  # it may have concluded just now
                    return True
                raise JobError(
                    f"{self.path}: no process is running this local job any more (the one "
                    f"that ran it died); `zoopipe-hpc resume {self.path}` finishes it"
                )
            return False

        wait_until(concluded, None, interval=poll)  # no deadline: until the job is concluded
        return committed

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
                if self._stranded(manifest):
                    # The commit (or recover) job died before concluding: finish here, from
                    # the commit record or the shards' result files; nothing is resubmitted.
                    log.warning("%s: the finish jobs are gone; concluding here", self.path.name)
                    self._conclude(self._results())
                return []
            if manifest.state is not JobState.FAILED:
                self._refuse_if_driven_elsewhere(manifest)
            if not is_this_process(manifest.retry_owner):
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

    def _revoke_retries(self) -> Manifest:
        def change(m: Manifest) -> None:
            m.retry_owner = {}

        return self.directory.update(change, what="cancelling: no retries from now on")

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
        # The engine's settled reports are shared and kept (read-only): relabel copies.
        relabelled = []
        for report in super().pipe_reports:
            mine = copy.copy(report)
            mine.pipe_index = self.indices[report.pipe_index]
            relabelled.append(mine)
        return relabelled


def assert_slurm(engine: BaseEngine) -> SlurmEngine:
    if not isinstance(engine, SlurmEngine):
        raise JobError("this operation needs the Slurm engine")
    return engine


def open_job(path: str | os.PathLike[str]) -> JobHandle:
    handle = JobHandle(path)
    handle.manifest()  # refuses a missing or tampered manifest at once
    return handle
