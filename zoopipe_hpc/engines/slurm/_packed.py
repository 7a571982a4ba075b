"""The loop of a packed array task: claim the next shard, run it in a worker process, repeat.

``python -P -u -m zoopipe_hpc.engines.slurm <job folder> --shards <list> --packed <W>`` runs
one task of a packed array (``SlurmEngine(max_tasks=...)``). The task keeps up to ``W`` shards
running at once, each in a forked worker process, and claims the next one (:mod:`._claims`)
whenever a worker is free, until every shard of the list is claimed. The task pays Python's
start and the imports once; each shard's worker is a fork of it, with the payload already
loaded (checked and unpickled in the task, as for a one-shard task).

Each shard keeps its own progress record and result file, named by the task run's attempt id,
so the engine follows and retries shards one by one. A worker that dies without a final record
(killed, out of memory) gets one written by the task: FAILED, with how it died. A stop signal
(scancel, time limit, node shutdown) stops the claiming, is passed on to the running workers,
which record their shards as cancelled, and ends the task.

The task's exit code says what a one-shard task's says: 0 only if every shard it ran
finished; so Slurm's ``afterok`` / ``afternotok`` (a detached job's commit and recover jobs)
and the task's state in ``sacct`` mean for a packed array what they mean for any other.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, cast

from ...errors import ConfigurationError, StateError
from ...progress import ProgressState, read_progress
from .._attempts import slurm_attempt_id_from_environment
from .._child import _die_with_parent
from .._fork import start_forked
from .._worker import (
    STOP_SIGNALS,
    WorkerTerminated,
    describe_exit,
    install_stop_handlers,
    progress_path,
    record_unstarted,
    run_pipe,
)
from ._claims import ClaimBoard
from ._payload import PayloadStore

if TYPE_CHECKING:
    from ...pipe import Pipe

__all__ = ["node_cpus", "run_packed"]

log = logging.getLogger(__name__)


def node_cpus() -> int:
    """The CPUs this task may use: Slurm's count for the node, else the affinity mask."""
    slurm = os.environ.get("SLURM_CPUS_ON_NODE", "")
    if slurm.isdigit() and int(slurm) > 0:
        return int(slurm)
    return len(os.sched_getaffinity(0)) or 1


@dataclass
class _Running:
    index: int
    record: Path
    process: BaseProcess


def _worker_main(
    pipe: Pipe,
    index: int,
    record: str,
    attempt_id: str,
    host: str,
    parent: int,
    reasons: Mapping[signal.Signals, str],
) -> None:
    try:
        install_stop_handlers(reasons)
        _die_with_parent(parent)
        inherited = _stop_request
        if inherited is not None and inherited.signum:
            # The task was stopped between the fork and the handlers above: never start.
            raise WorkerTerminated(inherited.reason, inherited.signum)
        run_pipe(pipe, index, Path(record), attempt_id, host=host or None)
    except BaseException as exc:
        # Ending either way: a stop signal now (the task passes its own on) must not cut the
        # recording of why short.
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
        snapshot = read_progress(Path(record), expected_attempt_id=attempt_id)
        if snapshot is not None and snapshot.state.is_final:
            log.debug("shard %d failed", index, exc_info=True)  # the record says why
        else:
            # Failed before its record could say so: the task's log and the record get why.
            if isinstance(exc, WorkerTerminated):
                log.warning("shard %d stopped before it started: %s", index, exc)
            else:
                log.error("shard %d failed before its record was final", index, exc_info=True)
            try:
                record_unstarted(Path(record), attempt_id, exc, host or None)
            except Exception:
                log.exception("shard %d: could not record the failure in %s", index, record)
        os._exit(1)


class _StopRequest:
    """The packed task's stop signals, noted instead of raised.

    A worker turns a stop signal into an exception (:func:`install_stop_handlers`), which
    interrupts its pipe wherever it is. The task's own loop must not: an exception raised by a
    signal handler is lost when the signal lands in code that swallows exceptions (the logging
    module's at-fork hook, a ``__del__``), and a task that lost Slurm's USR2 warning went on
    claiming shards until the time limit killed it. So the task notes the first signal, wakes
    its wait through a pipe, and checks the note between steps.
    """

    def __init__(self, reasons: Mapping[signal.Signals, str]) -> None:
        self.reasons = {int(k): v for k, v in reasons.items()}
        self.signum = 0
        self.reason = ""
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._note)

    def _note(self, signum: int, frame: FrameType | None) -> None:
        if not self.signum:
            self.signum = signum
            self.reason = self.reasons.get(signum) or f"stopped by {signal.Signals(signum).name}"
        try:
            os.write(self._write, b"\0")
        except OSError:  # the pipe is full: the loop is awake anyway
            pass

    def fileno(self) -> int:
        """The end of the pipe the task's wait watches."""
        return self._read

    def drain(self) -> None:
        os.set_blocking(self._read, False)
        try:
            while os.read(self._read, 512):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        os.close(self._read)
        os.close(self._write)


