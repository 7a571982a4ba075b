"""Durable jobs: a YAML job file, a job directory that outlives the submitting process, and
the operations the ``zoopipe-hpc`` command line offers (run, status, watch, cancel, resume,
retry, list)."""

from ..errors import JobError
from .config import DataSpec, EngineSpec, JobConfig, JobConfigError, load_job_file
from .handle import JobHandle, open_job
from .listing import JobSummary, ShardStatus, list_jobs
from .manifest import (
    JobDirectory,
    JobState,
    Manifest,
    ManifestConflict,
    ManifestError,
    ShardRecord,
)
from .submission import submit

__all__ = [
    "DataSpec",
    "EngineSpec",
    "JobConfig",
    "JobConfigError",
    "load_job_file",
    "JobDirectory",
    "JobState",
    "Manifest",
    "ManifestConflict",
    "ManifestError",
    "ShardRecord",
    "JobError",
    "JobHandle",
    "JobSummary",
    "ShardStatus",
    "list_jobs",
    "open_job",
    "submit",
]
