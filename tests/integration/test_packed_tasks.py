"""Packed Slurm arrays without a cluster: the engine's own submission writes the job folder and
the job script, and the test runs the script's task command as real processes (two tasks at
once, two workers each), with ``SLURM_ARRAY_TASK_ID`` set by hand (see ``_local_array``)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from _local_array import SCONTROL_CONFIG, LocalArray
from _support import Trigger, User, read_jsonl, users, write_csv

from zoopipe_hpc import CSVInputAdapter, JSONOutputAdapter, Pipe, PipeManager, PipeStatus
from zoopipe_hpc.engines import BaseEngine
from zoopipe_hpc.engines._attempts import parse_record_name
from zoopipe_hpc.engines.slurm import SlurmEngine
from zoopipe_hpc.engines.slurm._claims import claim_owner
from zoopipe_hpc.progress import ProgressReader, ProgressSnapshot
from zoopipe_hpc.report import PipeReport
from zoopipe_hpc.testing import EngineConformance

TESTS = str(Path(__file__).parents[1])


@pytest.fixture(autouse=True)
def tasks_import_the_test_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """The task processes unpickle models of ``tests/`` by reference, as Slurm tasks do."""
    path = os.environ.get("PYTHONPATH", "")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (path, TESTS) if p))


def pipe_of(source: Path, out: Path, model: type = User) -> Pipe:
    return Pipe(
        CSVInputAdapter(source),
        JSONOutputAdapter(out / "out.jsonl"),
        model,
        error_output_adapter=JSONOutputAdapter(out / "errors.jsonl"),
    )


def expected(source: Path, tmp_path: Path, model: type = User) -> tuple[bytes, bytes]:
    local = tmp_path / "local"
    local.mkdir()
    pipe_of(source, local, model).run()
    return (local / "out.jsonl").read_bytes(), (local / "errors.jsonl").read_bytes()


def packed_engine(tmp_path: Path, cli: LocalArray, **kwargs: object) -> SlurmEngine:
    options: dict[str, object] = {"poll_interval": 0.1, "stale_after": 3.0, "time": "00:05:00"}
    options.update(kwargs)
    return SlurmEngine(folder=tmp_path / "jobs", cli=cli, **options)  # type: ignore[arg-type]


def run_tasks(cli: LocalArray, job: str, tasks: int, timeout: float = 120.0) -> list[int]:
    """Start ``tasks`` tasks of ``job`` at once and wait for all of them: their exit codes."""
    started = [cli.start_task(job, task) for task in range(tasks)]
    return [process.wait(timeout) for process in started]


def next_submission(manager: PipeManager, cli: LocalArray, timeout: float = 30.0) -> str:
    """The array the engine submits next (a retry), once its polls of the records made it."""
    known = set(cli.scripts)
    deadline = time.monotonic() + timeout
    while set(cli.scripts) == known and time.monotonic() < deadline:
        manager.pipe_reports  # noqa: B018 - a look is what makes the engine retry
        time.sleep(0.1)
    return max(cli.scripts)


def records(job_folder: Path) -> list[tuple[int, str]]:
    names = (parse_record_name(p.name) for p in (job_folder / "progress").iterdir())
    return sorted(n for n in names if n is not None)


def counting_polls(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every progress record the engine reads from now on, one entry per read."""
    polled: list[Path] = []
    poll = ProgressReader.poll

    def counted(reader: ProgressReader) -> ProgressSnapshot | None:
        polled.append(reader.path)
        return poll(reader)

    monkeypatch.setattr(ProgressReader, "poll", counted)
    return polled


