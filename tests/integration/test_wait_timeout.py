"""Every engine's ``wait(timeout)`` returns within its timeout plus a few milliseconds.

Each test starts one pipe that takes seconds, then waits on it with timeouts far shorter than
the engine's poll interval: the best of :data:`TRIES` waits must return False no later than the
timeout plus :data:`SLACK` plus one look at the pipes (measured on the same engine, without
sleeping). The best of a few, because a loaded machine may wake any one thread late; the
defect this guards against (waiting out a whole poll interval) is late every time.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _support import Trigger, write_csv

from zoopipe_hpc import CSVInputAdapter, JSONOutputAdapter, Pipe, PipeManager
from zoopipe_hpc.engines.base import BaseEngine
from zoopipe_hpc.engines.multiprocess import MultiProcessEngine
from zoopipe_hpc.engines.slurm import SlurmEngine
from zoopipe_hpc.engines.zooparallel import ZooParallelPoolEngine

TIMEOUTS = (0.0, 0.001, 0.05)
#: What a wait may take past its timeout on top of one look at the pipes: a loaded 2-core
#: machine's delay in waking a sleeping thread. Before the fix, waits overshot by a whole poll
#: interval (0.05 s locally, 0.1 s on Ray and Dask, 1 s on Slurm).
SLACK = 0.010
#: Waits per timeout; the shortest overshoot counts.
TRIES = 3


def _slow_pipe(tmp_path: Path) -> Pipe:
    """A pipe of about four seconds (400 rows of 10 ms)."""
    rows = [{"id": i, "name": "sleep0.01"} for i in range(400)]
    source = write_csv(tmp_path / "in.csv", rows)
    return Pipe(CSVInputAdapter(source), JSONOutputAdapter(tmp_path / "out.jsonl"), Trigger)


def _look(engine: BaseEngine) -> float:
    """Seconds one look at the pipes takes (the median of five, so a rare slow one does not
    count: a Slurm look that queries Slurm is followed by cheap ones)."""
    costs = []
    for _ in range(5):
        start = time.monotonic()
        _ = engine.is_running
        costs.append(time.monotonic() - start)
    return statistics.median(costs)


def _best_overshoot(wait: Callable[..., bool], timeout: float) -> float:
    """The shortest of :data:`TRIES` overshoots of ``wait(timeout=timeout)``."""
    overshoots = []
    for _ in range(TRIES):
        start = time.monotonic()
        finished = wait(timeout=timeout)
        overshoots.append(time.monotonic() - start - timeout)
        assert finished is False, f"wait({timeout}) says a 4 s pipe has finished"
    return min(overshoots)


def check_waits_return_in_time(engine: BaseEngine, tmp_path: Path) -> None:
    engine.start([_slow_pipe(tmp_path)])
    try:
        overshoots: dict[float, float] = {}
        for timeout in TIMEOUTS:
            overshoots[timeout] = _best_overshoot(engine.wait, timeout)
        look = _look(engine)
        print(
            f"\n{type(engine).__name__}: look {look * 1000:.1f} ms, overshoot "
            + ", ".join(f"wait({t}) {o * 1000:+.1f} ms" for t, o in overshoots.items())
        )
        for timeout, overshoot in overshoots.items():
            assert overshoot <= SLACK + look, (
                f"{type(engine).__name__}.wait({timeout}) returned {overshoot * 1000:.1f} ms "
                f"late (allowed: {SLACK * 1000:.0f} ms + one look of {look * 1000:.1f} ms)"
            )
        assert engine.is_running
    finally:
        engine.shutdown(timeout=10)


def test_multiprocess_engine(tmp_path: Path) -> None:
    check_waits_return_in_time(MultiProcessEngine(), tmp_path)


def test_zooparallel_pool_engine(tmp_path: Path) -> None:
    check_waits_return_in_time(ZooParallelPoolEngine(n_workers=1), tmp_path)


@pytest.fixture(scope="module")
def ray_instance() -> Iterator[None]:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()


def test_ray_engine(ray_instance: None, tmp_path: Path) -> None:
    from zoopipe_hpc.engines.ray import RayEngine

    check_waits_return_in_time(RayEngine(), tmp_path)


def test_dask_engine(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    from zoopipe_hpc.engines.dask import DaskEngine

    check_waits_return_in_time(DaskEngine(n_workers=1), tmp_path)


@pytest.mark.slurm
@pytest.mark.usefixtures("slurm_cluster")
def test_slurm_engine(tmp_path: Path) -> None:
    # The default poll interval (1 s): the first looks find no record yet, and a Slurm query
    # (sacct, about 0.1 s) is due; a short wait must put it off.
    engine = SlurmEngine(folder=tmp_path / "jobs", time="00:05:00", mem="300M")
    check_waits_return_in_time(engine, tmp_path)


def test_pipe_manager_wait_and_run_timeout_return_in_time(tmp_path: Path) -> None:
    """``PipeManager.wait(timeout)`` is the engine's wait; ``run(timeout=...)`` stops the pipes
    and rolls back once the timeout passed, with its progress callback on."""
    manager = PipeManager([_slow_pipe(tmp_path)])
    manager.start()
    try:
        for timeout in TIMEOUTS:
            overshoot = _best_overshoot(manager.wait, timeout)
            assert overshoot <= SLACK + _look(manager.engine), f"wait({timeout}): {overshoot}"
    finally:
        manager.shutdown()
    updates: list[object] = []
    manager = PipeManager([_slow_pipe(tmp_path)])
    start = time.monotonic()
    assert manager.run(timeout=0.3, on_report_update=updates.append) is False
    # The stop after the timeout is a SIGTERM and a join: a little more than the timeout.
    assert time.monotonic() - start < 0.3 + 2.0
    assert updates and not (tmp_path / "out.jsonl").exists()
