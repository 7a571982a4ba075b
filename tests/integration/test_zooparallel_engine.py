from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
import types
from pathlib import Path

import psutil
import pytest
from _support import Trigger, read_jsonl, write_csv
from pydantic import BaseModel

from zoopipe_hpc import CSVInputAdapter, JSONOutputAdapter, Pipe, PipeManager, PipeStatus
from zoopipe_hpc.engines import BaseEngine, ZooParallelPoolEngine
from zoopipe_hpc.errors import ConfigurationError
from zoopipe_hpc.report import PipeReport
from zoopipe_hpc.testing import EngineConformance

TIMEOUT = 60.0


class TestZooParallelPoolEngine(EngineConformance):
    timeout = TIMEOUT

    def make_engine(self, tmp_path: Path) -> BaseEngine:
        return ZooParallelPoolEngine()


class TestZooParallelPoolEngineOneWorker(EngineConformance):
    """The same promises when a single worker runs every pipe, one after the other."""

    timeout = TIMEOUT

    def make_engine(self, tmp_path: Path) -> BaseEngine:
        return ZooParallelPoolEngine(n_workers=1)


def _pipe(tmp_path: Path, name: str, values: list[str]) -> Pipe:
    source = write_csv(
        tmp_path / f"{name}.csv", [{"id": i, "name": v} for i, v in enumerate(values)]
    )
    return Pipe(CSVInputAdapter(source), JSONOutputAdapter(tmp_path / f"{name}.jsonl"), Trigger)


