"""The Slurm engine's request budget, the scrubbed sbatch environment and non-blocking state
queries, with a fake clock, a fake state source and a fake ``subprocess.run`` (no cluster)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from zoopipe_hpc.engines.slurm import SlurmEngine, _cli
from zoopipe_hpc.engines.slurm._budget import BURST, QueryBudget
from zoopipe_hpc.engines.slurm._cli import SlurmCLI, submission_environment
from zoopipe_hpc.engines.slurm._state import SacctSource, TaskState
from zoopipe_hpc.errors import ConfigurationError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class PendingSource:
    """Says every task of every array it is asked about is PENDING; notes when it was asked."""

    name = "sacct"

    def __init__(self, clock: Clock, tasks: dict[str, int]) -> None:
        self.clock = clock
        self.tasks = tasks
        self.asked: list[float] = []

    def query(self, array_ids: Sequence[str]) -> dict[str, TaskState]:
        self.asked.append(self.clock())
        return {
            f"{a}_{t}": TaskState(f"{a}_{t}", "PENDING")
            for a in array_ids
            for t in range(self.tasks[a])
        }


def _engine(tmp_path: Path, shards: int, clock: Clock, **kwargs: object) -> SlurmEngine:
    """An engine watching ``shards`` pending tasks in arrays of 100, on the fake clock."""
    folder = tmp_path / "job"
    (folder / "progress").mkdir(parents=True)
    engine = SlurmEngine(tmp_path, poll_interval=0.5, **kwargs)  # type: ignore[arg-type]
    engine._clock = clock
    engine.attach(folder, [[f"{100 + i // 100}_{i % 100}"] for i in range(shards)])
    return engine


def _per_window(times: list[float], start: float, minutes: int) -> list[int]:
    return [sum(start + 60 * m <= t < start + 60 * (m + 1) for t in times) for m in range(minutes)]


def test_the_bucket_allows_a_burst_then_the_sustained_rate() -> None:
    clock = Clock()
    budget = QueryBudget(4, clock=clock)
    taken: list[float] = []
    for _ in range(20 * 60):  # a caller that asks twice a second for 10 minutes
        for _ in range(2):
            if budget.try_take():
                taken.append(clock.now)
        clock.now += 0.5
    assert len(taken) <= BURST + 4 * 10
    assert sum(t < 1000.0 + 5 for t in taken) == BURST  # the burst, at once
    for count in _per_window(taken, 1000.0 + 60, 9):
        assert count <= 4 + 1  # a window may straddle one token's refill


def test_a_site_may_set_the_budget_lower_but_not_to_nothing(tmp_path: Path) -> None:
    engine = SlurmEngine(tmp_path, max_queries_per_minute=1)
    assert engine._budget.per_minute == 1
    with pytest.raises(ConfigurationError, match="max_queries_per_minute"):
        SlurmEngine(tmp_path, max_queries_per_minute=0)


def test_a_thousand_pending_shards_for_ten_minutes_stay_in_budget(tmp_path: Path) -> None:
    clock = Clock()
    engine = _engine(tmp_path, 1000, clock)
    source = PendingSource(clock, {str(100 + a): 100 for a in range(10)})
    engine._source = source
    start = clock.now
    while clock.now < start + 600:
        reports = engine._refresh()
        clock.now += 2.0  # polls 2 s apart keep the test short; the budget does not care
    assert len(reports) == 1000 and all(r.extra["slurm_state"] == "PENDING" for r in reports)
    windows = _per_window(source.asked, start, 10)
    assert windows[0] <= BURST
    assert all(count <= 4 for count in windows[1:]), windows
    assert len(source.asked) <= BURST + 4 * 10
    # Pending tasks alone: one query a minute for all ten arrays, not one per array or poll.
    assert len(source.asked) == 10, source.asked


def test_the_budget_holds_when_every_shard_needs_slurm_at_every_poll(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    engine = _engine(tmp_path, 100, clock, max_queries_per_minute=2)
    source = PendingSource(clock, {"100": 100})
    engine._source = source
    # As if every record were stale: each poll has a query due.
    monkeypatch.setattr(SlurmEngine, "_needs_slurm", lambda self, shard, now: True)
    for shard in engine._shards:
        shard.reader = type("R", (), {"last": object()})()  # type: ignore[assignment]
    start = clock.now
    monkeypatch.setattr(SlurmEngine, "_shard_report", lambda self, s: _pending_report(s))
    while clock.now < start + 600:
        engine._refresh()
        clock.now += 0.5
    windows = _per_window(source.asked, start, 10)
    assert windows[0] <= BURST + 2  # the burst, and what refilled meanwhile
    assert all(count <= 2 + 1 for count in windows[1:]), windows
    assert len(source.asked) <= BURST + 2 * 10


def _pending_report(shard: object):  # type: ignore[no-untyped-def]
    from zoopipe_hpc.engines._worker import report_from_snapshot

    return report_from_snapshot(shard.index, None)  # type: ignore[attr-defined]


class NodeFailThenRequeued:
    """NODE_FAIL for the first ``fails`` answers, then PENDING: Slurm requeued the task."""

    name = "sacct"

    def __init__(self, clock: Clock, fails: int) -> None:
        self.clock = clock
        self.fails = fails
        self.asked: list[float] = []

    def query(self, array_ids: Sequence[str]) -> dict[str, TaskState]:
        self.asked.append(self.clock())
        state = "NODE_FAIL" if len(self.asked) <= self.fails else "PENDING"
        return {"100_0": TaskState("100_0", state, "0:0", "n1")}


def test_a_node_failure_is_final_only_after_an_answer_given_after_the_grace_period(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the budget spent, the answer that would show the requeue comes late: the shard
    waits for it instead of failing at the grace period's end on an old NODE_FAIL."""
    clock = Clock()
    monkeypatch.setattr("time.time", clock)
    engine = _engine(tmp_path, 1, clock, stale_after=6.0)
    source = NodeFailThenRequeued(clock, fails=1)
    engine._source = source
    engine._budget._tokens = 1.0  # spent by earlier queries: the next token in 15 s
    monkeypatch.setattr(SlurmEngine, "_needs_slurm", lambda self, shard, now: True)
    engine._shards[0].reader = type("R", (), {"last": object()})()  # type: ignore[assignment]
    monkeypatch.setattr(SlurmEngine, "_shard_report", lambda self, s: _pending_report(s))
    start = clock.now
    while clock.now < start + 120 and len(source.asked) < 2:
        engine._refresh()
        assert engine._shards[0].final is None, engine._shards[0].final
        clock.now += 0.5
    engine._refresh()
    assert len(source.asked) == 2 and source.asked[1] - source.asked[0] > 6.0
    assert engine._shards[0].slurm is not None
    assert engine._shards[0].slurm.state == "PENDING" and engine._shards[0].final is None


