"""RayEngine: the conformance suite on one shared local Ray instance, plus Ray's own cases.

Starting Ray takes seconds, so the module shares one instance (``ray_session``), started on
first use; the test of the engine's own local start runs first and leaves Ray stopped.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray")

from _support import Trigger, read_jsonl, write_csv  # noqa: E402
from pydantic import BaseModel, field_validator  # noqa: E402

from zoopipe_hpc import (  # noqa: E402
    CSVInputAdapter,
    JSONOutputAdapter,
    Pipe,
    PipeManager,
    PipeStatus,
)
from zoopipe_hpc.engines.ray import RayEngine  # noqa: E402
from zoopipe_hpc.errors import ConfigurationError  # noqa: E402
from zoopipe_hpc.testing import EngineConformance  # noqa: E402

#: CPUs of the shared instance: every pipe of a conformance test can run at once.
_CPUS = 4


def _init_shared_ray() -> None:
    import logging

    ray.init(num_cpus=_CPUS, include_dashboard=False, logging_level=logging.WARNING)


@pytest.fixture(scope="module")
def _ray_module() -> Iterator[None]:
    yield
    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture
def ray_session(_ray_module: None) -> str:
    """A Ray instance initialized in this process (shared by the module); its address."""
    if not ray.is_initialized():
        _init_shared_ray()
    return str(ray.get_runtime_context().gcs_address)


class Shouting(BaseModel):
    """A model defined in this test module: it must travel to the Ray workers by value."""

    id: int
    name: str

    @field_validator("name")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()


def _one_pipe(tmp_path: Path, rows: int = 20, model: type[BaseModel] = Trigger) -> Pipe:
    source = write_csv(tmp_path / "in.csv", [{"id": i, "name": f"n{i}"} for i in range(rows)])
    return Pipe(CSVInputAdapter(source), JSONOutputAdapter(tmp_path / "out.jsonl"), model)


# -- runs first: the engine starts its own local instance when none is running -----------------


def test_engine_starts_and_stops_a_local_instance(tmp_path: Path) -> None:
    if ray.is_initialized():
        ray.shutdown()  # another order (-p randomly, -k): ray_session starts it again later
    engine = RayEngine(init_kwargs={"num_cpus": 2})
    manager = PipeManager([_one_pipe(tmp_path)], engine=engine)
    try:
        assert manager.run(timeout=120) is True
        assert engine.started_ray and ray.is_initialized()
    finally:
        manager.shutdown()
    assert not engine.started_ray
    assert not ray.is_initialized()
    assert len(read_jsonl(tmp_path / "out.jsonl")) == 20


# -- the conformance suite on the shared instance ---------------------------------------------


class TestRayEngine(EngineConformance):
    timeout = 90.0

    @pytest.fixture
    def engine(self, ray_session: str) -> Iterator[RayEngine]:
        engine = RayEngine(poll_interval=0.05)
        yield engine
        engine.shutdown()
        assert not engine.started_ray and ray.is_initialized()  # the user's Ray stays up


# -- Ray's own cases -----------------------------------------------------------------------------


def test_model_defined_in_the_test_module_travels_to_the_workers(
    ray_session: str, tmp_path: Path
) -> None:
    engine = RayEngine()
    manager = PipeManager.parallelize_pipe(_one_pipe(tmp_path, 30, Shouting), 2, engine=engine)
    try:
        assert manager.run(timeout=60) is True
    finally:
        manager.shutdown()
    rows = read_jsonl(tmp_path / "out.jsonl")
    assert [r["name"] for r in rows] == [f"N{i}" for i in range(30)]


def test_a_task_ray_cannot_schedule_waits_then_is_cancelled_by_shutdown(
    ray_session: str, tmp_path: Path
) -> None:
    # A resource no node has: Ray keeps the task pending (and warns that it is infeasible).
    engine = RayEngine(task_options={"resources": {"no_such_resource": 1}})
    engine.start([_one_pipe(tmp_path)])
    try:
        time.sleep(1.0)
        assert engine.is_running
        assert not engine.pipe_reports[0].is_finished
        started = time.monotonic()
        engine.shutdown(timeout=0.5)
        assert time.monotonic() - started < 10
        report = engine.pipe_reports[0]
        assert report.status is PipeStatus.CANCELLED
        assert "did not stop in time" in report.message
    finally:
        engine.shutdown(timeout=0.5)
    assert not (tmp_path / "out.jsonl").exists()


def test_a_pipe_whose_task_is_force_cancelled_is_reported(ray_session: str, tmp_path: Path) -> None:
    source = write_csv(tmp_path / "in.csv", [{"id": i, "name": "sleep0.05"} for i in range(400)])
    pipe = Pipe(CSVInputAdapter(source), JSONOutputAdapter(tmp_path / "out.jsonl"), Trigger)
    engine = RayEngine(poll_interval=0.05)
    engine.start([pipe])
    try:
        deadline = time.monotonic() + 60
        while engine.report.total_processed == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        task = engine._handles[0]
        assert task is not None
        ray.cancel(task.ref, force=True)  # as if the node or the worker went away
        deadline = time.monotonic() + 30
        while engine.is_running and time.monotonic() < deadline:
            time.sleep(0.05)
        report = engine.pipe_reports[0]
        assert report.is_finished
        # Not cancelled by the engine: a failure naming Ray's error, whether or not the pipe's
        # child (sent SIGTERM when its worker died) recorded its own cancellation first.
        assert report.status is PipeStatus.FAILED, report
        assert report.message.startswith("Ray task failed: TaskCancelledError"), report.message
        record = str(engine.progress_dir)
        deadline = time.monotonic() + 10
        while _processes_mentioning(record) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _processes_mentioning(record)  # the pipe's process did not outlive its task
    finally:
        engine.shutdown(timeout=2)
    assert not (tmp_path / "out.jsonl").exists()


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text in cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return found


def test_joins_an_existing_cluster_by_address_and_leaves_it_running(
    ray_session: str, tmp_path: Path
) -> None:
    script = textwrap.dedent(
        """
        import sys
        from pydantic import BaseModel

        import ray
        from zoopipe_hpc import CSVInputAdapter, JSONOutputAdapter, Pipe, PipeManager
        from zoopipe_hpc.engines.ray import RayEngine

        class Row(BaseModel):
            id: int
            name: str

        address, folder = sys.argv[1], sys.argv[2]
        engine = RayEngine(address=address)
        pipe = Pipe(
            CSVInputAdapter(folder + "/in.csv"), JSONOutputAdapter(folder + "/out.jsonl"), Row
        )
        manager = PipeManager.parallelize_pipe(pipe, workers=2, engine=engine)
        ok = manager.run(timeout=60)
        assert engine.started_ray and ray.is_initialized()
        manager.shutdown()
        assert not ray.is_initialized()
        print("ok" if ok else f"failed: {manager.error}")
        """
    )
    write_csv(tmp_path / "in.csv", [{"id": i, "name": f"n{i}"} for i in range(25)])
    result = subprocess.run(
        [sys.executable, "-c", script, ray_session, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "ok", result.stdout + result.stderr
    assert [r["id"] for r in read_jsonl(tmp_path / "out.jsonl")] == list(range(25))

    @ray.remote(num_cpus=0)
    def alive() -> str:
        return "alive"

    assert ray.get(alive.remote(), timeout=30) == "alive"  # the cluster kept running


def test_one_ray_wait_per_look_and_none_once_settled(
    ray_session: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    original = ray.wait

    def counting_wait(refs: list[Any], *args: Any, **kwargs: Any) -> Any:
        calls.append(len(refs))
        return original(refs, *args, **kwargs)

    engine = RayEngine()
    pipes = []
    for k in range(3):
        folder = tmp_path / str(k)
        folder.mkdir()
        source = write_csv(folder / "in.csv", [{"id": i, "name": "sleep0.1"} for i in range(10)])
        pipes.append(Pipe(CSVInputAdapter(source), JSONOutputAdapter(folder / "o.jsonl"), Trigger))
    engine.start(pipes)
    monkeypatch.setattr(ray, "wait", counting_wait)
    try:
        reports = engine.pipe_reports
        assert calls == [3]  # all three tasks looked at with one call
        assert not any(r.is_finished for r in reports)
        assert engine.wait(60)
        deadline = time.monotonic() + 20
        while True:
            calls.clear()
            reports = engine.pipe_reports
            assert len(calls) <= 1
            if not calls or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert calls == []  # every task's end is remembered: Ray is not asked again
        assert [r.status for r in reports] == [PipeStatus.COMPLETED] * 3
    finally:
        engine.shutdown()


def test_missing_ray_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(ConfigurationError, match=r"pip install 'zoopipe_hpc\[ray\]'"):
        RayEngine()


@pytest.mark.parametrize(
    "kwargs",
    [{"num_cpus_per_pipe": -1}, {"memory_per_pipe": 0}, {"poll_interval": 0}],
)
def test_invalid_parameters_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        RayEngine(**kwargs)
