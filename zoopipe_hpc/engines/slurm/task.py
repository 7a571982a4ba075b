"""What a Slurm array task runs: load its shard's signed payload and run it with a progress record.

Submitted through submitit as ``run_shard(job_folder, index)``; everything the task needs is in
the job folder on the shared filesystem.
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path
from types import FrameType

from ...progress import ProgressWriter
from .._attempts import slurm_attempt_id_from_environment
from .._worker import WorkerTerminated, progress_path, run_pipe
from ._payload import PayloadStore

__all__ = ["run_shard", "shard_payload_name"]

log = logging.getLogger(__name__)


class TimeLimitReached(Exception):
    """Slurm warned (SIGUSR2) that the task is about to hit its time limit."""


def shard_payload_name(index: int) -> str:
    return f"shard-{index:05d}"


def _on_term(signum: int, frame: FrameType | None) -> None:
    raise WorkerTerminated("stopped by SIGTERM from Slurm (scancel, preemption or node shutdown)")


def _on_usr2(signum: int, frame: FrameType | None) -> None:
    raise TimeLimitReached("the task is about to reach its Slurm time limit (SIGUSR2)")


def run_shard(job_folder: str, index: int) -> None:
    """Entry point of one array task."""
    folder = Path(job_folder)
    # <array job>-<task>-r<restart count>: unique per run of a task, requeues included.
    attempt_id = slurm_attempt_id_from_environment()
    record = progress_path(folder / "progress", index, attempt_id)
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGUSR2, _on_usr2)
    try:
        pipe = PayloadStore(folder).load(shard_payload_name(index))
    except Exception as exc:
        with ProgressWriter(record, attempt_id, host=os.environ.get("SLURMD_NODENAME")) as writer:
            writer.fail(f"{type(exc).__name__}: {exc}")
        raise
    log.info("shard %d, attempt %s: %r", index, attempt_id, pipe)
    # The Slurm node name is what users see in squeue (several slurmd may share a host).
    run_pipe(pipe, index, record, attempt_id, host=os.environ.get("SLURMD_NODENAME"))