def test_sbatch_from_inside_a_job_drops_the_allocation_variables() -> None:
    inside = {
        "SLURM_JOB_ID": "7",
        "SLURM_MEM_PER_NODE": "200",
        "SLURM_CPUS_ON_NODE": "1",
        "SBATCH_PARTITION": "debug",
        "SLURM_CONF": "/etc/slurm/slurm.conf",
        "PATH": "/usr/bin",
        "PYTHONPATH": "/work",
    }
    assert submission_environment(inside) == {
        "SLURM_CONF": "/etc/slurm/slurm.conf",
        "PATH": "/usr/bin",
        "PYTHONPATH": "/work",
    }
    # Outside a job nothing is scrubbed: a user's SBATCH_* settings still apply.
    assert submission_environment({"SBATCH_ACCOUNT": "lab", "PATH": "/bin"}) is None


def test_only_sbatch_gets_the_scrubbed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, object]] = []

    def run(args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append((args[0], kwargs.get("env")))
        return subprocess.CompletedProcess(args, 0, "12\n", "")

    monkeypatch.setattr(_cli.subprocess, "run", run)
    monkeypatch.setattr(_cli.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    monkeypatch.setenv("SLURM_MEM_PER_NODE", "200")
    cli = SlurmCLI()
    cli.run(["sbatch", "--parsable", "x.sh"])
    cli.run(["squeue", "--noheader"])
    (tool, env), (other, other_env) = seen
    assert tool == "sbatch" and isinstance(env, dict)
    assert "SLURM_MEM_PER_NODE" not in env and "SLURM_JOB_ID" not in env and "PATH" in env
    assert other == "squeue" and other_env is None


def test_a_failing_state_query_never_sleeps_inside_a_poll(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """slurmdbd briefly down: each poll makes one attempt at most and never sleeps; the retries
    come at later polls (1, 2, 4 s apart), and the reports keep coming meanwhile."""
    sleeps: list[float] = []
    answers = [(1, "", "sacct: error: slurm_receive_msg: Socket timed out")] * 3
    answers.append((0, "100|RUNNING|0:0|n1|0:0\n100_1|PENDING|0:0|None assigned|0:0\n", ""))
    commands: list[float] = []
    clock = Clock()

    def run(args, **kwargs):  # type: ignore[no-untyped-def]
        commands.append(clock.now)
        code, out, err = answers.pop(0)
        return subprocess.CompletedProcess(args, code, out, err)

    monkeypatch.setattr(_cli.subprocess, "run", run)
    monkeypatch.setattr(_cli.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    monkeypatch.setattr(_cli.time, "sleep", sleeps.append)
    engine = _engine(tmp_path, 2, clock)
    engine._source = SacctSource(engine._query_cli)
    start = clock.now
    polls = 0
    while clock.now < start + 10:
        reports = engine._refresh()
        polls += 1
        clock.now += 0.5
    assert sleeps == []  # no poll waited for a retry
    assert [t - start for t in commands] == [0.0, 1.0, 3.0, 7.0]
    assert polls == 20 and len(reports) == 2
    assert reports[1].extra["slurm_state"] == "PENDING"
    assert engine.slurm_calls() == {"sacct": 4}


def test_a_transient_failure_of_the_source_probe_is_asked_again_not_settled_for_squeue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = [
        (1, "", "sacct: error: Socket timed out"),  # the probe, slurmdbd busy
        (0, "", ""),  # the probe again, one second later: sacct works
        (0, "100_0|PENDING|0:0|None assigned|0:0\n", ""),
    ]
    tools: list[str] = []

    def run(args, **kwargs):  # type: ignore[no-untyped-def]
        tools.append(args[0])
        code, out, err = answers.pop(0)
        return subprocess.CompletedProcess(args, code, out, err)

    monkeypatch.setitem(sys.modules, "pyslurm", None)  # not importable
    monkeypatch.setattr(_cli.subprocess, "run", run)
    monkeypatch.setattr(_cli.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    monkeypatch.setattr(_cli.time, "sleep", lambda s: pytest.fail("a poll slept"))
    clock = Clock()
    engine = _engine(tmp_path, 1, clock)
    for _ in range(4):
        reports = engine._refresh()
        clock.now += 0.5
    assert engine._source is not None and engine._source.name == "sacct"
    assert tools == ["sacct", "sacct", "sacct"]
    assert reports[0].extra["slurm_state"] == "PENDING"