#: This task's stop request; a freshly forked worker checks it (the signal may have come
#: between the fork and the worker's own handlers).
_stop_request: _StopRequest | None = None


def run_packed(
    job_folder: str,
    shards: list[int],
    workers: int,
    reasons: Mapping[signal.Signals, str] | None = None,
) -> int:
    """Run the shards this task claims, ``workers`` at a time; returns the task's exit code
    (0: every shard it ran finished; 1: one failed, or the task was stopped). ``reasons``:
    why each stop signal comes (as for a one-shard task), recorded by a stopped shard."""
    global _stop_request
    if workers < 0:
        raise ConfigurationError(
            f"workers per task must be 1 or more (0: the node's CPUs), got {workers}"
        )
    width = workers or node_cpus()
    reasons = dict(reasons or {})
    stop = _stop_request = _StopRequest(reasons)
    try:
        return _claim_and_run(Path(job_folder), shards, width, reasons, stop)
    finally:
        _stop_request = None
        stop.close()


def _claim_and_run(
    folder: Path,
    shards: list[int],
    width: int,
    reasons: Mapping[signal.Signals, str],
    stop: _StopRequest,
) -> int:
    attempt_id = slurm_attempt_id_from_environment()
    host = os.environ.get("SLURMD_NODENAME", "")
    store = PayloadStore(folder)
    board = ClaimBoard(folder, attempt_id, shards).open()
    context = multiprocessing.get_context("fork")
    running: dict[int, _Running] = {}
    ran = 0
    failed: list[int] = []
    log.info("packed task %s: %d shard(s) to share, %d at a time", attempt_id, len(shards), width)
    exhausted = False
    while (running or not exhausted) and not stop.signum:
        while not exhausted and not stop.signum and len(running) < width:
            index = board.claim_next()
            if index is None:
                exhausted = True
                break
            record = progress_path(folder / "progress", index, attempt_id)
            try:
                pipe = store.load(f"shard-{index:05d}")
            except Exception as exc:
                record_unstarted(record, attempt_id, exc, host or None)
                log.error("shard %d: could not load its payload: %s", index, exc)
                failed.append(index)
                continue
            if stop.signum:  # came while the payload loaded: the shard never starts
                record_unstarted(
                    record, attempt_id, WorkerTerminated(stop.reason, stop.signum), host or None
                )
                break
            process = context.Process(
                target=_worker_main,
                args=(pipe, index, str(record), attempt_id, host, os.getpid(), reasons),
                name=f"zoopipe-shard-{index}",
                daemon=False,
            )
            start_forked(process)
            running[process.sentinel] = _Running(index, record, process)
            ran += 1
        if running and not stop.signum:
            wake = stop.fileno()
            for ready in wait([*running, wake]):
                if ready == wake:
                    stop.drain()
                    continue
                item = running.pop(cast(int, ready))
                if not _reap(item, attempt_id, host):
                    failed.append(item.index)
    if stop.signum:
        log.warning(
            "packed task %s stopped (%s): stopping %d worker(s)",
            attempt_id,
            stop.reason,
            len(running),
        )
        for item in running.values():
            if item.process.pid is not None:
                os.kill(item.process.pid, stop.signum)
        for item in running.values():
            item.process.join()
            _reap(item, attempt_id, host)
        return 1
    if failed:
        log.error("packed task %s ran %d shard(s), failed: %s", attempt_id, ran, failed)
        return 1
    log.info("packed task %s ran %d shard(s)", attempt_id, ran)
    return 0


def _reap(item: _Running, attempt_id: str, host: str) -> bool:
    """A worker ended: if it left no final record (killed), record how it died. Whether the
    shard finished."""
    item.process.join()
    snapshot = read_progress(item.record, expected_attempt_id=attempt_id)
    if snapshot is not None and snapshot.state.is_final:
        return snapshot.state is ProgressState.FINISHED
    reason = f"shard {item.index}: {describe_exit(item.process.exitcode)}"
    log.error("%s (%s)", reason, attempt_id)
    record_unstarted(item.record, attempt_id, StateError(reason), host or None)
    return False
