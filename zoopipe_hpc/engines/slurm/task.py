"""What a Slurm array task runs: load its shard's signed payload and run it with a progress record.

Submitted through submitit as ``run_shard(job_folder, index)``; everything the task needs is in
the job folder on the shared filesystem.

Stop signals follow the policy of every worker (``_worker.install_stop_handlers``): the first
of SIGTERM, SIGINT and SIGUSR2 is recorded as a cancellation, with the reason below, and the
later ones are ignored. The engine reports a cancellation that nobody asked for (a time limit,
a preemption, a node going down) as FAILED.
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

from .._attempts import slurm_attempt_id_from_environment
from .._worker import install_stop_handlers, progress_path, record_unstarted, run_pipe
from ._payload import PayloadStore

__all__ = ["run_shard", "shard_payload_name", "SLURM_STOP_REASONS"]

log = logging.getLogger(__name__)

#: Why Slurm sends each stop signal to a task (``--signal=USR2@<signal_delay_s>``, scancel...).
SLURM_STOP_REASONS = {
    signal.SIGTERM: "stopped by SIGTERM from Slurm (scancel, preemption or node shutdown)",
    signal.SIGUSR2: "the task is about to reach its Slurm time limit (SIGUSR2)",
}


def shard_payload_name(index: int) -> str:
    return f"shard-{index:05d}"


def run_shard(job_folder: str, index: int) -> None:
    """Entry point of one array task."""
    install_stop_handlers(SLURM_STOP_REASONS)
    folder = Path(job_folder)
    # <array job>-<task>-r<restart count>: unique per run of a task, requeues included.
    attempt_id = slurm_attempt_id_from_environment()
    record = progress_path(folder / "progress", index, attempt_id)
    # The Slurm node name is what users see in squeue (several slurmd may share a host).
    host = os.environ.get("SLURMD_NODENAME")
    try:
        pipe = PayloadStore(folder).load(shard_payload_name(index))
    except BaseException as exc:
        record_unstarted(record, attempt_id, exc, host)
        raise
    log.info("shard %d, attempt %s: %r", index, attempt_id, pipe)
    run_pipe(pipe, index, record, attempt_id, host=host)