def test_two_packed_tasks_share_the_shards_and_the_commit_is_exact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="zoopipe_hpc.engines.slurm.engine")
    source = write_csv(tmp_path / "in.csv", users(3000, bad_every=41))
    good, bad = expected(source, tmp_path)
    cli = LocalArray()
    engine = packed_engine(tmp_path, cli, max_tasks=2, workers_per_task=2)
    out = tmp_path / "packed"
    out.mkdir()
    manager = PipeManager.parallelize_pipe(pipe_of(source, out), workers=9, engine=engine)
    manager.start()
    [job] = cli.scripts
    script = cli.scripts[job].read_text()
    assert "#SBATCH --array=0-1%2" in script
    assert "--shards 0-8 --packed 2" in script
    assert engine.job_folder is not None
    polled = counting_polls(monkeypatch)
    assert all(r.status is PipeStatus.PENDING for r in manager.pipe_reports)
    assert polled == []  # pending shards have no record to open
    assert run_tasks(cli, job, 2) == [0, 0]
    assert manager.wait(60), manager.error
    assert manager.succeeded, manager.error
    assert (out / "out.jsonl").read_bytes() == good
    assert (out / "errors.jsonl").read_bytes() == bad
    # Every shard ran once, by one of the two tasks, which its claim and its record name.
    runs = records(engine.job_folder)
    assert [index for index, _ in runs] == list(range(9))
    for index, attempt in runs:
        assert claim_owner(engine.job_folder, job, index) == attempt
    assert {attempt for _, attempt in runs} <= {f"{job}-0-r0", f"{job}-1-r0"}
    assert {r.host for r in manager.pipe_reports} <= {"local0", "local1"}
    assert {r.extra["slurm_job_id"] for r in manager.pipe_reports} <= {f"{job}_0", f"{job}_1"}
    assert engine.slurm_calls()["sbatch"] == 1
    # The run's closing line counts every call, once.
    closing = [m for m in caplog.messages if "Slurm calls of this run" in m]
    assert len(closing) == 1 and "sbatch 1" in closing[0], closing
    # Settled shards are never read again, however often the engine is asked.
    assert len(set(polled)) == 9  # each shard's record was read while it ran
    polled.clear()
    for _ in range(3):
        assert all(r.status is PipeStatus.COMPLETED for r in manager.pipe_reports)
    assert polled == []


def test_a_worker_killed_inside_a_packed_task_is_retried_on_its_own(tmp_path: Path) -> None:
    rows = [{"id": i, "name": f"n{i}"} for i in range(60)]
    rows[33]["name"] = "sigkill"
    source = write_csv(tmp_path / "in.csv", rows)
    cli = LocalArray()
    engine = packed_engine(tmp_path, cli, max_tasks=2, workers_per_task=2, max_retries=1)
    out = tmp_path / "packed"
    out.mkdir()
    manager = PipeManager.parallelize_pipe(pipe_of(source, out, Trigger), workers=6, engine=engine)
    manager.start()
    [first] = cli.scripts
    # The packed tasks go on past the shard whose worker was killed; the one that ran it
    # exits 1, as a one-shard task would (a detached job's recover job needs that).
    assert sorted(run_tasks(cli, first, 2)) == [0, 1]
    retry = next_submission(manager, cli)
    assert retry != first, "the killed shard was not resubmitted"
    retried = cli.scripts[retry].read_text()
    assert "#SBATCH --array=0-0%1" in retried and "--shards 3 --packed 2" in retried
    # The second run of shard 3 meets the same row: it fails again, and the run with it.
    assert run_tasks(cli, retry, 1) == [1]
    assert not manager.wait(60) or not manager.succeeded
    report = manager.get_pipe_report(3)
    assert "killed by SIGKILL" in report.extra["earlier_failures"]
    assert report.extra["attempts"] == "2"
    others = [r for r in manager.pipe_reports if r.pipe_index != 3]
    assert all(r.extra["attempts"] == "1" and r.is_finished for r in others)
    assert not (out / "out.jsonl").exists()  # nothing committed: the run failed


