"""The engine's side of packed arrays: how many tasks, how many workers, and what Slurm's
answer means for a shard that no record ties to a task yet (private).

A packed submission is recorded in a shard's submissions as ``(array, PACKED)``: which task
runs the shard is only known once it claimed the shard (:mod:`._claims`), and is then pinned
from the attempt id of the shard's progress record (or of its claim).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import ConfigurationError
from ...progress import ProgressState
from .._attempts import SlurmAttempt, parse_attempt_id
from ._claims import claim_owner
from ._limits import SiteLimits
from ._state import TaskState
from .parameters import SlurmParameters

if TYPE_CHECKING:
    from ._watch import Shard

__all__ = [
    "PACKED",
    "Packing",
    "choose_packing",
    "packed_attempt",
    "packed_state",
    "tasks_by_array",
]

# The logger of the public module, so that logging set up for it still sees these records.
log = logging.getLogger("zoopipe_hpc.engines.slurm.engine")

#: The task of a packed submission whose shard no task has been seen to claim yet.
PACKED = -1
#: Of MaxJobCount, the share one automatically packed run may take (the limit is the whole
#: cluster's: other users' jobs count too).
_JOB_COUNT_SHARE = 10


@dataclass(frozen=True)
class Packing:
    """Shards share at most ``max_tasks`` tasks, each running ``workers`` at a time (0: as
    many as the task has CPUs on its node, read in the task)."""

    max_tasks: int
    workers: int

    def tasks_for(self, shards: int) -> int:
        """The tasks of a packed array of ``shards`` shards."""
        return max(1, min(self.max_tasks, shards))


def default_workers(parameters: SlurmParameters, workers_per_task: int | None) -> int:
    """``workers_per_task``, else every CPU of the node in whole-node mode (0: read in the
    task), else the task's ``cpus_per_task``."""
    if workers_per_task is not None:
        return workers_per_task
    if parameters.whole_node:
        return 0
    return parameters.cpus_per_task


def choose_packing(
    shards: int,
    *,
    max_tasks: int | None,
    workers_per_task: int | None,
    parameters: SlurmParameters,
    limits: SiteLimits,
) -> Packing | None:
    """How ``shards`` shards are submitted: packed (a :class:`Packing`) or one per task (None).

    With ``max_tasks`` they are packed onto at most that many tasks (and never more than the
    site's MaxArraySize). Without it they are packed by themselves only when one task per
    shard would pass MaxArraySize or MaxJobCount (a durable job's too); the choice is logged.
    """
    workers = default_workers(parameters, workers_per_task)
    if max_tasks is not None:
        if max_tasks > limits.max_array_size:
            log.info(
                "max_tasks=%d is more than the site's MaxArraySize=%d: packing onto %d tasks",
                max_tasks,
                limits.max_array_size,
                limits.max_array_size,
            )
        return Packing(min(max_tasks, limits.max_array_size), workers)
    if shards <= limits.max_array_size and shards <= limits.max_job_count:
        return None
    tasks = max(1, min(limits.max_array_size, limits.max_job_count // _JOB_COUNT_SHARE))
    log.info(
        "%d shards are more than the site allows as one task each (MaxArraySize=%d, "
        "MaxJobCount=%d): packing them onto %d array tasks, %s shard(s) at a time per task",
        shards,
        limits.max_array_size,
        limits.max_job_count,
        tasks,
        workers or "as many CPUs as the node gives the task",
    )
    return Packing(tasks, workers)


def packed_attempt(attempt_id: str, job: str) -> SlurmAttempt | None:
    """``attempt_id`` parsed if it is a run of any task of the packed array ``job``."""
    try:
        attempt = parse_attempt_id(attempt_id)
    except ConfigurationError:
        return None
    if isinstance(attempt, SlurmAttempt) and attempt.job == job:
        return attempt
    return None


def tasks_by_array(states: Mapping[str, TaskState]) -> dict[str, list[TaskState]]:
    """Slurm's answer grouped by array (``<array>_<task>`` keys), for :func:`packed_state`."""
    grouped: dict[str, list[TaskState]] = {}
    for key, state in states.items():
        grouped.setdefault(key.partition("_")[0], []).append(state)
    return grouped


def packed_state(
    shard: Shard,
    states: Mapping[str, TaskState],
    job_folder: Path | None,
    missing_is_gone: bool = False,
    by_array: Mapping[str, list[TaskState]] | None = None,
) -> TaskState | None:
    """What Slurm's answer ``states`` means for a shard of a packed array.

    A shard pinned to its task gets that task's state, except that a shard its worker failed
    is over at once (the task goes on with its other shards): state ``SHARD_FAILED``. A shard
    no record ties to a task yet is pending while any task of the array is; once none is, its
    claim (if any) names the task that took it, else no task ran it: ``UNCLAIMED``. None: Slurm
    does not know the array (yet). ``missing_is_gone``: the answer is the queue's (``squeue``),
    from which ended tasks vanish: a task not in it is GONE. ``by_array``: ``states`` grouped
    by :func:`tasks_by_array`, once for all the shards of one answer.
    """
    job, task = shard.submissions[-1]
    if task == PACKED and job_folder is not None:
        tasks = (by_array if by_array is not None else tasks_by_array(states)).get(job, [])
        if not tasks and not missing_is_gone:
            return None
        if any(s.active for s in tasks):
            return TaskState(shard.job_id, "PENDING")
        owner = claim_owner(job_folder, job, shard.index)
        if owner is None:
            return TaskState(shard.job_id, "UNCLAIMED")
        shard.pin_task(owner)
        job, task = shard.submissions[-1]
    state = states.get(f"{job}_{task}")
    if state is None and missing_is_gone:
        state = TaskState(f"{job}_{task}", "GONE")
    snapshot = shard.reader.last if shard.reader is not None else None
    if state is not None and state.active and snapshot is not None:
        if snapshot.state is ProgressState.FAILED:
            return TaskState(state.job_id, "SHARD_FAILED", state.exit_code, state.node)
    return state
