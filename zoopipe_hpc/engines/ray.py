"""RayEngine: each pipe is one Ray task that supervises the pipe in its own child process.

Ray is optional (``pip install 'zoopipe_hpc[ray]'``) and imported only when an engine is
created. See ``docs/ray.md`` for what runs where, where the progress records go, how
cancellation works and what ``ray.init`` does to the calling process.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigurationError, StateError
from ..report import PipeReport
from ._remote import ended_from_exit_code, run_supervised
from ._scheduled import ScheduledEngine
from ._tracking import RUNNING, TaskEnded, TaskState

__all__ = ["RayEngine"]

log = logging.getLogger(__name__)

#: Seconds ``ray.get`` may take for the exit code of a task that ``ray.wait`` found ready.
_GET_TIMEOUT = 60.0
#: Longest Ray error text kept in a pipe's report (the first line, shortened).
_REASON_LENGTH = 300


def _import_ray() -> Any:
    """The ``ray`` module, or a ConfigurationError saying how to install it."""
    try:
        return importlib.import_module("ray")
    except ImportError as exc:
        raise ConfigurationError("RayEngine needs Ray: pip install 'zoopipe_hpc[ray]'") from exc


def _describe_ray_error(error: BaseException) -> str:
    """``"<Ray's error type>: <first line of its reason>"``, short enough for a report."""
    cause = getattr(error, "cause", None)
    # RayTaskError wraps what the task raised; its own text is a whole remote traceback.
    text = str(cause) if isinstance(cause, BaseException) else str(error)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    reason = lines[0] if lines else ""
    if len(reason) > _REASON_LENGTH:
        reason = reason[: _REASON_LENGTH - 3] + "..."
    name = type(error).__name__
    return f"{name}: {reason}" if reason else name


@dataclass
class _RayTask:
    """One submitted pipe: its Ray object ref and, once known, how its task ended."""

    ref: Any
    ended: TaskEnded | None = None


class RayEngine(ScheduledEngine[_RayTask]):
    """Runs each pipe as one Ray task, on a local Ray instance or an existing Ray cluster.

    The task does not run the pipe itself: it starts a child Python process for it and waits
    (:func:`~zoopipe_hpc.engines._remote.run_supervised`), so a pipe that segfaults or is
    killed takes down only its own process and is reported FAILED with the signal's name.
    Progress comes from the pipes' progress records, as with every other engine.

    Parameters:
        address: ``None`` (default) calls ``ray.init()`` without an address: Ray joins the
            cluster named by ``RAY_ADDRESS`` or started on this machine with ``ray start``,
            else starts a local instance (without its dashboard). Otherwise the address of
            an existing cluster (``"auto"``, ``"host:6379"``, ``"ray://host:10001"``). If Ray
            is already initialized in this process, that connection is used as it is.
        num_cpus_per_pipe: CPUs Ray reserves for each pipe's task while its pipe runs (Ray
            runs no more pipes at once than the reserved resources allow).
        num_gpus_per_pipe: GPUs reserved for each pipe's task.
        memory_per_pipe: bytes of memory reserved for each pipe's task (Ray's ``memory``).
        resources: custom Ray resources reserved for each pipe's task.
        task_options: any other ``ray.remote`` option for the tasks (``runtime_env``,
            ``scheduling_strategy``, ``label_selector``...).
        progress_dir: folder for the progress records (default: a private temporary
            folder). On a cluster of several machines it must be on a filesystem every node
            shares, like the pipes' inputs and outputs.
        poll_interval: seconds between two looks at the pipes (and at their stop files).
        init_kwargs: extra keyword arguments of ``ray.init`` when this engine calls it
            (``num_cpus``, ``runtime_env``, ``log_to_driver``, ``logging_level``...).

    ``shutdown()`` stops the pipes still running and, if this engine called ``ray.init``,
    calls ``ray.shutdown()``: that stops a local instance it started and only disconnects
    from an existing cluster, which keeps running.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus_per_pipe: float = 1,
        num_gpus_per_pipe: float = 0,
        memory_per_pipe: int | None = None,
        resources: Mapping[str, float] | None = None,
        task_options: Mapping[str, Any] | None = None,
        progress_dir: str | os.PathLike[str] | None = None,
        poll_interval: float = 0.1,
        init_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        if num_cpus_per_pipe < 0:
            raise ConfigurationError(f"num_cpus_per_pipe must be >= 0, got {num_cpus_per_pipe}")
        if num_gpus_per_pipe < 0:
            raise ConfigurationError(f"num_gpus_per_pipe must be >= 0, got {num_gpus_per_pipe}")
        if memory_per_pipe is not None and memory_per_pipe <= 0:
            raise ConfigurationError(f"memory_per_pipe must be > 0, got {memory_per_pipe}")
        if poll_interval <= 0:
            raise ConfigurationError(f"poll_interval must be > 0, got {poll_interval}")
        _import_ray()  # fail now, not at start(), when Ray is missing
        super().__init__(progress_dir=progress_dir, poll_interval=poll_interval)
        self.address = address
        options: dict[str, Any] = {"num_cpus": num_cpus_per_pipe, "max_retries": 0}
        if num_gpus_per_pipe:
            options["num_gpus"] = num_gpus_per_pipe
        if memory_per_pipe is not None:
            options["memory"] = memory_per_pipe
        if resources:
            options["resources"] = dict(resources)
        options.update(task_options or {})
        self.task_options = options
        self.init_kwargs = dict(init_kwargs or {})
        self._initialized_ray = False
        self._remote: Any = None
        # Tasks the current look at the pipes found running with one batched ray.wait.
        self._seen_running: set[int] = set()

    @property
    def started_ray(self) -> bool:
        """True while this engine holds a ``ray.init`` it made (undone by ``shutdown``)."""
        return self._initialized_ray

    # -- the scheduler ------------------------------------------------------------------------

    def _connect(self) -> None:
        ray = _import_ray()
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"logging_level": logging.WARNING}
            if self.address is None:
                kwargs["include_dashboard"] = False
            else:
                kwargs["address"] = self.address
            kwargs.update(self.init_kwargs)
            try:
                ray.init(**kwargs)
            except ConnectionError as exc:
                if self.address is None or os.environ.get("RAY_AUTH_MODE"):
                    raise
                # An explicit address never turns Ray's token authentication on by itself.
                raise ConnectionError(
                    f"{exc}. If that cluster uses token authentication, set "
                    "RAY_AUTH_MODE=token and make its token available (~/.ray/auth_token, "
                    "RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH)"
                ) from exc
            self._initialized_ray = True
        elif self.address is not None and not self._initialized_ray:
            log.info("Ray is already initialized in this process: using it, not %s", self.address)
        self._remote = ray.remote(**self.task_options)(run_supervised)

    def _submit(self, index: int, payload: bytes, record: str, attempt_id: str) -> _RayTask:
        if self._remote is None:  # pragma: no cover - start() always connects first
            raise StateError("RayEngine is not connected to Ray")
        task = self._remote.options(name=f"zoopipe-pipe-{index}")
        return _RayTask(task.remote(payload, index, record, attempt_id, "", self.poll_interval))

    def _state(self, handle: _RayTask) -> TaskState:
        if handle.ended is not None:
            return handle.ended
        if id(handle) in self._seen_running:
            return RUNNING
        ray = _import_ray()
        if not ray.is_initialized():
            # ray.shutdown() was called with this task unsettled: its result is gone.
            handle.ended = TaskEnded(False, "Ray task lost: this process left Ray")
            return handle.ended
        ready, _ = ray.wait([handle.ref], num_returns=1, timeout=0)
        if not ready:
            return RUNNING
        return self._settle(handle)

    def _settle(self, handle: _RayTask) -> TaskEnded:
        """Read the exit code of a task that ``ray.wait`` found ready; remembered."""
        ray = _import_ray()
        try:
            code = ray.get(handle.ref, timeout=_GET_TIMEOUT)
        except ray.exceptions.RayError as exc:
            handle.ended = TaskEnded(False, f"Ray task failed: {_describe_ray_error(exc)}")
        else:
            handle.ended = ended_from_exit_code(int(code))
        return handle.ended

    def _cancel(self, handle: _RayTask) -> None:
        # force=True kills the task's worker process; the pipe's child process then gets
        # SIGTERM from the kernel (it asked for it when its supervisor dies).
        _import_ray().cancel(handle.ref, force=True)

    def _disconnect(self) -> None:
        self._remote = None
        if self._initialized_ray:
            self._initialized_ray = False
            _import_ray().shutdown()

    # -- reports ------------------------------------------------------------------------------

    @property
    def pipe_reports(self) -> list[PipeReport]:
        self._settle_ready()
        try:
            return super().pipe_reports
        finally:
            self._seen_running.clear()

    def _settle_ready(self) -> None:
        """One ``ray.wait`` for every task still running, instead of one per pipe."""
        pending = [
            handle
            for index, handle in enumerate(self._handles)
            if handle is not None and handle.ended is None and index not in self._abandoned
        ]
        ray = _import_ray()
        if len(pending) < 2 or not ray.is_initialized():
            return  # nothing to batch, or no longer connected
        refs = [handle.ref for handle in pending]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        done = {ref.hex() for ref in ready}
        for handle in pending:
            if handle.ref.hex() in done:
                self._settle(handle)
            else:
                self._seen_running.add(id(handle))
