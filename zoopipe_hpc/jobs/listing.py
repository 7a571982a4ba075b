"""What ``zoopipe-hpc list`` and ``status`` show, read from job directories alone.

:func:`list_jobs` summarises every job under a jobs folder (:class:`JobSummary`);
:class:`ShardStatus` is one line of a job's status; :func:`report_from_record` rebuilds a
shard's report from its manifest record and its attempt's progress record, for a shard that no
engine of this process follows. Nothing here submits, retries or changes a job.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..engines._attempts import record_name
from ..engines._worker import report_from_snapshot
from ..errors import ZoopipeHPCError
from ..progress import read_progress
from ..report import PipeReport, PipeStatus
from .manifest import JobDirectory, ShardRecord

__all__ = ["JobSummary", "ShardStatus", "attempt_record", "list_jobs", "report_from_record"]


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


def attempt_record(progress_dir: Path, index: int, attempt_id: str) -> Path | None:
    """The progress record of shard ``index``'s attempt ``attempt_id``, None if it has none.

    A Slurm attempt's record is named by the shard (one task run of a packed array runs many
    shards under one attempt id); a local run of some shards numbers its records its own way,
    but gives each shard an attempt id of its own.
    """
    exact = progress_dir / record_name(index, attempt_id)
    if exact.exists():
        return exact
    return next(iter(sorted(progress_dir.glob(f"progress-*.{attempt_id}.rec"))), None)


def report_from_record(record: ShardRecord, progress_dir: Path) -> PipeReport:
    """A shard's report from the manifest, with its counters from its attempt's record."""
    path = (
        attempt_record(progress_dir, record.index, record.attempt_id) if record.attempt_id else None
    )
    if path is not None:
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
