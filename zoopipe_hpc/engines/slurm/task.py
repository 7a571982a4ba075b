"""What a Slurm array task runs: load its shard's signed payload and run it with a progress record.

Every task of an array runs the project's own entry point (nothing of submitit's runner, and no
per-task pickle)::

    python -P -u -m zoopipe_hpc.engines.slurm <job folder> --shards 0-9,12

``--shards`` lists the array's shards in task order: task ``SLURM_ARRAY_TASK_ID`` runs the shard
at that position. A packed array (``SlurmEngine(max_tasks=...)``) adds ``--packed <W>``: each
of its tasks claims shards of the list one by one and runs up to ``W`` at a time (0: as many as
the node gives the task CPUs), see :mod:`._packed`.

:func:`run_shard` checks the job folder, the payload folder, the key and the payload (owned by
the user, not writable by others, no link followed) and the payload's signature, which binds it
to this job and shard, before anything is unpickled. ``-P`` keeps the
working directory (perhaps a shared folder) off ``sys.path``, so nothing planted there is
imported.

Stop signals follow the policy of every worker (``_worker.install_stop_handlers``): the first
of SIGTERM, SIGINT and SIGUSR2 is recorded as a cancellation, with the reason below, and the
later ones are ignored. The engine reports a cancellation that nobody asked for (a time limit,
a preemption, a node going down) as FAILED.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from ...errors import ConfigurationError, ZoopipeHPCError
from .._attempts import slurm_attempt_id_from_environment
from .._worker import install_stop_handlers, progress_path, record_unstarted, run_pipe
from ._payload import PayloadStore

__all__ = [
    "SLURM_STOP_REASONS",
    "TASK_MODULE",
    "format_shards",
    "main",
    "parse_shards",
    "run_shard",
    "shard_payload_name",
]

log = logging.getLogger(__name__)

#: The module every array task runs with ``python -m`` (its ``__main__`` calls :func:`main`).
TASK_MODULE = "zoopipe_hpc.engines.slurm"

#: Why Slurm sends each stop signal to a task (``--signal=USR2@<signal_delay_s>``, scancel...).
SLURM_STOP_REASONS = {
    signal.SIGTERM: "stopped by SIGTERM from Slurm (scancel, preemption or node shutdown)",
    signal.SIGUSR2: "the task is about to reach its Slurm time limit (SIGUSR2)",
}

_SHARDS = re.compile(r"[0-9]+(?:-[0-9]+)?(?:,[0-9]+(?:-[0-9]+)?)*")


def shard_payload_name(index: int) -> str:
    return f"shard-{index:05d}"


def format_shards(indices: Sequence[int]) -> str:
    """``[0, 1, 2, 5, 7, 8]`` -> ``"0-2,5,7-8"``: runs of consecutive shards, order kept."""
    if not indices:
        raise ConfigurationError("an array needs at least one shard")
    runs: list[list[int]] = []
    for index in indices:
        if index < 0:
            raise ConfigurationError(f"not a shard index: {index}")
        if runs and index == runs[-1][1] + 1:
            runs[-1][1] = index
        else:
            runs.append([index, index])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def parse_shards(text: str) -> list[int]:
    """The shards of ``--shards`` (:func:`format_shards`' form), in task order."""
    if not _SHARDS.fullmatch(text):
        raise ConfigurationError(f"not a list of shards: {text!r} (e.g. '0-9' or '3,5-7')")
    shards: list[int] = []
    for run in text.split(","):
        first, _, last = run.partition("-")
        a, b = int(first), int(last or first)
        if b < a:
            raise ConfigurationError(f"not a list of shards: {text!r} ({run} is decreasing)")
        shards.extend(range(a, b + 1))
    return shards


def run_shard(job_folder: str, index: int) -> None:
    """Run shard ``index`` of the job in ``job_folder``: check, load, run."""
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


def main(argv: Sequence[str] | None = None) -> int:
    """The entry point of one array task; returns its exit code."""
    parser = argparse.ArgumentParser(
        prog=f"python -m {TASK_MODULE}",
        description="Run one task of a zoopipe-hpc Slurm array (SLURM_ARRAY_TASK_ID).",
    )
    parser.add_argument("job_folder", help="the run's job folder")
    parser.add_argument("--shards", required=True, help="the array's shards, in task order")
    parser.add_argument(
        "--packed",
        type=int,
        metavar="W",
        help="claim shards of the list and run up to W at a time (0: the task's CPUs)",
    )
    args = parser.parse_args(argv)
    task = os.environ.get("SLURM_ARRAY_TASK_ID", "")
    try:
        shards = parse_shards(args.shards)
    except ConfigurationError as exc:
        parser.error(str(exc))
    if args.packed is not None and args.packed < 0:
        parser.error(f"--packed takes 0 or more workers, got {args.packed}")
    if not task.isdigit() or (args.packed is None and int(task) >= len(shards)):
        parser.error(
            f"SLURM_ARRAY_TASK_ID is {task!r}: not a task of this array of {len(shards)} "
            f"(run by Slurm as one task of the array)"
        )
    try:
        if args.packed is not None:
            # Imported here: a one-shard task needs none of the workers and claims machinery.
            from ._packed import run_packed

            return run_packed(args.job_folder, shards, args.packed, SLURM_STOP_REASONS)
        run_shard(args.job_folder, shards[int(task)])
    except ZoopipeHPCError as exc:
        print(f"zoopipe-hpc task {task} of {args.job_folder}: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0
