"""DaskEngine without a cluster: optional import, argument checks, task states, the task body."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from zoopipe_hpc.engines._tracking import RUNNING, TaskEnded
from zoopipe_hpc.engines.dask import (
    MISSING_DASK,
    DaskEngine,
    PipeAlreadyRan,
    _DaskTask,
    run_pipe_task,
)
from zoopipe_hpc.errors import ConfigurationError

pytest.importorskip("distributed")


class FakeFuture:
    """Just what DaskEngine reads of a ``distributed.Future``."""

    def __init__(self, status: str, result: Any = None, error: BaseException | None = None):
        self.status = status
        self._result = result
        self._error = error
        self.calls = 0
        self.cancelled = False

    def result(self, timeout: float | None = None) -> Any:
        self.calls += 1
        if isinstance(self._result, BaseException):
            raise self._result
        return self._result

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self.calls += 1
        return self._error

    def done(self) -> bool:
        return self.status != "pending"

    def cancel(self) -> None:
        self.cancelled = True


def test_importing_the_engines_does_not_import_dask():
    code = (
        "import sys, zoopipe_hpc, zoopipe_hpc.engines, zoopipe_hpc.engines.dask; "
        "print('distributed' in sys.modules or 'dask' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_missing_dask_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ConfigurationError) as caught:
        DaskEngine()
    assert str(caught.value) == MISSING_DASK
    assert "pip install 'zoopipe_hpc[dask]'" in str(caught.value)


def test_missing_dask_jobqueue_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "dask_jobqueue", None)
    with pytest.raises(ConfigurationError, match=r"zoopipe_hpc\[dask\]"):
        DaskEngine.on_slurm(jobs=1, queue="debug")


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((42,), {}, "not int"),
        (("tcp://127.0.0.1:8786",), {"n_workers": 2}, "n_workers sizes"),
        ((), {"n_workers": 0}, "at least 1"),
    ],
)
def test_bad_arguments_are_configuration_errors(args: Any, kwargs: Any, message: str):
    with pytest.raises(ConfigurationError, match=message):
        DaskEngine(*args, **kwargs)


def test_on_slurm_needs_at_least_one_job():
    with pytest.raises(ConfigurationError, match="jobs"):
        DaskEngine.on_slurm(jobs=0)


def test_shutdown_before_start_does_nothing():
    engine = DaskEngine("tcp://127.0.0.1:1")
    engine.shutdown()
    assert engine.pipe_reports == [] and engine.client is None


@pytest.mark.parametrize(
    ("future", "expected"),
    [
        (FakeFuture("finished", 0), TaskEnded(True, "")),
        (FakeFuture("finished", 1), TaskEnded(False, "worker process exited with code 1")),
        (FakeFuture("finished", -9), TaskEnded(False, "worker process was killed by SIGKILL")),
        (FakeFuture("finished", -11), TaskEnded(False, "worker process was killed by SIGSEGV")),
        (
            FakeFuture("error", error=ValueError("bad input")),
            TaskEnded(False, "Dask task failed: ValueError: bad input"),
        ),
        (FakeFuture("cancelled"), TaskEnded(False, "the Dask task was cancelled")),
        (
            FakeFuture("lost"),
            TaskEnded(False, "Dask lost the task (its worker left the cluster)"),
        ),
        (
            FakeFuture("finished", OSError("connection closed")),
            TaskEnded(
                False, "Dask task finished, its outcome is unknown: OSError: connection closed"
            ),
        ),
    ],
)
def test_task_states(future: FakeFuture, expected: TaskEnded):
    engine = DaskEngine("tcp://127.0.0.1:1")
    task = _DaskTask(future)
    assert engine._state(task) == expected
    assert engine._state(task) == expected
    assert future.calls <= 1, "the outcome of an ended task is asked of Dask once"


def test_a_queued_or_running_task_is_running_and_cancel_cancels_it():
    engine = DaskEngine("tcp://127.0.0.1:1")
    future = FakeFuture("pending")
    task = _DaskTask(future)
    assert engine._state(task) == RUNNING
    engine._cancel(task)
    assert future.cancelled


def test_a_pipe_whose_record_exists_is_not_run_again(tmp_path: Path):
    record = tmp_path / "progress-00000.abc.rec"
    record.write_bytes(b"")
    with pytest.raises(PipeAlreadyRan, match="not run a second time"):
        run_pipe_task(b"", 0, str(record), "abc")
