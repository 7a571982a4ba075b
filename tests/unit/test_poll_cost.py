"""A poll of the coordinator costs O(shards not settled): settled shards' records and result
files are never opened again, the progress folder is listed only when it changed, and the
aggregate report is kept from totals (the Slurm engine and the local engines' tracker)."""

from __future__ import annotations

import collections
import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from zoopipe_hpc.commit.staged import WorkerOutcome, result_path, write_result
from zoopipe_hpc.engines._attempts import slurm_attempt_id
from zoopipe_hpc.engines._live import LiveReports
from zoopipe_hpc.engines._scheduled import ScheduledEngine
from zoopipe_hpc.engines._tracking import RUNNING, PipeTracker, TaskEnded, TaskState
from zoopipe_hpc.engines._worker import progress_path
from zoopipe_hpc.engines.slurm import SlurmCLI, SlurmEngine
from zoopipe_hpc.engines.slurm._claims import ClaimBoard
from zoopipe_hpc.engines.slurm._listing import RELIST_EVERY, SETTLE
from zoopipe_hpc.engines.slurm._state import TaskState as SlurmTaskState
from zoopipe_hpc.engines.slurm._watch import IDLE_ARRAY_AFTER
from zoopipe_hpc.progress import ProgressWriter
from zoopipe_hpc.report import PipeReport, PipeStatus

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from poll_cost import start_running, write_finished  # noqa: E402 - a shard's files, as there

JOB = "700"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class RunningSource:
    """Says every task it is asked about is RUNNING (a source that must not be needed)."""

    name = "sacct"

    def __init__(self) -> None:
        self.asked = 0

    def query(self, array_ids: Sequence[str]) -> dict[str, SlurmTaskState]:
        self.asked += 1
        return {}


