"""What ``zoopipe-hpc list`` and ``status`` show, read from job directories alone.

:func:`list_jobs` summarises every job under a jobs folder (:class:`JobSummary`);
:class:`ShardStatus` is one line of a job's status; :func:`read_shard_report` rebuilds a
shard's report from its manifest record and its attempt's progress record, for a shard that no
engine of this process follows. Nothing here submits, retries or changes a job.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..engines._attempts import parse_record_name, record_name
from ..engines._worker import report_from_snapshot
from ..errors import ZoopipeHPCError
from ..progress import read_progress
from ..report import PipeReport, PipeStatus
from .manifest import JobDirectory, ShardRecord

__all__ = [
    "JobSummary",
    "RecordFinder",
    "ShardStatus",
    "list_jobs",
    "read_shard_report",
]


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


class RecordFinder:
    """Finds the progress record of a shard's attempt in one progress folder.

    A Slurm attempt's record is named by the shard (one task run of a packed array runs many
    shards under one attempt id): one ``stat``. A local run of some shards numbers its records
    its own way, but gives each shard an attempt id of its own: for those the folder is listed
    once per finder, on the first miss, not once per shard (a poll over 10,000 shards would
    otherwise list a folder of 10,000 records 10,000 times). Make one finder per look.
    """

    def __init__(self, progress_dir: Path, *, named_by_shard: bool = False) -> None:
        self.progress_dir = progress_dir
        #: Every record is named by its shard (a Slurm job's): a miss is a record not written.
        self.named_by_shard = named_by_shard
        self._by_attempt: dict[str, str] | None = None

    def __call__(self, index: int, attempt_id: str) -> Path | None:
        """The record of shard ``index``'s attempt ``attempt_id``, None if it has none."""
        exact = self.progress_dir / record_name(index, attempt_id)
        if exact.exists():
            return exact
        if self.named_by_shard:
            return None
        if self._by_attempt is None:
            found: dict[str, str] = {}
            try:
                names = sorted(os.listdir(self.progress_dir))
            except FileNotFoundError:
                names = []
            for listed in names:
                parsed = parse_record_name(listed)
                if parsed is not None:
                    found.setdefault(parsed[1], listed)
            self._by_attempt = found
        name = self._by_attempt.get(attempt_id)
        return None if name is None else self.progress_dir / name


def read_shard_report(record: ShardRecord, find: RecordFinder) -> tuple[PipeReport, bool]:
    """A shard's report from the manifest and its attempt's record, and whether it is
    *settled*: built from the final record of the attempt the manifest names, which no later
    look can change as long as the manifest's record of the shard stays the same."""
    path = find(record.index, record.attempt_id) if record.attempt_id else None
    if path is not None:
        snapshot = read_progress(path, expected_attempt_id=record.attempt_id)
        if snapshot is not None:
            report = report_from_snapshot(record.index, snapshot)
            report.extra = {"attempts": str(len(record.submissions))}
            return report, snapshot.state.is_final
    status = {
        "completed": PipeStatus.COMPLETED,
        "failed": PipeStatus.FAILED,
        "cancelled": PipeStatus.CANCELLED,
        "running": PipeStatus.RUNNING,
    }.get(record.state, PipeStatus.PENDING)
    report = PipeReport(
        pipe_index=record.index,
        status=status,
        message=record.message,
        attempt_id=record.attempt_id,
        extra={"attempts": str(len(record.submissions))},
    )
    return report, False
