"""DaskEngine: the conformance suite on a local Dask cluster and on dask-jobqueue's SLURMCluster."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import distributed
import psutil
import pytest
from _support import Trigger, User, read_jsonl, users, write_csv

from zoopipe_hpc import CSVInputAdapter, JSONOutputAdapter, Pipe, PipeManager, PipeStatus
from zoopipe_hpc.engines.dask import DaskEngine
from zoopipe_hpc.testing import EngineConformance

SLURM_NODES = {"n1", "n2", "n3"}


@pytest.fixture(scope="module")
def local_cluster() -> Iterator[distributed.LocalCluster]:
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        scheduler_kwargs={"dashboard_address": ":0"},
    )
    yield cluster
    cluster.close()


@pytest.fixture(scope="module")
def local_client(local_cluster: distributed.LocalCluster) -> Iterator[distributed.Client]:
    with distributed.Client(local_cluster, set_as_default=False) as client:
        yield client


def _two_pipes(tmp_path: Path, rows: int = 40) -> list[Pipe]:
    pipes = []
    for k in range(2):
        source = write_csv(tmp_path / f"in{k}.csv", users(rows + k))
        pipes.append(
            Pipe(CSVInputAdapter(source), JSONOutputAdapter(tmp_path / f"o{k}.jsonl"), User)
        )
    return pipes


def _descendants() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


def _still_alive(pids: set[int], timeout: float = 15.0) -> list[psutil.Process]:
    processes = []
    for pid in pids:
        try:
            processes.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            continue
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    return list(alive)


class TestDaskEngine(EngineConformance):
    """Every promise of an engine, through a Client of a LocalCluster shared by the module."""

    timeout = 60.0

    @pytest.fixture
    def engine(self, local_client: distributed.Client) -> Iterator[DaskEngine]:
        engine = DaskEngine(local_client)
        yield engine
        engine.shutdown()


def test_own_local_cluster_is_started_and_closed(tmp_path: Path):
    before = _descendants()
    engine = DaskEngine(n_workers=2)
    manager = PipeManager(_two_pipes(tmp_path), engine=engine)
    assert manager.run(timeout=60), manager.error
    started = _descendants() - before
    assert started, "no Dask worker processes were started"
    assert engine.client is not None
    assert len(engine.client.scheduler_info()["workers"]) == 2
    engine.shutdown()
    assert engine.client is None
    assert not _still_alive(started), "the engine's LocalCluster left processes behind"
    assert [r.status for r in manager.pipe_reports] == [PipeStatus.COMPLETED] * 2
    assert len(read_jsonl(tmp_path / "o1.jsonl")) == 41


def test_scheduler_address_joins_and_leaves_the_cluster_running(
    local_cluster: distributed.LocalCluster, tmp_path: Path
):
    engine = DaskEngine(local_cluster.scheduler_address)
    manager = PipeManager(_two_pipes(tmp_path), engine=engine)
    assert manager.run(timeout=60), manager.error
    engine.shutdown()
    assert engine.client is None
    with distributed.Client(local_cluster, set_as_default=False) as client:
        assert len(client.scheduler_info()["workers"]) == 2


def test_a_given_client_is_used_and_not_closed(
    local_cluster: distributed.LocalCluster, tmp_path: Path
):
    with distributed.Client(local_cluster, set_as_default=False) as client:
        engine = DaskEngine(client)
        manager = PipeManager(_two_pipes(tmp_path), engine=engine)
        assert manager.run(timeout=60), manager.error
        assert {r.host for r in manager.pipe_reports} == {os.uname().nodename}
        engine.shutdown()
        assert client.status == "running"
        assert client.submit(sum, [1, 2], pure=False).result() == 3


def test_a_stop_before_the_task_starts_never_runs_the_pipe(
    local_cluster: distributed.LocalCluster, tmp_path: Path
):
    """Shutdown while pipes wait for a worker: they end CANCELLED, never started."""
    source = write_csv(tmp_path / "in.csv", [{"id": i, "name": "sleep0.05"} for i in range(100)])
    pipes = [
        Pipe(CSVInputAdapter(source), JSONOutputAdapter(tmp_path / f"o{k}.jsonl"), Trigger)
        for k in range(4)
    ]
    engine = DaskEngine(local_cluster)
    manager = PipeManager(pipes, engine=engine)
    manager.start()
    time.sleep(0.5)
    manager.shutdown(timeout=10)
    reports = manager.pipe_reports
    assert all(r.status is PipeStatus.CANCELLED for r in reports), reports
    assert not any((tmp_path / f"o{k}.jsonl").exists() for k in range(4))


def test_a_lost_worker_fails_its_pipe_which_is_never_run_twice(tmp_path: Path):
    """Killing the worker kills its pipe; Dask's rescheduled task refuses to run it again."""
    from zoopipe_hpc.engines.dask import PipeAlreadyRan

    source = write_csv(tmp_path / "in.csv", [{"id": i, "name": "sleep0.05"} for i in range(200)])
    with distributed.LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        dashboard_address=None,
        scheduler_kwargs={"dashboard_address": ":0"},
    ) as cluster:
        engine = DaskEngine(cluster)
        pipe = Pipe(CSVInputAdapter(source), JSONOutputAdapter(tmp_path / "out.jsonl"), Trigger)
        manager = PipeManager([pipe], engine=engine)
        manager.start()
        deadline = time.monotonic() + 60
        while manager.report.total_processed == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert engine.client is not None
        (worker_pid,) = engine.client.run(os.getpid).values()
        task = engine._handles[0]
        assert task is not None
        future = task.future
        os.kill(worker_pid, signal.SIGKILL)
        assert manager.run(timeout=60) is False
        (report,) = manager.pipe_reports
        # Not cancelled by the engine: a failure, with the task's fate as the reason.
        assert report.status is PipeStatus.FAILED, report
        assert report.message.startswith("Dask task failed"), report.message
        assert report.total_processed < 200
        # The nanny restarts the worker and Dask reschedules the task: it refuses to rerun.
        assert isinstance(future.exception(timeout=30), PipeAlreadyRan)
        engine.shutdown()
    assert not (tmp_path / "out.jsonl").exists()


