"""A job read from its directory: its manifest, plan, engines and the shards' reports.

:class:`JobReader` is the read-only part of a :class:`~zoopipe_hpc.jobs.handle.JobHandle`:
what ``status``, ``list`` and a second ``watch`` use. It follows running Slurm tasks with a
read-only engine (one that never submits, retries or cancels); the engine that drives a job,
and the manifest as its ledger, are only made for the handle that drives it.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Final

from ..commit.staged import read_result, result_path
from ..coordinators.file_merge import FileMergeCoordinator
from ..engines.base import BaseEngine, WorkerResult
from ..engines.slurm import SlurmEngine
from ..manager import PipeManager
from ..plan import RunPlan
from ..report import PipeReport, PipeStatus
from ._ledger import JobLedger
from ._local_runner import LocalRunner
from .config import JobConfig
from .listing import RecordFinder, ShardStatus, read_shard_report
from .manifest import JobDirectory, JobState, Manifest, ShardRecord

__all__ = ["JobReader"]

#: A look (``watch``, ``status``) reads the manifest again when its file changed (a writer
#: replaces it: a new inode) and at least this often, in case this node's attribute cache
#: hides a change (NFS keeps attributes up to ``acregmax``, 60 s by default).
LOOK_REREAD_EVERY: Final = 10.0


class JobReader:
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
        #: The settled shards' reports (built from their attempt's final record), each with the
        #: manifest's record of the shard it was built for: read once, not at every look.
        self._settled: dict[int, tuple[ShardRecord, PipeReport]] = {}
        #: The manifest of the last look, with the file's (inode, size, mtime) and when read.
        self._looked: tuple[tuple[int, int, int], float, Manifest] | None = None

    @property
    def path(self) -> Path:
        return self.directory.path

    def manifest(self) -> Manifest:
        return self.directory.read()

    def looked_manifest(self) -> Manifest:
        """The manifest for a look that only reports (each poll of a ``watch``): read again
        only when the file changed or :data:`LOOK_REREAD_EVERY` seconds passed, since at
        50,000 shards it is megabytes to read and parse. What decides (a retry, the commit)
        reads :meth:`manifest`, always fresh."""
        try:
            st = os.stat(self.directory.manifest_path)
        except OSError:
            return self.manifest()  # its reading names the problem
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        now = time.monotonic()
        looked = self._looked
        if looked is not None and looked[0] == key and now - looked[1] < LOOK_REREAD_EVERY:
            return looked[2]
        manifest = self.manifest()  # replaced since the stat: the next look reads it again
        self._looked = (key, now, manifest)
        return manifest

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
            ledger=None if read_only else JobLedger(self, config.engine.max_retries),
            max_tasks=config.engine.max_tasks,
            workers_per_task=config.engine.workers_per_task,
            **config.engine.slurm_parameters(),
        )

    def _watching(self, manifest: Manifest) -> SlurmEngine:
        """A read-only engine following the tasks the manifest records now (another process,
        the job's retry owner, may have submitted new ones since the last look)."""
        submissions = [list(s.submissions) for s in manifest.shards]
        if self._watcher is None or self._watched != submissions:
            engine = self._slurm_engine(manifest, read_only=True)
            engine.attach(self.path, submissions, read_only=True)
            self._watcher, self._watched = engine, submissions
        return self._watcher

    # -- reporting ---------------------------------------------------------------------------

    def state(self) -> JobState:
        return self.manifest().state

    def shard_reports(self, manifest: Manifest | None = None) -> list[PipeReport]:
        """One report per shard: live where an engine watches it, else from the manifest
        (``manifest``, or the one read now) and the attempt's progress record.

        A look reads the records of the shards not settled only: a shard whose attempt's
        record was final when last read keeps that report while the manifest's record of the
        shard stays the same, so a ``watch`` of a job of 10,000 shards does not open 10,000
        files a second."""
        manifest = manifest or self.manifest()
        find = RecordFinder(self.path / "progress", named_by_shard=manifest.engine == "slurm")
        reports = [self._shard_report(s, find) for s in manifest.shards]
        engine = self._engine
        if engine is None and manifest.engine == "slurm" and not manifest.state.is_final:
            if any(s.submissions for s in manifest.shards):
                engine = self._watching(manifest)  # only looks: never submits, retries, cancels
        if engine is not None:
            for report in engine.pipe_reports:
                reports[report.pipe_index] = report
        return reports

    def _shard_report(self, record: ShardRecord, find: RecordFinder) -> PipeReport:
        kept = self._settled.get(record.index)
        if kept is not None and kept[0] == record:
            return kept[1]
        report, settled = read_shard_report(record, find)
        if settled:
            self._settled[record.index] = (
                replace(record, submissions=list(record.submissions)),
                report,
            )
        else:
            self._settled.pop(record.index, None)
        return report

    def _results(self) -> list[WorkerResult]:
        """Every shard's outcome, a completed one with what it staged (its result file)."""
        results = []
        find = RecordFinder(self.path / "progress")
        for r in self.shard_reports():
            outcome = None
            record = find(r.pipe_index, r.attempt_id) if r.attempt_id else None
            if r.status is PipeStatus.COMPLETED and record is not None:
                outcome = read_result(result_path(record), r.attempt_id)
            results.append(WorkerResult(r.pipe_index, r.status, r, r.message, outcome))
        return results

    def report(self) -> PipeReport:
        return PipeReport.aggregate(self.shard_reports())

    def shard_status(self) -> list[ShardStatus]:
        manifest = self.manifest()
        rows = []
        for record, report in zip(manifest.shards, self.shard_reports(manifest), strict=True):
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
