"""DaskEngine: each pipe is one task of a Dask cluster (local, a scheduler address, or Slurm).

Dask is optional: this module imports ``distributed`` only when an engine is made, and says
how to install it when it is missing. Each task runs :func:`~._remote.run_supervised`, which
runs the pipe in a child process of the Dask worker, so a crash of the pipe never takes the
worker down, and a stop file (not Dask, which cannot interrupt a running task) stops it.
See ``docs/dask.md``.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

from ..errors import ConfigurationError, PipeAlreadyRan, StateError
from ._remote import ended_from_exit_code, run_supervised
from ._scheduled import ScheduledEngine
from ._tracking import RUNNING, TaskEnded, TaskState

if TYPE_CHECKING:
    from distributed import Client
    from distributed.deploy.cluster import Cluster

    from ..pipe import Pipe

__all__ = ["DaskEngine", "MISSING_DASK", "PipeAlreadyRan", "run_pipe_task"]

log = logging.getLogger(__name__)

#: The message of the ``ConfigurationError`` raised when Dask is not installed.
MISSING_DASK = "DaskEngine needs Dask: pip install 'zoopipe_hpc[dask]'"

#: Seconds to wait for the result or the exception of a task that Dask says has ended.
_RESULT_TIMEOUT = 30.0


def _distributed() -> ModuleType:
    try:
        import distributed
    except ImportError as exc:
        raise ConfigurationError(MISSING_DASK) from exc
    return distributed


def _jobqueue() -> ModuleType:
    try:
        import dask_jobqueue
    except ImportError as exc:
        raise ConfigurationError(MISSING_DASK) from exc
    return dask_jobqueue


def _cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def run_pipe_task(
    payload: bytes, index: int, record: str, attempt_id: str, poll_interval: float = 0.1
) -> int:
    """The Dask task of one pipe: run it supervised, named after this worker's host.

    Inside a Slurm job the host is the Slurm node name (what ``squeue`` shows), else this
    machine's name. A pipe whose progress record already exists started once before, on a
    worker that Dask lost and then replaced: it is failed rather than run a second time.
    """
    if Path(record).exists():
        raise PipeAlreadyRan(
            f"pipe {index} already started on a Dask worker that was lost; "
            "it is not run a second time"
        )
    host = os.environ.get("SLURMD_NODENAME") or socket.gethostname()
    return run_supervised(payload, index, record, attempt_id, host, poll_interval)


@dataclass
class _DaskTask:
    """A submitted pipe: its future and, once known, how it ended (asked of Dask once)."""

    #: The task's ``distributed.Future`` (typed loosely: many of its methods are untyped).
    future: Any
    ended: TaskEnded | None = None


_ClusterFactory = Callable[[int], "Cluster"]


class DaskEngine(ScheduledEngine[_DaskTask]):
    """Runs each pipe as one task of a Dask cluster; progress comes from the progress records.

    ``address`` (ZooPipe's name; it also takes a cluster or a client) says which cluster:

    - ``None`` (default): a ``LocalCluster`` on this machine, started by :meth:`start`
      (processes, one thread each, no dashboard; ``n_workers`` workers, default the number
      of cores or of pipes, whichever is smaller) and closed by :meth:`shutdown`;
    - a scheduler address (``"tcp://host:8786"``): a client connects to it; ``shutdown``
      closes the client only;
    - a ``distributed.deploy.Cluster`` (``LocalCluster``, dask-jobqueue's ``SLURMCluster``,
      ...): a client is made on it; the cluster belongs to the caller, who scales and closes
      it (``shutdown`` closes the engine's client only);
    - a ``distributed.Client``: used as it is, never closed.

    Each pipe is one task (``pure=False``, ``retries=0``) that runs the pipe in a child
    process of the worker: a pipe that raises, segfaults or is killed is reported FAILED with
    the reason (the signal's name) and the worker lives on. A worker runs one pipe per worker
    thread. ``resources`` (e.g. ``{"pipe": 1}``) are Dask worker resources each task asks
    for, to limit how many pipes a worker runs at once.

    ``progress_dir`` and every input and output of the pipes must be on a filesystem that
    the workers see at the same path (the shared filesystem on a cluster).
    """

    def __init__(
        self,
        address: str | Client | Cluster | None = None,
        *,
        progress_dir: str | os.PathLike[str] | None = None,
        poll_interval: float = 0.1,
        n_workers: int | None = None,
        resources: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__(progress_dir=progress_dir, poll_interval=poll_interval)
        distributed = _distributed()
        if n_workers is not None and n_workers < 1:
            raise ConfigurationError(f"n_workers must be at least 1, got {n_workers}")
        if n_workers is not None and address is not None:
            raise ConfigurationError(
                "n_workers sizes the LocalCluster DaskEngine starts itself: "
                "give it without an address, cluster or client"
            )
        self.resources: dict[str, float] | None = dict(resources) if resources else None
        self.n_workers = n_workers
        self._address: str | None = None
        self._cluster: Cluster | None = None
        self._given_client: Client | None = None
        self._factory: _ClusterFactory | None = None
        if address is None:
            self._factory = self._local_cluster
        elif isinstance(address, str):
            self._address = address
        elif isinstance(address, distributed.Client):
            self._given_client = address
        elif isinstance(address, distributed.deploy.Cluster):
            self._cluster = address
        else:
            raise ConfigurationError(
                "DaskEngine takes a scheduler address, a distributed.Client, a "
                f"distributed.deploy.Cluster or None, not {type(address).__name__}"
            )
        # The client and the started cluster, typed loosely: their close() is untyped.
        self._client: Any = None
        self._own_cluster: Any = None
        self._pipe_count = 0

    @classmethod
    def on_slurm(
        cls,
        jobs: int | None = None,
        *,
        progress_dir: str | os.PathLike[str] | None = None,
        poll_interval: float = 0.1,
        resources: Mapping[str, float] | None = None,
        **slurm_cluster_options: Any,
    ) -> DaskEngine:
        """An engine whose own dask-jobqueue ``SLURMCluster`` is started by each ``start``.

        ``slurm_cluster_options`` go to ``SLURMCluster`` (``queue``, ``account``, ``cores``,
        ``memory``, ``walltime``, ``job_extra_directives``, ...); ``jobs`` Slurm jobs are
        submitted (default: one per pipe). ``shutdown`` closes the cluster, which cancels its
        jobs.
        """
        if jobs is not None and jobs < 1:
            raise ConfigurationError(f"jobs must be at least 1, got {jobs}")
        jobqueue = _jobqueue()
        engine = cls(progress_dir=progress_dir, poll_interval=poll_interval, resources=resources)

        def slurm_cluster(pipe_count: int) -> Cluster:
            cluster = jobqueue.SLURMCluster(**slurm_cluster_options)
            cluster.scale(jobs=jobs if jobs is not None else max(1, pipe_count))
            return cast("Cluster", cluster)

        engine._factory = slurm_cluster
        return engine

    # -- the cluster ----------------------------------------------------------------------------

    @property
    def client(self) -> Client | None:
        """The Dask client of the current run (``None`` before ``start`` and after ``shutdown``)."""
        return cast("Client | None", self._client)

    @property
    def cluster(self) -> Cluster | None:
        """The cluster the engine runs on: the one given, or the one it started (while up)."""
        return (
            self._cluster
            if self._cluster is not None
            else cast("Cluster | None", self._own_cluster)
        )

    def _local_cluster(self, pipe_count: int) -> Cluster:
        distributed = _distributed()
        workers = self.n_workers or max(1, min(_cpu_count(), pipe_count))
        cluster: Cluster = distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            # No dashboard; the scheduler's small HTTP server (health, metrics) on any free
            # port rather than a warning that 8787 is taken.
            scheduler_kwargs={"dashboard_address": ":0"},
            resources=self.resources,
        )
        return cluster

    def start(self, pipes: Sequence[Pipe]) -> None:
        pipes = list(pipes)
        self._pipe_count = len(pipes)
        super().start(pipes)

    def _connect(self) -> None:
        if self._client is not None:
            return
        distributed = _distributed()
        if self._given_client is not None:
            self._client = self._given_client
            return
        if self._address is not None:
            self._client = distributed.Client(self._address, set_as_default=False)
            return
        cluster = self._cluster
        if cluster is None:
            if self._factory is None:  # pragma: no cover - __init__ sets one of them
                raise ConfigurationError("DaskEngine has no cluster to run on")
            cluster = self._own_cluster = self._factory(self._pipe_count)
        try:
            self._client = distributed.Client(cluster, set_as_default=False)
        except BaseException:
            self._close_own_cluster()
            raise

    def _disconnect(self) -> None:
        for task in self._handles:
            if task is not None:
                if task.ended is None and task.future is not None and not task.future.done():
                    task.ended = TaskEnded(False, "cancelled: the engine was shut down")
                task.future = None
        client, self._client = self._client, None
        if client is not None and client is not self._given_client:
            client.close()
        self._close_own_cluster()

    def _close_own_cluster(self) -> None:
        cluster, self._own_cluster = self._own_cluster, None
        if cluster is not None:
            cluster.close()

    # -- the tasks ------------------------------------------------------------------------------

    def _submit(self, index: int, payload: bytes, record: str, attempt_id: str) -> _DaskTask:
        client = self._client
        if client is None:  # pragma: no cover - start() connects first
            raise StateError("DaskEngine is not connected")
        future = client.submit(
            run_pipe_task,
            payload,
            index,
            record,
            attempt_id,
            self.poll_interval,
            key=f"zoopipe-pipe-{index}-{attempt_id}",
            pure=False,
            retries=0,
            resources=self.resources,
        )
        return _DaskTask(future)

    def _state(self, handle: _DaskTask) -> TaskState:
        if handle.ended is not None:
            return handle.ended
        future = handle.future
        if future is None:  # pragma: no cover - released only after its end was recorded
            return TaskEnded(False, "the Dask task was released")
        status = str(future.status)
        if status == "pending":
            return RUNNING
        handle.ended = self._ended(future, status)
        return handle.ended

    def _ended(self, future: Any, status: str) -> TaskEnded:
        try:
            if status == "finished":
                return ended_from_exit_code(int(future.result(timeout=_RESULT_TIMEOUT)))
            if status == "error":
                error = future.exception(timeout=_RESULT_TIMEOUT)
                return TaskEnded(False, f"Dask task failed: {type(error).__name__}: {error}")
        except (OSError, TimeoutError, concurrent.futures.CancelledError) as exc:
            return TaskEnded(
                False, f"Dask task {status}, its outcome is unknown: {type(exc).__name__}: {exc}"
            )
        if status == "lost":
            return TaskEnded(False, "Dask lost the task (its worker left the cluster)")
        return TaskEnded(False, f"the Dask task was {status}")

    def _cancel(self, handle: _DaskTask) -> None:
        if handle.future is not None:
            handle.future.cancel()
