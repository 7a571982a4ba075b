from __future__ import annotations

from pathlib import Path

import pytest

from zoopipe_hpc.engines import BaseEngine, MultiProcessEngine
from zoopipe_hpc.testing import EngineConformance


class TestMultiProcessEngine(EngineConformance):
    timeout = 60.0

    def make_engine(self, tmp_path: Path) -> BaseEngine:
        return MultiProcessEngine()


class TestMultiProcessEngineLimited(EngineConformance):
    """The same promises when fewer processes than pipes may run at once."""

    timeout = 60.0

    def make_engine(self, tmp_path: Path) -> BaseEngine:
        return MultiProcessEngine(max_workers=1)


def test_ctrl_c_stops_the_workers_and_rolls_back(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    from _support import Trigger, write_csv

    from zoopipe_hpc import CSVInputAdapter, JSONOutputAdapter, Pipe, PipeManager

    source = write_csv(tmp_path / "in.csv", [{"id": i, "name": "sleep0.05"} for i in range(200)])
    target = tmp_path / "out.jsonl"
    manager = PipeManager.parallelize_pipe(
        Pipe(CSVInputAdapter(source), JSONOutputAdapter(target), Trigger), workers=2
    )
    calls = {"n": 0}

    def interrupt(report):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        manager.run(on_report_update=interrupt)
    assert calls["n"] == 1
    assert not manager.is_running
    assert manager.succeeded is False
    assert not target.exists()
    assert not list((tmp_path / ".zoopipe-staging").glob("out.jsonl.run-*"))
