"""The steps a detached job's follow-up Slurm jobs run (``zoopipe-hpc _commit`` / ``_recover``).

The commit job runs once every task of the job's arrays succeeded and commits; the recover job
runs when one failed and, being the owner of the job's retries, resubmits the failed shards
(with new follow-up jobs) or rolls the job back. See :mod:`zoopipe_hpc.jobs.follow_up`.
"""

from __future__ import annotations

import logging
import os

from .._deadline import wait_until
from ..engines._fail_fast import FailFast
from ._ownership import describe_owner, is_this_process
from .config import JobConfig
from .follow_up import submit_finish_jobs
from .handle import JobHandle, open_job
from .manifest import JobState

__all__ = ["finish_commit", "finish_recover"]

log = logging.getLogger(__name__)


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
    if not is_this_process(manifest.retry_owner):
        log.warning(
            "%s: this recover job (%s) does not own the job's retries (%s): nothing to do",
            handle.path.name,
            os.environ.get("SLURM_JOB_ID", "not a Slurm job"),
            describe_owner(manifest.retry_owner),
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
    fail_fast = FailFast()
    for result in failed:
        fail_fast.observe(result.pipe_index, result.message, result.report.total_processed)
    if fail_fast.tripped is not None:
        handle.roll_back(
            f"{len(failed)} of {len(results)} shards failed; not retried: {fail_fast.describe()}"
        )
        return False
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
    """Slurm says the tasks are over; give their last records time to reach this node (at
    most ``timeout`` seconds: what is still missing then counts as not finished)."""
    wait_until(lambda: all(r.is_finished for r in handle.shard_reports()), timeout, interval=1.0)