class Calls:
    """Counts os.open (by file kind), os.listdir and os.scandir while installed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        original_open, original_listdir, original_scandir = os.open, os.listdir, os.scandir

        def counted_open(path: object, *args: object, **kwargs: object) -> int:
            name = str(os.fspath(path))  # type: ignore[call-overload]
            kind = "records" if name.endswith(".rec") else "results"
            self.counts[kind if name.endswith((".rec", ".json")) else "opens"] += 1
            return original_open(path, *args, **kwargs)  # type: ignore[arg-type]

        def counted_listdir(*args: object) -> list[str]:
            self.counts["listings"] += 1
            return original_listdir(*args)  # type: ignore[arg-type]

        def counted_scandir(*args: object) -> Iterator[os.DirEntry[str]]:
            self.counts["listings"] += 1
            return original_scandir(*args)  # type: ignore[arg-type]

        monkeypatch.setattr(os, "open", counted_open)
        monkeypatch.setattr(os, "listdir", counted_listdir)
        monkeypatch.setattr(os, "scandir", counted_scandir)

    def take(self) -> collections.Counter[str]:
        taken = collections.Counter({k: v for k, v in self.counts.items() if v})
        self.counts.clear()
        return taken


def _slurm(tmp_path: Path, count: int, running: Sequence[int] = ()) -> tuple[SlurmEngine, Clock]:
    """An engine attached to ``count`` shards of array JOB: all finished but ``running``."""
    folder = tmp_path / "job"
    progress = folder / "progress"
    progress.mkdir(parents=True)
    (folder / "logs").mkdir()
    for index in range(count):
        if index not in running:
            attempt = slurm_attempt_id(JOB, index)
            write_finished(progress_path(progress, index, attempt), index, attempt)
    clock = Clock()
    engine = SlurmEngine(tmp_path, poll_interval=0.5)
    engine._clock = clock
    engine.attach(folder, [[f"{JOB}_{i}"] for i in range(count)], read_only=True)
    engine._source = RunningSource()  # type: ignore[assignment]
    return engine, clock


def _poll(engine: object) -> None:
    """What PipeManager.run() looks at between two sleeps."""
    assert engine.is_running in (True, False)  # type: ignore[attr-defined]
    assert engine.report.pipes_total > 0  # type: ignore[attr-defined]


def test_a_thousand_finished_shards_are_not_opened_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, clock = _slurm(tmp_path, 1000)
    calls = Calls(monkeypatch)
    _poll(engine)
    first = calls.take()
    assert first["records"] >= 1000 and first["results"] >= 1000, first
    clock.now += SETTLE  # the folder's unchanged mtime is trusted once listed after SETTLE
    _poll(engine)
    calls.take()
    for _ in range(5):
        clock.now += 0.5
        _poll(engine)
        later = calls.take()
        assert later == collections.Counter(), later  # not one open, not one listing
    assert not engine.is_running
    report = engine.report
    assert report.status is PipeStatus.COMPLETED and report.pipes_finished == 1000
    assert report.total_processed == 1000
    # The results (what the commit reads) come from the result files read when each settled.
    results = engine.results()
    assert calls.take()["results"] == 0
    assert all(r.outcome is not None and r.outcome.total_processed == 1 for r in results)


def test_the_opens_of_a_poll_do_not_grow_with_the_finished_shards(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = []
    writers = []
    try:
        for count in (10, 400):
            engine, clock = _slurm(tmp_path / str(count), count, running=(count - 2, count - 1))
            for index in (count - 2, count - 1):
                attempt = slurm_attempt_id(JOB, index)
                record = progress_path(tmp_path / str(count) / "job" / "progress", index, attempt)
                writers.append(start_running(record, attempt))
            calls = Calls(monkeypatch)
            _poll(engine)
            clock.now += SETTLE
            _poll(engine)
            calls.take()
            _poll(engine)
            seen.append(calls.take())
            assert engine.is_running and engine.report.pipes_finished == count - 2
            monkeypatch.undo()
    finally:
        for writer in writers:
            writer.close()
    assert seen[0] == seen[1], seen
    assert seen[0]["records"] == 4 and seen[0]["listings"] == 0, seen  # 2 running, 2 looks


def test_a_requeued_task_is_seen_even_when_the_folder_keeps_its_mtime(tmp_path: Path) -> None:
    engine, clock = _slurm(tmp_path, 3, running=(2,))
    progress = tmp_path / "job" / "progress"
    first = slurm_attempt_id(JOB, 2, 0)
    writers = [start_running(progress_path(progress, 2, first), first)]
    try:
        assert engine.pipe_reports[2].attempt_id == first
        clock.now += SETTLE
        engine.pipe_reports  # noqa: B018 - the listing after SETTLE: nothing new, mtime trusted
        # Slurm requeued the task: its next run writes a new record; the folder's mtime is set
        # back, as a coarse clock would leave it (a change within the same tick).
        before = os.stat(progress)
        second = slurm_attempt_id(JOB, 2, 1)
        writers.append(start_running(progress_path(progress, 2, second), second))
        os.utime(progress, ns=(before.st_atime_ns, before.st_mtime_ns))
        clock.now += 0.5
        assert engine.pipe_reports[2].attempt_id == first  # trusted: not listed
        clock.now += RELIST_EVERY
        assert engine.pipe_reports[2].attempt_id == second  # the periodic listing finds it
        third = slurm_attempt_id(JOB, 2, 2)
        writers.append(start_running(progress_path(progress, 2, third), third))
        clock.now += 0.5
        assert engine.pipe_reports[2].attempt_id == third  # a new mtime: listed at once
    finally:
        for writer in writers:
            writer.close()


def test_a_change_within_a_tick_is_seen_once_settle_is_over(tmp_path: Path) -> None:
    engine, clock = _slurm(tmp_path, 2, running=(1,))
    progress = tmp_path / "job" / "progress"
    attempt = slurm_attempt_id(JOB, 1)
    before = os.stat(progress)
    assert engine.pipe_reports[1].status is PipeStatus.PENDING
    # The record appears right after the listing, within the same tick of the folder's mtime.
    writer = start_running(progress_path(progress, 1, attempt), attempt)
    try:
        os.utime(progress, ns=(before.st_atime_ns, before.st_mtime_ns))
        clock.now += SETTLE / 2
        assert engine.pipe_reports[1].status is PipeStatus.PENDING
        clock.now += SETTLE
        assert engine.pipe_reports[1].status is PipeStatus.RUNNING
    finally:
        writer.close()


class _Stub(ScheduledEngine[str]):
    """A scheduler whose tasks are 'done' or 'running'; counts the state questions."""

    def __init__(self, folder: Path) -> None:
        super().__init__(progress_dir=folder)
        self.asked: collections.Counter[int] = collections.Counter()
        self.by_handle: dict[str, int] = {}

    def _connect(self) -> None:
        return None

    def _submit(self, index: int, payload: bytes, record: str, attempt_id: str) -> str:
        raise AssertionError("nothing is submitted")

    def _state(self, handle: str) -> TaskState:
        self.asked[self.by_handle[handle]] += 1
        return TaskEnded(True) if handle.startswith("done") else RUNNING

    def _cancel(self, handle: str) -> None:
        return None


def test_the_tracker_neither_reads_nor_asks_about_settled_pipes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    count = 300
    engine = _Stub(tmp_path)
    tracker = PipeTracker(count, tmp_path)
    engine._tracker = tracker
    engine._handles = []
    for index in range(count):
        handle = f"done-{index}" if index else f"running-{index}"
        engine.by_handle[handle] = index
        engine._handles.append(handle)
        if index:
            write_finished(tracker.record_path(index), index, tracker.attempt_ids[index])
    writer = start_running(tracker.record_path(0), tracker.attempt_ids[0])
    try:
        calls = Calls(monkeypatch)
        _poll(engine)
        assert calls.take()["records"] >= count
        engine.asked.clear()
        _poll(engine)
        later = calls.take()
        assert later["records"] == 2 and later["results"] == 0, later  # pipe 0, twice
        assert set(engine.asked) == {0}, engine.asked
        report = engine.report
        assert report.status is PipeStatus.RUNNING and report.pipes_finished == count - 1
        results = engine.results()
        assert calls.take()["results"] == 0
        assert all(r.outcome is not None for r in results[1:])
    finally:
        writer.close()


def _random_report(rng: random.Random, index: int) -> PipeReport:
    status = rng.choice(list(PipeStatus))
    report = PipeReport(
        pipe_index=index,
        status=status,
        total_processed=rng.randrange(100),
        ram_bytes=rng.randrange(1000),
        start_time=rng.choice([None, rng.uniform(0, 100)]),
        end_time=rng.choice([None, rng.uniform(100, 200)]),
        message=rng.choice(["", "boom", "killed"]),
        is_alive=rng.random() < 0.3,
        exception=rng.choice([None, None, ValueError(f"e{index}")]),
    )
    report.success_count = report.total_processed
    return report


@pytest.mark.parametrize("seed", range(40))
def test_the_live_aggregate_is_the_aggregate_of_every_report(seed: int) -> None:
    rng = random.Random(seed)
    count = rng.randrange(0, 12)
    live = LiveReports(count)
    for _ in range(rng.randrange(1, 30)):
        if not count:
            break
        index = rng.randrange(count)
        report = _random_report(rng, index)
        move = rng.random()
        if move < 0.5 and not live.is_settled(index):
            report.status = rng.choice([s for s in PipeStatus if s.is_final])  # as engines do
            live.settle(index, report)
        elif move < 0.6:
            live.reopen(index)
        elif not live.is_settled(index):
            live.put(index, report)
        expected = PipeReport.aggregate(live.reports())
        got = live.aggregate()
        assert vars(got) == vars(expected)
        everything = live.reports()
        assert live.running == (bool(everything) and not all(r.is_finished for r in everything))
    assert vars(live.aggregate()) == vars(PipeReport.aggregate(live.reports()))


def test_the_benchmark_runs_in_a_tiny_size(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    argv = [
        sys.executable,
        str(ROOT / "benchmarks" / "poll_cost.py"),
        "--counts",
        "8,20",
        "--polls",
        "2",
        "--settle",
        str(SETTLE + 0.05),
        "--packed",
        "--cases",
        "slurm,tracker,watch",
        "--json",
        str(out),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "CPU ms/poll" in done.stdout
    results = json.loads(out.read_text())
    packed = results["packed"]
    assert [r["shards"] for r in packed] == [8, 20]
    for row in packed:  # the whole run: every shard over, each processed its row
        assert row["pipes_finished"] == row["processed"] == row["shards"], row
        assert row["polls"] >= row["shards"] // 2 and row["cpu_ms_median"] >= 0, row
    rows = results["rows"]
    assert {(r["case"], r["shards"]) for r in rows} == {
        (case, n) for case in ("slurm", "tracker", "watch") for n in (8, 20)
    }
    for row in rows:
        assert row["pipes_finished"] == row["finished"], row
        assert row["quiet"]["cpu_ms"] >= 0 and row["first_poll_opens"] > 0, row


class _PackedSacct(SlurmCLI):
    """``sacct`` of a packed array of ``tasks`` tasks: all RUNNING, or all COMPLETED once
    ``over`` (shared with the engine's single-attempt copy, as ``calls`` is); runs nothing."""

    def __init__(self, tasks: int) -> None:
        super().__init__(retries=0)
        self.tasks = tasks
        self.over: dict[str, bool] = {"over": False}

    def run(self, args: Sequence[str], *, check: bool = True) -> str:
        self.calls[args[0]] += 1
        state = "COMPLETED" if self.over["over"] else "RUNNING"
        return "".join(f"{JOB}_{t}|{state}|0:0|n{t}|0:0\n" for t in range(self.tasks))


class _PackedRun:
    """A packed array's tasks as the coordinator sees them: ``tasks`` shards running at a
    time (a claim and a live record each), the next ones claimed in order, ``settle`` ending
    before each poll (a FINISHED record and a result file)."""

    def __init__(self, tmp_path: Path, count: int, tasks: int = 3) -> None:
        folder = tmp_path / "job"
        self.progress = folder / "progress"
        self.progress.mkdir(parents=True)
        (folder / "logs").mkdir()
        self.clock = Clock()
        self.cli = _PackedSacct(tasks)
        self.engine = SlurmEngine(tmp_path, cli=self.cli, state_source="sacct", poll_interval=0.5)
        self.engine._clock = self.clock
        self.engine.attach(folder, [[f"{JOB}_*"]] * count, read_only=True)
        self.tasks = tasks
        self.boards = [
            ClaimBoard(folder, slurm_attempt_id(JOB, task), range(count)).open()
            for task in range(tasks)
        ]
        self.running: dict[int, tuple[ProgressWriter, str]] = {}
        self.next = 0
        self.count = count

    def _start(self, until: int) -> None:
        while len(self.running) < self.tasks and self.next < until:
            index, self.next = self.next, self.next + 1
            board = self.boards[index % self.tasks]
            assert board.claim(index)
            attempt = board.attempt_id
            self.running[index] = (
                start_running(progress_path(self.progress, index, attempt), attempt),
                attempt,
            )

    def step(self, settle: int, until: int | None = None) -> None:
        """``settle`` running shards end, others start (none past ``until``); one poll."""
        for index in sorted(self.running)[:settle]:
            writer, attempt = self.running.pop(index)
            record = progress_path(self.progress, index, attempt)
            write_result(result_path(record), WorkerOutcome(index, attempt, 2, 2, 0))
            writer.update(2, 2, 0)
            writer.finish()
            writer.close()
        self._start(self.count if until is None else until)
        self.clock.now += 0.5
        _poll(self.engine)

    def close(self) -> None:
        for writer, _ in self.running.values():
            writer.close()


def test_a_poll_of_a_packed_run_costs_the_same_at_100_and_10000_shards(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shards a packed array has not reached yet (no record, Slurm says the array runs)
    wait outside the polls: a poll builds and judges the reports of the running and settling
    shards only, however many shards the run has."""
    built: collections.Counter[str] = collections.Counter()
    shard_report, judge = SlurmEngine._shard_report, SlurmEngine._judge
    listdir = os.listdir

    def counted_listdir(*args: object) -> list[str]:
        built["listings"] += 1
        return listdir(*args)  # type: ignore[arg-type]

    def counted_report(self: SlurmEngine, shard: object) -> PipeReport:
        built["reports"] += 1
        return shard_report(self, shard)  # type: ignore[arg-type]

    def counted_judge(self: SlurmEngine, *args: object) -> PipeReport | None:
        built["judged"] += 1
        return judge(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(SlurmEngine, "_shard_report", counted_report)
    monkeypatch.setattr(SlurmEngine, "_judge", counted_judge)
    monkeypatch.setattr(os, "listdir", counted_listdir)
    seen = {}
    for count in (100, 10_000):
        run = _PackedRun(tmp_path / str(count), count)
        try:
            for _ in range(3):  # the first looks: every shard met once, Slurm asked once
                run.step(settle=1)
            built.clear()
            for _ in range(5):
                run.step(settle=2)
            seen[count] = (dict(built), dict(run.cli.calls))
            report = run.engine.report
            assert report.pipes_finished == 1 * 3 + 2 * 5 - 1 and run.engine.is_running
            assert report.total_processed == 2 * report.pipes_finished + len(run.running)
        finally:
            run.close()
    assert seen[100] == seen[10_000], seen
    # Two looks a poll (is_running, report) of 3 running shards and the 2 that end; the
    # progress folder (two files for each shard that ran) is not listed: the claims tell.
    assert seen[100][0]["reports"] <= 2 * 5 * (3 + 2), seen
    assert "listings" not in seen[100][0], seen


def test_waiting_shards_are_judged_soon_after_their_array_stops_running_shards(
    tmp_path: Path,
) -> None:
    """A packed array whose tasks stopped between two shards (its time limit) leaves shards
    unclaimed: Slurm is asked IDLE_ARRAY_AFTER seconds after the array ran its last one, not
    at the next once-a-minute query about pending tasks."""
    run = _PackedRun(tmp_path, 12)
    try:
        for _ in range(4):
            run.step(settle=1, until=5)  # the array gets to 5 shards only, then ends
        run.step(settle=3, until=5)
        live = run.engine._live
        assert live is not None and live.waiting_count == 12 - 5
        assert run.engine.report.status is PipeStatus.RUNNING
        run.cli.over["over"] = True
        asked = run.cli.calls["sacct"]
        for _ in range(int(IDLE_ARRAY_AFTER / 0.5) + 1):
            run.step(settle=0, until=5)
        assert run.cli.calls["sacct"] == asked + 1
        reports = run.engine.pipe_reports
        assert [r.status for r in reports[:5]] == [PipeStatus.COMPLETED] * 5
        assert all(r.status is PipeStatus.FAILED for r in reports[5:]), reports[5:]
        assert all("UNCLAIMED" in r.message for r in reports[5:]), reports[5].message
        assert not run.engine.is_running and live.all_settled
        assert run.engine.report.status is PipeStatus.FAILED
    finally:
        run.close()