def _wait_for(engine: ZooParallelPoolEngine, index: int, *, done: int = 1) -> PipeReport:
    """The report of pipe ``index`` once it is running and processed at least ``done`` rows."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        report = engine.get_pipe_report(index)
        if report.status is PipeStatus.RUNNING and report.total_processed >= done:
            return report
        if report.is_finished:
            pytest.fail(f"pipe {index} finished before it was seen running: {report}")
        time.sleep(0.01)
    pytest.fail(f"pipe {index} never ran")


def test_twenty_pipes_on_two_workers_use_two_processes(tmp_path: Path) -> None:
    pipes = [_pipe(tmp_path, f"p{k}", [f"n{i}" for i in range(5 + k)]) for k in range(20)]
    engine = ZooParallelPoolEngine(n_workers=2)
    manager = PipeManager(pipes, engine=engine)
    assert manager.run(timeout=TIMEOUT) is True
    reports = manager.pipe_reports
    assert [r.status for r in reports] == [PipeStatus.COMPLETED] * 20
    assert [r.total_processed for r in reports] == [5 + k for k in range(20)]
    assert len({r.pid for r in reports}) == 2
    assert {r.pid for r in reports} == set(engine.worker_pids)
    assert len(engine.worker_pids) == 2
    for k in range(20):
        assert len(read_jsonl(tmp_path / f"p{k}.jsonl")) == 5 + k
    manager.shutdown()


def test_default_pool_has_one_worker_per_pipe(tmp_path: Path) -> None:
    pipes = [_pipe(tmp_path, f"p{k}", ["sleep0.2", "a"]) for k in range(3)]
    engine = ZooParallelPoolEngine()
    engine.start(pipes)
    try:
        assert engine.wait(TIMEOUT)
        assert len(engine.worker_pids) == 3
        assert len({r.pid for r in engine.pipe_reports}) == 3
    finally:
        engine.shutdown()


def test_progress_is_live(tmp_path: Path) -> None:
    pipe = _pipe(tmp_path, "slow", ["sleep0.01"] * 300)
    engine = ZooParallelPoolEngine(n_workers=1)
    engine.start([pipe])
    try:
        report = _wait_for(engine, 0)
        assert 0 < report.total_processed < 300
        assert report.is_alive and engine.is_running
        assert engine.wait(TIMEOUT)
        assert engine.pipe_reports[0].total_processed == 300
    finally:
        engine.shutdown()


def test_a_failing_pipe_leaves_its_worker_running_the_next_ones(tmp_path: Path) -> None:
    pipes = [
        _pipe(tmp_path, "bad", ["a", "boom", "b"]),
        _pipe(tmp_path, "ok1", ["a", "b"]),
        _pipe(tmp_path, "ok2", ["a", "b", "c"]),
    ]
    engine = ZooParallelPoolEngine(n_workers=1)
    engine.start(pipes)
    try:
        assert engine.wait(TIMEOUT)
        bad, ok1, ok2 = engine.pipe_reports
        assert bad.status is PipeStatus.FAILED and "boom requested" in bad.message
        assert ok1.status is PipeStatus.COMPLETED and ok1.total_processed == 2
        assert ok2.status is PipeStatus.COMPLETED and ok2.total_processed == 3
        assert bad.pid == ok1.pid == ok2.pid
        assert len(engine.worker_pids) == 1
    finally:
        engine.shutdown()


def test_worker_killed_from_outside_fails_its_pipe_and_a_replacement_runs_the_rest(
    tmp_path: Path,
) -> None:
    pipes = [_pipe(tmp_path, "victim", ["sleep0.02"] * 500)]
    pipes += [_pipe(tmp_path, f"p{k}", ["sleep0.05"] * 8) for k in range(1, 7)]
    engine = ZooParallelPoolEngine(n_workers=2)
    engine.start(pipes)
    try:
        victim = _wait_for(engine, 0)
        assert victim.pid in engine.worker_pids[:2]
        os.kill(victim.pid, signal.SIGKILL)
        assert engine.wait(TIMEOUT)
        reports = engine.pipe_reports
        assert reports[0].status is PipeStatus.FAILED
        assert "SIGKILL" in reports[0].message
        assert 0 < reports[0].total_processed < 500
        for report in reports[1:]:
            assert report.status is PipeStatus.COMPLETED and report.total_processed == 8
        assert len(engine.worker_pids) == 3
        replacement = engine.worker_pids[2]
        assert replacement in {r.pid for r in reports[1:]}
        assert victim.pid not in {r.pid for r in reports[1:]}
    finally:
        engine.shutdown()


def test_shutdown_cancels_running_and_queued_pipes(tmp_path: Path) -> None:
    pipes = [_pipe(tmp_path, f"p{k}", ["sleep0.05"] * 200) for k in range(10)]
    engine = ZooParallelPoolEngine(n_workers=2)
    engine.start(pipes)
    _wait_for(engine, 0)
    _wait_for(engine, 1)
    engine.shutdown(timeout=10)
    reports = engine.pipe_reports
    assert not engine.is_running
    assert all(r.status is PipeStatus.CANCELLED for r in reports)
    for report in reports[:2]:
        assert report.total_processed > 0
        assert report.message != "cancelled before it started"
    for report in reports[2:]:
        assert report.message == "cancelled before it started"
        assert report.total_processed == 0


def test_no_process_or_file_is_left_after_shutdown(tmp_path: Path) -> None:
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    pipes = [_pipe(tmp_path, f"p{k}", ["sleep0.05"] * 100) for k in range(4)]
    engine = ZooParallelPoolEngine(n_workers=2)
    engine.start(pipes)
    _wait_for(engine, 0)
    folder = engine.progress_dir
    assert folder is not None and folder.is_dir()
    engine.shutdown()
    after = {p.pid for p in me.children(recursive=True)}
    assert not (after - before)
    assert not set(engine.worker_pids) & after
    assert not folder.exists()


def test_finished_run_leaves_no_board_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    boards = tmp_path / "boards"
    boards.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(boards))
    engine = ZooParallelPoolEngine(n_workers=2)
    engine.start([_pipe(tmp_path, f"p{k}", ["a", "b"]) for k in range(3)])
    try:
        assert engine.wait(TIMEOUT)
        assert len(list(boards.glob("zoopipe-pool-*.board"))) <= 1
    finally:
        engine.shutdown()
    assert not list(boards.glob("zoopipe-pool-*"))


def test_user_progress_dir_is_kept(tmp_path: Path) -> None:
    folder = tmp_path / "records"
    engine = ZooParallelPoolEngine(n_workers=1, progress_dir=folder)
    engine.start([_pipe(tmp_path, "p", ["a", "b"])])
    assert engine.wait(TIMEOUT)
    engine.shutdown()
    assert len(list(folder.glob("progress-*.rec"))) == 1


@pytest.mark.parametrize("n_workers", [0, -1])
def test_n_workers_below_one_is_a_configuration_error(n_workers: int) -> None:
    with pytest.raises(ConfigurationError, match="n_workers"):
        ZooParallelPoolEngine(n_workers=n_workers)


def test_unknown_start_method_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="start_method"):
        ZooParallelPoolEngine(start_method="teleport")


def test_start_twice_while_running_raises(tmp_path: Path) -> None:
    engine = ZooParallelPoolEngine(n_workers=1)
    engine.start([_pipe(tmp_path, "p", ["sleep0.05"] * 100)])
    try:
        with pytest.raises(RuntimeError, match="already running"):
            engine.start([_pipe(tmp_path, "q", ["a"])])
    finally:
        engine.shutdown()


def test_engine_can_be_reused_after_a_run(tmp_path: Path) -> None:
    engine = ZooParallelPoolEngine(n_workers=2)
    assert PipeManager([_pipe(tmp_path, "a", ["x"])], engine=engine).run(timeout=TIMEOUT)
    assert PipeManager(
        [_pipe(tmp_path, "b", ["x", "y"]), _pipe(tmp_path, "c", ["z"])], engine=engine
    ).run(timeout=TIMEOUT)
    assert [r.total_processed for r in engine.pipe_reports] == [2, 1]
    engine.shutdown()


def test_no_pipes(tmp_path: Path) -> None:
    engine = ZooParallelPoolEngine()
    engine.start([])
    assert engine.wait(1.0)
    assert engine.pipe_reports == [] and engine.worker_pids == []
    engine.shutdown()


def test_spawn_workers_run_pipes(tmp_path: Path) -> None:
    pipes = [_pipe(tmp_path, f"p{k}", ["a", "b", "c"]) for k in range(3)]
    engine = ZooParallelPoolEngine(n_workers=2, start_method="spawn")
    manager = PipeManager(pipes, engine=engine)
    assert manager.run(timeout=TIMEOUT) is True
    assert [r.total_processed for r in manager.pipe_reports] == [3, 3, 3]
    assert len(engine.worker_pids) == 2
    manager.shutdown()


def test_workers_that_cannot_start_fail_the_pipes_instead_of_respawning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A model from a module only the parent has: a spawned worker cannot unpickle its pipes.
    module = types.ModuleType("zoopipe_parent_only_models")

    class Row(BaseModel):
        id: int
        name: str

    Row.__module__ = module.__name__
    Row.__qualname__ = "Row"
    module.Row = Row  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    source = write_csv(tmp_path / "in.csv", [{"id": 1, "name": "a"}])
    pipes = [
        Pipe(CSVInputAdapter(source), JSONOutputAdapter(tmp_path / f"o{k}.jsonl"), Row)
        for k in range(3)
    ]
    engine = ZooParallelPoolEngine(n_workers=2, start_method="spawn")
    engine.start(pipes)
    try:
        assert engine.wait(TIMEOUT)
        for report in engine.pipe_reports:
            assert report.status is PipeStatus.FAILED
            assert "no pool worker could start" in report.message
        assert len(engine.worker_pids) == 2
    finally:
        engine.shutdown()
