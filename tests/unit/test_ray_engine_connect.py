"""RayEngine's choice of ``ray.init`` arguments and who shuts Ray down, against a fake ``ray``."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest

from zoopipe_hpc.engines._tracking import RUNNING, TaskEnded
from zoopipe_hpc.engines.ray import RayEngine, _describe_ray_error, _RayTask


class _RayError(Exception):
    pass


class _FakeRay(types.ModuleType):
    wait: Any
    get: Any

    def __init__(self, initialized: bool = False, init_error: BaseException | None = None):
        super().__init__("ray")
        self.initialized = initialized
        self.init_error = init_error
        self.init_calls: list[dict[str, Any]] = []
        self.shutdown_calls = 0
        self.remote_options: dict[str, Any] = {}
        self.exceptions = types.SimpleNamespace(RayError=_RayError)

    def is_initialized(self) -> bool:
        return self.initialized

    def init(self, **kwargs: Any) -> None:
        self.init_calls.append(kwargs)
        if self.init_error is not None:
            raise self.init_error
        self.initialized = True

    def shutdown(self) -> None:
        self.shutdown_calls += 1
        self.initialized = False

    def remote(self, **options: Any) -> Any:
        self.remote_options = options
        return lambda function: function


@pytest.fixture
def fake_ray(monkeypatch: pytest.MonkeyPatch) -> _FakeRay:
    fake = _FakeRay()
    monkeypatch.setitem(sys.modules, "ray", fake)
    return fake


def test_no_address_starts_a_quiet_local_instance_and_shuts_it_down(fake_ray: _FakeRay) -> None:
    engine = RayEngine(init_kwargs={"num_cpus": 3})
    engine._connect()
    (kwargs,) = fake_ray.init_calls
    assert kwargs["include_dashboard"] is False
    assert kwargs["num_cpus"] == 3 and "address" not in kwargs
    assert kwargs["logging_level"] >= 30  # WARNING: no INFO banner from Ray
    assert fake_ray.remote_options == {"num_cpus": 1, "max_retries": 0}
    engine._disconnect()
    assert fake_ray.shutdown_calls == 1


def test_an_address_joins_and_only_disconnects(fake_ray: _FakeRay) -> None:
    engine = RayEngine("host:6379", num_cpus_per_pipe=2, resources={"disk": 1})
    engine._connect()
    (kwargs,) = fake_ray.init_calls
    assert kwargs["address"] == "host:6379" and "include_dashboard" not in kwargs
    assert fake_ray.remote_options == {"num_cpus": 2, "max_retries": 0, "resources": {"disk": 1}}
    engine._disconnect()  # ray.shutdown() of a joined cluster only disconnects this process
    assert fake_ray.shutdown_calls == 1


def test_ray_initialized_by_the_user_is_used_and_left_alone(fake_ray: _FakeRay) -> None:
    fake_ray.initialized = True
    engine = RayEngine("host:6379")
    engine._connect()
    engine._disconnect()
    assert fake_ray.init_calls == [] and fake_ray.shutdown_calls == 0
    assert fake_ray.initialized


def test_a_refused_connection_mentions_token_authentication(
    fake_ray: _FakeRay, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    fake_ray.init_error = ConnectionError("Failed to connect to Ray cluster at host:6379")
    with pytest.raises(ConnectionError, match="RAY_AUTH_MODE=token"):
        RayEngine("host:6379")._connect()


def test_an_ended_task_is_remembered_and_ray_errors_keep_their_type(fake_ray: _FakeRay) -> None:
    class WorkerCrashedError(_RayError):
        pass

    fake_ray.initialized = True
    fake_ray.wait = lambda refs, **kw: (list(refs), [])

    def get(ref: Any, timeout: float) -> int:
        if ref == "crashed":
            raise WorkerCrashedError("The worker died unexpectedly.\nmore details")
        return -9

    fake_ray.get = get
    engine = RayEngine()
    killed = _RayTask("killed")
    ended = engine._state(killed)
    assert isinstance(ended, TaskEnded) and not ended.ok and "SIGKILL" in ended.reason
    crashed = engine._state(_RayTask("crashed"))
    assert crashed == TaskEnded(
        False, "Ray task failed: WorkerCrashedError: The worker died unexpectedly."
    )
    fake_ray.wait = lambda refs, **kw: ([], list(refs))
    assert engine._state(_RayTask("other")) == RUNNING
    assert engine._state(killed) == ended  # remembered: Ray is not asked again


def test_a_ray_task_error_names_the_cause() -> None:
    class RayTaskError(_RayError):
        def __init__(self, cause: BaseException) -> None:
            super().__init__("Traceback (most recent call last):\n ...")
            self.cause = cause

    text = _describe_ray_error(RayTaskError(FileNotFoundError("no such file: x")))
    assert text == "RayTaskError: no such file: x"
    assert len(_describe_ray_error(_RayError("x" * 1000))) < 320