def test_a_packed_task_killed_mid_run_keeps_its_finished_shards(tmp_path: Path) -> None:
    rows = [{"id": i, "name": "sleep0.2" if 10 <= i < 40 else f"n{i}"} for i in range(40)]
    source = write_csv(tmp_path / "in.csv", rows)
    good, bad = expected(source, tmp_path, Trigger)
    cli = LocalArray()
    engine = packed_engine(tmp_path, cli, max_tasks=1, workers_per_task=1, max_retries=1)
    out = tmp_path / "packed"
    out.mkdir()
    manager = PipeManager.parallelize_pipe(pipe_of(source, out, Trigger), workers=4, engine=engine)
    manager.start()
    [first] = cli.scripts
    task = cli.start_task(first, 0)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # shard 0 done (no sleeping rows), shard 1 under way
        reports = manager.pipe_reports
        if reports[0].is_finished and reports[1].total_processed:
            break
        time.sleep(0.05)
    os.kill(task.pid, signal.SIGKILL)
    assert task.wait(10) == -signal.SIGKILL
    retry = next_submission(manager, cli)
    assert retry != first, "nothing was resubmitted after the task was killed"
    # Shard 0 is kept; shard 1 (killed under way) and the shards never claimed run again.
    assert "--shards 1-3 --packed 1" in cli.scripts[retry].read_text()
    assert run_tasks(cli, retry, 1) == [0]
    assert manager.wait(60) and manager.succeeded, manager.error
    assert (out / "out.jsonl").read_bytes() == good
    assert (out / "errors.jsonl").read_bytes() == bad
    assert manager.get_pipe_report(0).extra["attempts"] == "1"
    assert [manager.get_pipe_report(i).extra["attempts"] for i in (1, 2, 3)] == ["2"] * 3


def test_the_task_command_is_the_engines_own(tmp_path: Path) -> None:
    cli = LocalArray()
    engine = packed_engine(tmp_path, cli, max_tasks=3, workers_per_task=2)
    script = engine.job_script(240)
    assert "#SBATCH --array=0-2%3" in script
    assert f"{sys.executable} -P -u -m zoopipe_hpc.engines.slurm" in script
    assert "--shards 0-239 --packed 2" in script


class TestPackedTasksLocally(EngineConformance):
    """The conformance suite on packed tasks (3 tasks, 2 workers each) that start as soon as
    they are submitted, as on an idle cluster (the real cluster's: test_slurm_engine.py)."""

    timeout = 120.0

    def make_engine(self, tmp_path: Path) -> BaseEngine:
        cli = LocalArray(autostart=True)
        return packed_engine(tmp_path, cli, max_tasks=3, workers_per_task=2)


def test_a_requeued_packed_task_runs_again_only_the_shards_it_had_not_ended(
    tmp_path: Path,
) -> None:
    rows = [{"id": i, "name": "sleep0.2" if 10 <= i < 40 else f"n{i}"} for i in range(40)]
    source = write_csv(tmp_path / "in.csv", rows)
    good, bad = expected(source, tmp_path, Trigger)
    cli = LocalArray()
    engine = packed_engine(tmp_path, cli, max_tasks=1, workers_per_task=1)  # no retries
    out = tmp_path / "packed"
    out.mkdir()
    manager = PipeManager.parallelize_pipe(pipe_of(source, out, Trigger), workers=4, engine=engine)
    manager.start()
    [job] = cli.scripts
    task = cli.start_task(job, 0)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        reports = manager.pipe_reports
        if reports[0].is_finished and reports[1].total_processed:
            break
        time.sleep(0.05)
    os.kill(task.pid, signal.SIGKILL)
    assert task.wait(10) == -signal.SIGKILL
    # Slurm requeues the task (its node failed, say): the same task, restart count 1.
    assert cli.start_task(job, 0, restart=1).wait(120) == 0
    assert manager.wait(60) and manager.succeeded, manager.error
    assert (out / "out.jsonl").read_bytes() == good
    assert (out / "errors.jsonl").read_bytes() == bad
    attempts = [r.attempt_id for r in manager.pipe_reports]
    assert attempts == [f"{job}-0-r0"] + [f"{job}-0-r1"] * 3
    assert engine.slurm_calls()["sbatch"] == 1
    assert records(engine.job_folder or tmp_path)[:2] == [(0, f"{job}-0-r0"), (1, f"{job}-0-r0")]


def one_packed_task(
    tmp_path: Path, rows: list[dict[str, object]], shards: int, workers_per_task: int
) -> tuple[LocalArray, SlurmEngine, PipeManager, Path, subprocess.Popen[bytes]]:
    """``rows`` (Trigger names) in ``shards`` shards packed onto one task of
    ``workers_per_task`` workers, started: (cli, engine, manager, output folder, the task)."""
    source = write_csv(tmp_path / "in.csv", rows)
    cli = LocalArray()
    engine = packed_engine(tmp_path, cli, max_tasks=1, workers_per_task=workers_per_task)
    out = tmp_path / "packed"
    out.mkdir()
    pipe = pipe_of(source, out, Trigger)
    manager = PipeManager.parallelize_pipe(pipe, workers=shards, engine=engine)
    manager.start()
    [job] = cli.scripts
    return cli, engine, manager, out, cli.start_task(job, 0)


