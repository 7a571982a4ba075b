"""Hooks on the engines: a ZooPipe-style pipeline with row and Arrow hooks, sharded, gives the
output of one pipe; each worker sets its hooks up and tears them down once; a raising hook fails
the run and names the hook."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from _hook_support import AddTag, ArrowAddTag, ArrowUpperName, Explode, Journal, Tagged, journal
from _support import write_csv

from zoopipe_hpc import CSVInputAdapter, JSONOutputAdapter, Pipe, PipeManager
from zoopipe_hpc.engines import BaseEngine, MultiProcessEngine, ZooParallelPoolEngine

WORKERS = 3


def _rows(n: int) -> list[dict[str, object]]:
    return [{"id": f"bad{i}" if i % 41 == 0 else i, "name": f"user {i}"} for i in range(n)]


def _pipe(tmp_path: Path, source: Path, name: str, **hooks: object) -> Pipe:
    return Pipe(
        CSVInputAdapter(source),
        JSONOutputAdapter(tmp_path / f"{name}.jsonl"),
        Tagged,
        error_output_adapter=JSONOutputAdapter(tmp_path / f"{name}_err.jsonl"),
        **hooks,  # type: ignore[arg-type]
    )


def _hooks(log: Path) -> dict[str, object]:
    return {
        "pre_validation_hooks": [AddTag(reject=("7",)), Journal(log, "pre", priority=0)],
        "post_validation_hooks": [ArrowUpperName()],
    }


def _sharded_equals_one_pipe(tmp_path: Path, engine: BaseEngine, timeout: float) -> None:
    source = write_csv(tmp_path / "in.csv", _rows(3000))
    _pipe(tmp_path, source, "one", **_hooks(tmp_path / "one.log")).run()
    log = tmp_path / "sharded.log"
    manager = PipeManager.parallelize_pipe(
        _pipe(tmp_path, source, "sharded", **_hooks(log)), workers=WORKERS, engine=engine
    )
    assert manager.run(timeout=timeout), manager.error
    assert (tmp_path / "sharded.jsonl").read_bytes() == (tmp_path / "one.jsonl").read_bytes()
    assert (tmp_path / "sharded_err.jsonl").read_bytes() == (
        tmp_path / "one_err.jsonl"
    ).read_bytes()
    report = manager.report
    assert report.success_count + report.error_count == report.total_processed == 3000
    assert report.error_count == len(range(0, 3000, 41)) + 1
    events = journal(log)
    # Each shard's worker sets the hooks up once and tears them down once, with its own store.
    per_store = Counter(
        (e["pid"], e["store"], e["event"]) for e in events if e["event"] != "execute"
    )
    assert Counter(event for _, _, event in per_store.elements()) == {
        "setup": WORKERS,
        "teardown": WORKERS,
    }
    assert all(count == 1 for count in per_store.values())


def _raising_hook_fails_the_run(tmp_path: Path, engine: BaseEngine, timeout: float) -> None:
    source = write_csv(tmp_path / "in.csv", _rows(300))
    log = tmp_path / "fail.log"
    pipe = _pipe(
        tmp_path,
        source,
        "fail",
        pre_validation_hooks=[Journal(log, "pre")],
        post_validation_hooks=[Explode()],
    )
    manager = PipeManager.parallelize_pipe(pipe, workers=2, engine=engine)
    assert not manager.run(timeout=timeout)
    assert "Explode" in str(manager.error)
    assert not (tmp_path / "fail.jsonl").exists()
    events = Counter(e["event"] for e in journal(log))
    assert events["setup"] == events["teardown"] >= 1


ENGINES: dict[str, Callable[[Path], BaseEngine]] = {
    "multiprocess": lambda tmp_path: MultiProcessEngine(),
    "pool": lambda tmp_path: ZooParallelPoolEngine(),
}


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_hooks_sharded_equal_one_pipe(tmp_path: Path, name: str) -> None:
    _sharded_equals_one_pipe(tmp_path, ENGINES[name](tmp_path), timeout=120.0)


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_a_raising_hook_fails_the_run(tmp_path: Path, name: str) -> None:
    _raising_hook_fails_the_run(tmp_path, ENGINES[name](tmp_path), timeout=120.0)


def test_arrow_hooks_sharded_equal_one_pipe(tmp_path: Path) -> None:
    source = write_csv(tmp_path / "in.csv", _rows(2000))
    hooks = {"pre_validation_hooks": [ArrowAddTag()], "post_validation_hooks": [ArrowUpperName()]}
    _pipe(tmp_path, source, "one", **hooks).run()
    manager = PipeManager.parallelize_pipe(
        _pipe(tmp_path, source, "sharded", **hooks), workers=WORKERS, engine=MultiProcessEngine()
    )
    assert manager.run(timeout=120.0), manager.error
    assert (tmp_path / "sharded.jsonl").read_bytes() == (tmp_path / "one.jsonl").read_bytes()
    assert (tmp_path / "sharded_err.jsonl").read_bytes() == (
        tmp_path / "one_err.jsonl"
    ).read_bytes()


@pytest.mark.slurm
@pytest.mark.usefixtures("slurm_cluster")
def test_hooks_on_slurm(tmp_path: Path) -> None:
    from test_slurm_engine import slurm_engine

    _sharded_equals_one_pipe(tmp_path, slurm_engine(tmp_path), timeout=300.0)


@pytest.mark.slurm
@pytest.mark.usefixtures("slurm_cluster")
def test_a_raising_hook_fails_a_slurm_run(tmp_path: Path) -> None:
    from test_slurm_engine import slurm_engine

    _raising_hook_fails_the_run(tmp_path, slurm_engine(tmp_path), timeout=300.0)


def test_hooks_on_dask(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    from zoopipe_hpc.engines.dask import DaskEngine

    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        scheduler_kwargs={"dashboard_address": ":0"},
    )
    try:
        with distributed.Client(cluster, set_as_default=False) as client:
            engine = DaskEngine(client)
            try:
                _sharded_equals_one_pipe(tmp_path, engine, timeout=120.0)
            finally:
                engine.shutdown()
    finally:
        cluster.close()


def test_hooks_on_ray(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    from zoopipe_hpc.engines.ray import RayEngine

    if ray.is_initialized():
        pytest.skip("this test starts and stops its own Ray instance")
    engine = RayEngine(init_kwargs={"num_cpus": WORKERS, "include_dashboard": False})
    try:
        _sharded_equals_one_pipe(tmp_path, engine, timeout=180.0)
    finally:
        engine.shutdown()
    assert not ray.is_initialized()