# -- on the local Slurm cluster, through dask-jobqueue -------------------------------------------


def _slurm_options(log_directory: Path) -> dict[str, object]:
    return {
        "queue": "debug",
        "cores": 1,
        "processes": 1,
        "memory": "600MB",
        "walltime": "00:10:00",
        "python": sys.executable,
        "scheduler_options": {"host": "127.0.0.1", "dashboard": False, "dashboard_address": ":0"},
        "log_directory": str(log_directory),
    }


def _job_ids(client: distributed.Client) -> set[str]:
    return set(client.run(lambda: os.environ["SLURM_JOB_ID"]).values())


def _wait_until_gone(job_ids: set[str], timeout: float = 20.0) -> set[str]:
    """The job ids of ``job_ids`` that squeue still lists after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        listed = subprocess.run(
            ["squeue", "-h", "-o", "%i", "-j", ",".join(sorted(job_ids))],
            capture_output=True,
            text=True,
        ).stdout.split()
        left = job_ids & set(listed)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.5)


@pytest.fixture(scope="module")
def slurm_dask(
    slurm_cluster: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[object, set[str]]]:
    """A dask-jobqueue SLURMCluster of two 1-core jobs, and those jobs' ids."""
    import dask_jobqueue as jobqueue

    cluster = jobqueue.SLURMCluster(**_slurm_options(tmp_path_factory.mktemp("dask-logs")))
    try:
        cluster.scale(jobs=2)
        with distributed.Client(cluster, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=90)
            job_ids = _job_ids(client)
        yield cluster, job_ids
    finally:
        cluster.close()
    left = _wait_until_gone(job_ids)
    if left:
        pytest.fail(f"SLURMCluster.close() left Slurm jobs {sorted(left)} behind")


@pytest.mark.slurm
class TestDaskOnSlurm(EngineConformance):
    """The same promises on Dask workers that are Slurm jobs (the engine given the cluster)."""

    timeout = 90.0

    @pytest.fixture
    def engine(self, slurm_dask: tuple[object, set[str]]) -> Iterator[DaskEngine]:
        cluster, _ = slurm_dask
        engine = DaskEngine(cluster)
        yield engine
        engine.shutdown()

    def test_shards_run_in_the_slurm_jobs_and_equal_one_local_pipe(
        self, engine: DaskEngine, slurm_dask: tuple[object, set[str]], tmp_path: Path
    ):
        source = write_csv(tmp_path / "in.csv", users(2000, bad_every=37))
        Pipe(
            CSVInputAdapter(source),
            JSONOutputAdapter(tmp_path / "local.jsonl"),
            User,
            error_output_adapter=JSONOutputAdapter(tmp_path / "local_err.jsonl"),
        ).run()
        pipe = Pipe(
            CSVInputAdapter(source),
            JSONOutputAdapter(tmp_path / "dask.jsonl"),
            User,
            error_output_adapter=JSONOutputAdapter(tmp_path / "dask_err.jsonl"),
        )
        manager = PipeManager.parallelize_pipe(pipe, workers=4, engine=engine)
        assert manager.run(timeout=self.timeout), manager.error
        assert (tmp_path / "dask.jsonl").read_bytes() == (tmp_path / "local.jsonl").read_bytes()
        assert (tmp_path / "dask_err.jsonl").read_bytes() == (
            tmp_path / "local_err.jsonl"
        ).read_bytes()
        # Each pipe ran in a Slurm job: its record names the Slurm node.
        hosts = {r.host for r in manager.pipe_reports}
        assert hosts <= SLURM_NODES, hosts
        # The workers that ran them are the cluster's Slurm jobs, running right now.
        _, job_ids = slurm_dask
        assert engine.client is not None and _job_ids(engine.client) == job_ids
        running = subprocess.run(
            ["squeue", "-h", "-t", "RUNNING", "-o", "%i %j %N", "-j", ",".join(sorted(job_ids))],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
        rows = [line.split() for line in running if line.strip()]
        assert {row[0] for row in rows} == job_ids
        assert {row[1] for row in rows} == {"dask-worker"}
        assert hosts <= {row[2] for row in rows}


@pytest.mark.slurm
def test_on_slurm_starts_its_own_jobs_and_cancels_them(slurm_cluster: None, tmp_path: Path):
    options = _slurm_options(tmp_path / "logs")
    engine = DaskEngine.on_slurm(jobs=2, **options)
    manager = PipeManager(_two_pipes(tmp_path), engine=engine)
    try:
        assert manager.run(timeout=90), manager.error
        assert {r.host for r in manager.pipe_reports} <= SLURM_NODES
        cluster = engine.cluster
        assert cluster is not None
        job_ids = {job.job_id for job in cluster.workers.values()}
        assert len(job_ids) == 2
    finally:
        engine.shutdown()
    assert not _wait_until_gone(job_ids)