def wait_for_reports(
    manager: PipeManager, ready: Callable[[list[PipeReport]], bool], limit: float = 60
) -> None:
    """Poll the manager until ``ready(its reports)`` (or ``limit`` seconds passed)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and not ready(manager.pipe_reports):
        time.sleep(0.05)


def test_scancel_of_a_packed_task_stops_its_workers_and_records_why(tmp_path: Path) -> None:
    rows = [{"id": i, "name": "sleep0.1"} for i in range(200)]
    cli, engine, manager, out, task = one_packed_task(tmp_path, rows, 6, 2)
    wait_for_reports(manager, lambda rs: sum(1 for r in rs if r.total_processed) == 2)
    manager.shutdown(timeout=30)  # scancel: SIGTERM to the task
    assert task.wait(30) == 1
    reports = manager.pipe_reports
    assert all(r.status is PipeStatus.CANCELLED for r in reports), reports
    stopped = [r for r in reports if r.total_processed]
    assert len(stopped) == 2
    for report in stopped:
        assert "stopped by SIGTERM from Slurm" in report.message, report.message
    # The shards it had not claimed stay unclaimed: nothing ran them.
    assert engine.job_folder is not None
    assert [index for index, _ in records(engine.job_folder)] == [r.pipe_index for r in stopped]
    assert not (out / "out.jsonl").exists()


def test_past_the_sites_max_array_size_the_engine_packs_by_itself(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = write_csv(tmp_path / "in.csv", users(900, bad_every=29))
    good, bad = expected(source, tmp_path)
    small_site = SCONTROL_CONFIG.replace("MaxArraySize            = 1001", "MaxArraySize = 3")
    cli = LocalArray(config=small_site, autostart=True)
    engine = packed_engine(tmp_path, cli)  # no max_tasks: one task per shard if it fitted
    out = tmp_path / "packed"
    out.mkdir()
    manager = PipeManager.parallelize_pipe(pipe_of(source, out), workers=7, engine=engine)
    with caplog.at_level("INFO", logger="zoopipe_hpc.engines.slurm.engine"):
        assert manager.run(timeout=120), manager.error
    assert "7 shards are more than the site allows as one task each (MaxArraySize=3" in caplog.text
    [job] = cli.scripts
    assert cli.tasks(job) == 3 and "--shards 0-6 --packed 1" in cli.scripts[job].read_text()
    assert (out / "out.jsonl").read_bytes() == good
    assert (out / "errors.jsonl").read_bytes() == bad
    assert cli.calls["scontrol"] == 1 and cli.calls["sbatch"] == 1


def test_usr2_stops_the_claiming_and_the_rest_continues_on_a_new_array(tmp_path: Path) -> None:
    """Slurm's warning before the time limit (USR2) ends a packed task: the shards it ran keep
    their results, the one it was running records why, and that one and every unclaimed shard
    go onto a new packed array (a continuation, with max_retries=0), whose run commits."""
    rows = [{"id": i, "name": "sleep0.05"} for i in range(60)]
    cli, engine, manager, out, task = one_packed_task(tmp_path, rows, 12, 1)
    [job] = cli.scripts
    wait_for_reports(manager, lambda rs: sum(r.status is PipeStatus.COMPLETED for r in rs) >= 2)
    task.send_signal(signal.SIGUSR2)
    assert task.wait(30) == 1
    follow_up = next_submission(manager, cli)
    assert follow_up != job
    assert run_tasks(cli, follow_up, 1) == [0]
    assert manager.run(timeout=60), manager.error
    reports = manager.pipe_reports
    continued = [r for r in reports if r.extra.get("continuations") == "1"]
    assert continued and len(continued) < 12, reports
    assert all(r.status is PipeStatus.COMPLETED for r in reports)
    assert [r["id"] for r in read_jsonl(out / "out.jsonl")] == list(range(60))
