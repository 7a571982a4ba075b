"""Durable jobs: submit, watch, resume, retry, cancel. The job directory is the truth.

A job directory holds the resolved config, the manifest (shards, Slurm arrays, attempts,
state), the signed payloads of the shards, their progress records and logs; the outputs are
staged next to their targets under the job's run id. Any process that can read the directory
(the user's shell, a later ``resume`` after the login node died, a Slurm job that commits) can
carry the job forward; every state change goes through :meth:`JobDirectory.update`.

This module gathers the jobs' operations under the import path they have always had; each
lives in the module of its role (imports run one way, top to bottom):

- :mod:`.submission`: :func:`submit`, :func:`dry_run`;
- :mod:`.detached`: :func:`finish_commit`, :func:`finish_recover`, the follow-up jobs' steps;
- :mod:`.handle`: :class:`JobHandle` (wait, retry, resume, cancel) and :func:`open_job`;
- :mod:`._concluding`, :mod:`._reading`: a handle's commit or rollback, and what it reads;
- :mod:`.follow_up`: the detached commit and recover jobs' scripts, and their submission;
- :mod:`._ledger`, :mod:`._ownership`: the submission ledger and the owner of the retries;
- :mod:`.listing`: :func:`list_jobs`, :class:`JobSummary`, :class:`ShardStatus`.
"""

from __future__ import annotations

from ..errors import JobError

# The submission ledger and the retry-owner checks, also under the private names they had here.
from ._ledger import JobLedger as _JobLedger  # noqa: F401
from ._ownership import RECOVER_TOKEN
from ._ownership import is_this_process as _is_this_process  # noqa: F401
from ._ownership import nobody_drives as _nobody_drives  # noqa: F401
from ._ownership import this_process as _this_process  # noqa: F401
from .detached import finish_commit, finish_recover
from .follow_up import finish_job_scripts, submit_finish_jobs
from .handle import JobHandle, ReportCallback, assert_slurm, open_job
from .listing import JobSummary, ShardStatus, list_jobs
from .submission import dry_run, submit

__all__ = [
    "JobError",
    "JobHandle",
    "JobSummary",
    "RECOVER_TOKEN",
    "ReportCallback",
    "ShardStatus",
    "assert_slurm",
    "dry_run",
    "finish_commit",
    "finish_job_scripts",
    "finish_recover",
    "list_jobs",
    "open_job",
    "submit",
    "submit_finish_jobs",
]
