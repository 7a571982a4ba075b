"""The parts of ZooPipe's public API a ZooPipe user touches besides hooks and adapters (issue 13):
the top-level names, every engine from ``zoopipe_hpc.engines`` (loaded lazily), the
executors' accessors, ``Pipe`` as a context manager with ZooPipe's parameters and ``run()``,
and ``PipeReport``'s field types."""

from __future__ import annotations

import json
import logging
import os
import pickle
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from _support import Trigger, User, read_jsonl, users, write_csv

from zoopipe_hpc import (
    BaseEngine,
    CSVInputAdapter,
    JSONOutputAdapter,
    MultiProcessEngine,
    MultiThreadExecutor,
    Pipe,
    PipeManager,
    PipeReport,
    PipeStatus,
    SingleThreadExecutor,
    get_logger,
)
from zoopipe_hpc.errors import (
    ArgumentTypeError,
    ConfigurationError,
    InputError,
    PipeTimeoutError,
    StateError,
)

ROOT = Path(__file__).resolve().parents[2]


def _run_python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(done.stderr)
    return done.stdout


def _pipe(tmp_path: Path, n: int = 20, **kwargs: Any) -> Pipe:
    source = write_csv(tmp_path / "in.csv", users(n, bad_every=5))
    return Pipe(
        CSVInputAdapter(source),
        JSONOutputAdapter(tmp_path / "out.jsonl"),
        User,
        error_output_adapter=JSONOutputAdapter(tmp_path / "err.jsonl"),
        **kwargs,
    )


# -- names ---------------------------------------------------------------------------------


def test_top_level_names_are_zoopipes():
    from zoopipe_hpc import engines

    assert BaseEngine is engines.BaseEngine
    assert MultiProcessEngine is engines.MultiProcessEngine
    assert PipeStatus.PENDING.value == "pending"


def test_get_logger_prints_to_stdout_once_configured():
    logger = get_logger("zoopipe_hpc.test_api")
    assert logger.name == "zoopipe_hpc.test_api"
    assert logger.level == 20 and len(logger.handlers) == 1
    assert get_logger("zoopipe_hpc.test_api") is logger and len(logger.handlers) == 1
    assert get_logger().name == "zoopipe_hpc"


def test_get_logger_line_format():
    out = _run_python("from zoopipe_hpc import get_logger\nget_logger('demo').info('hello')\n")
    assert out.rstrip().endswith(" - demo - INFO - hello")


def test_every_engine_importable_from_engines():
    out = _run_python(
        "from zoopipe_hpc.engines import (SlurmEngine, RayEngine, DaskEngine,\n"
        "    ZooParallelPoolEngine, MultiProcessEngine, BaseEngine)\n"
        "print(all(issubclass(e, BaseEngine) for e in (SlurmEngine, RayEngine, DaskEngine,\n"
        "    ZooParallelPoolEngine, MultiProcessEngine)))\n"
    )
    assert out.strip() == "True"


def test_slurm_engine_import_loads_neither_ray_nor_dask():
    out = _run_python(
        "import json, sys\n"
        "import zoopipe_hpc.engines\n"
        "from zoopipe_hpc.engines import SlurmEngine\n"
        "import zoopipe_hpc\n"
        "roots = {m.split('.')[0] for m in sys.modules}\n"
        "print(json.dumps(sorted(roots & {'ray', 'dask', 'distributed'})))\n"
    )
    assert json.loads(out) == []


def test_unknown_engine_name_is_an_attribute_error():
    import zoopipe_hpc.engines as engines

    with pytest.raises(AttributeError, match="NoSuchEngine"):
        engines.NoSuchEngine  # noqa: B018
    assert "SlurmEngine" in dir(engines)


# -- executors -----------------------------------------------------------------------------


def test_executors_report_batch_size_and_concurrency():
    assert SingleThreadExecutor(batch_size=123).get_batch_size() == 123
    assert SingleThreadExecutor().get_concurrency() == 1
    multi = MultiThreadExecutor(max_workers=3, batch_size=50)
    assert multi.get_batch_size() == 50
    assert multi.get_concurrency() == 3
    assert MultiThreadExecutor(max_workers=None).get_concurrency() == len(os.sched_getaffinity(0))


# -- PipeReport ----------------------------------------------------------------------------


def _sleepy_pipe(tmp_path: Path, rows: int = 200, **kwargs: Any) -> Pipe:
    source = write_csv(tmp_path / "slow.csv", [{"id": i, "name": "sleep0.02"} for i in range(rows)])
    return Pipe(
        CSVInputAdapter(source, block_size=64),
        JSONOutputAdapter(tmp_path / "slow.jsonl"),
        Trigger,
        columnar=False,
        **kwargs,
    )


def test_report_times_are_datetimes_kept_as_epoch_seconds(tmp_path: Path):
    before = datetime.now()
    report = _pipe(tmp_path).run()
    assert isinstance(report.start_time, datetime) and isinstance(report.end_time, datetime)
    assert before - timedelta(seconds=1) <= report.start_time <= report.end_time
    assert report.end_time <= datetime.now() + timedelta(seconds=1)
    assert report.start_timestamp == pytest.approx(report.start_time.timestamp(), abs=1e-5)
    assert report.duration == pytest.approx(
        (report.end_time - report.start_time).total_seconds(), abs=1e-3
    )
    assert report.exception is None and not report.has_error


def test_report_times_accept_datetimes_and_epoch_seconds():
    start = datetime(2026, 1, 2, 3, 4, 5)
    report = PipeReport(start_time=start, end_time=start.timestamp() + 10)
    assert report.start_time == start
    assert report.end_time == start + timedelta(seconds=10)
    assert report.duration == pytest.approx(10)
    report.end_time = None
    assert report.end_timestamp is None
    with pytest.raises(ArgumentTypeError):
        PipeReport(start_time="yesterday")  # type: ignore[arg-type]
    assert PipeReport().start_time is None and PipeReport().exception is None


def test_report_copy_and_aggregate_keep_times_and_exception():
    boom = RuntimeError("boom")
    a = PipeReport(0, PipeStatus.COMPLETED, start_time=100.0, end_time=110.0)
    b = PipeReport(1, PipeStatus.FAILED, start_time=90.0, end_time=120.0, exception=boom)
    total = PipeReport.aggregate([a, b])
    assert total.start_timestamp == 90.0 and total.end_timestamp == 120.0
    assert total.exception is boom and total.status is PipeStatus.FAILED
    clone = b.copy()
    assert clone == b and clone.extra is not b.extra and clone.exception is boom


def test_failed_run_keeps_its_exception(tmp_path: Path):
    pipe = Pipe(CSVInputAdapter(tmp_path / "missing.csv"), JSONOutputAdapter(tmp_path / "o"), User)
    with pytest.raises(InputError) as caught:
        pipe.run()
    report = pipe.report
    assert report.status is PipeStatus.FAILED and report.exception is caught.value
    assert report.has_error and isinstance(report.end_time, datetime)


def test_shutdown_aborts_the_run(tmp_path: Path):
    pipe = _sleepy_pipe(tmp_path)
    pipe.start()
    deadline = time.monotonic() + 30
    while pipe.report.total_processed == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    pipe.shutdown()
    report = pipe.report
    assert report.status is PipeStatus.ABORTED and report.is_finished and report.has_error
    assert report.exception is None
    assert 0 < report.total_processed < 200
    assert not (tmp_path / "slow.jsonl").exists()
    assert PipeReport.aggregate([report, PipeReport(1, PipeStatus.COMPLETED)]).status is (
        PipeStatus.ABORTED
    )


# -- Pipe: ZooPipe's parameters, context manager and run() ---------------------------------


def test_context_manager_starts_and_waits(tmp_path: Path):
    with _pipe(tmp_path) as pipe:
        assert pipe.report.status in (PipeStatus.RUNNING, PipeStatus.COMPLETED)
    report = pipe.report
    assert report.status is PipeStatus.COMPLETED and report.total_processed == 20
    assert len(read_jsonl(tmp_path / "out.jsonl")) == report.success_count == 16


def test_context_manager_wait_inside_as_zoopipes_docs(tmp_path: Path):
    with _pipe(tmp_path) as pipe:
        assert pipe.wait(timeout=30)
    assert pipe.report.success_count == 16


def test_context_manager_stops_the_run_when_the_block_raises(tmp_path: Path):
    with pytest.raises(KeyError), _sleepy_pipe(tmp_path) as pipe:
        raise KeyError("user code failed")
    assert pipe.report.status is PipeStatus.ABORTED
    assert not (tmp_path / "slow.jsonl").exists()


def test_context_manager_keeps_a_failure_in_the_report(tmp_path: Path, caplog):
    missing = Pipe(CSVInputAdapter(tmp_path / "nope.csv"), JSONOutputAdapter(tmp_path / "o"), User)
    with caplog.at_level("ERROR", logger="zoopipe_hpc.pipe"), missing as pipe:
        pass
    assert pipe.report.status is PipeStatus.FAILED
    assert isinstance(pipe.report.exception, InputError)
    assert "nope.csv" in caplog.text


def test_run_calls_on_report_update_every_interval(tmp_path: Path):
    seen: list[PipeReport] = []
    pipe = _pipe(tmp_path, 200, executor=SingleThreadExecutor(batch_size=8), columnar=False)
    pipe.report_update_interval = 3
    report = pipe.run(on_report_update=seen.append)
    assert report.status is PipeStatus.COMPLETED and report.total_processed == 200
    assert seen[-1].status is PipeStatus.COMPLETED and seen[-1].total_processed == 200
    assert len(seen) >= 3
    counts = [r.total_processed for r in seen]
    assert counts == sorted(counts)
    assert all(r.success_count + r.error_count == r.total_processed for r in seen)

    only_end: list[PipeReport] = []
    (tmp_path / "end").mkdir()
    _pipe(tmp_path / "end", 200, report_update_interval=0).run(on_report_update=only_end.append)
    assert [r.total_processed for r in only_end] == [200]


def test_run_in_the_background_and_with_timeout(tmp_path: Path):
    pipe = _pipe(tmp_path)
    started = pipe.run(wait=False)
    assert not started.is_finished
    assert pipe.wait(timeout=30) and pipe.report.success_count == 16

    assert _pipe(tmp_path).run(timeout=60).status is PipeStatus.COMPLETED

    slow = _sleepy_pipe(tmp_path)
    with pytest.raises(PipeTimeoutError):
        slow.run(timeout=0.3)
    assert slow.report.status is PipeStatus.ABORTED
    assert not (tmp_path / "slow.jsonl").exists()


def test_run_with_timeout_raises_what_failed(tmp_path: Path):
    pipe = Pipe(CSVInputAdapter(tmp_path / "nope.csv"), JSONOutputAdapter(tmp_path / "o"), User)
    with pytest.raises(InputError, match="nope.csv"):
        pipe.run(timeout=30)


def test_start_wait_parameter(tmp_path: Path):
    pipe = _pipe(tmp_path)
    pipe.start(wait=True)
    assert pipe.report.status is PipeStatus.COMPLETED


def test_logger_gets_the_warnings(tmp_path: Path, caplog):
    logger = logging.getLogger("zoopipe_hpc.test_api.mine")
    source = write_csv(tmp_path / "in.csv", users(10, bad_every=5))
    pipe = Pipe(
        CSVInputAdapter(source), JSONOutputAdapter(tmp_path / "o.jsonl"), User, logger=logger
    )
    with caplog.at_level("WARNING", logger="zoopipe_hpc.test_api.mine"):
        pipe.run()
    assert {r.name for r in caplog.records} == {"zoopipe_hpc.test_api.mine"}
    assert "invalid record" in caplog.text


def test_options_travel_with_the_pipe(tmp_path: Path):
    logger = get_logger("zoopipe_hpc.test_api.travel")
    pipe = _pipe(tmp_path, logger=logger, report_update_interval=7)
    clone = pickle.loads(pickle.dumps(pipe))
    assert clone.logger is logger and clone.report_update_interval == 7
    other = pipe.with_outputs(JSONOutputAdapter(tmp_path / "x.jsonl"), None)
    assert other.logger is logger and other.report_update_interval == 7
    assert Pipe(pipe.input_adapter, pipe.output_adapter).logger.name == "zoopipe_hpc.pipe"


def test_bad_options_are_refused(tmp_path: Path):
    with pytest.raises(ConfigurationError, match="report_update_interval"):
        _pipe(tmp_path, report_update_interval=-1)
    with pytest.raises(ArgumentTypeError, match="report_update_interval"):
        _pipe(tmp_path, report_update_interval=1.5)
    with pytest.raises(ArgumentTypeError, match="logger"):
        _pipe(tmp_path, logger="zoopipe")


# -- get_pipe_report before start ----------------------------------------------------------


def test_get_pipe_report_before_start(tmp_path: Path):
    with pytest.raises(StateError, match="not been started"):
        MultiProcessEngine().get_pipe_report(0)
    with pytest.raises(RuntimeError):
        MultiProcessEngine().get_pipe_report(0)
    manager = PipeManager([_pipe(tmp_path)])
    report = manager.get_pipe_report(0)
    assert report.status is PipeStatus.PENDING and report.start_time is None


def test_zoopipes_positional_order_of_the_first_four(tmp_path: Path):
    """ZooPipe's ``Pipe(input, output, error_output, model)`` is the same pipe as ours."""
    source = write_csv(tmp_path / "in.csv", users(20, bad_every=5))
    errors = JSONOutputAdapter(tmp_path / "err.jsonl")
    theirs = Pipe(CSVInputAdapter(source), JSONOutputAdapter(tmp_path / "out.jsonl"), errors, User)
    assert theirs.schema_model is User and theirs.error_output_adapter is errors
    report = theirs.run()
    assert (report.success_count, report.error_count) == (16, 4)
    assert len(read_jsonl(tmp_path / "err.jsonl")) == 4


def test_zoopipes_fifth_positional_is_refused_with_advice(tmp_path: Path):
    source = write_csv(tmp_path / "in.csv", users(2))
    with pytest.raises(ConfigurationError, match="name"):
        Pipe(
            CSVInputAdapter(source),
            JSONOutputAdapter(tmp_path / "out.jsonl"),
            None,
            User,
            [],  # ZooPipe's pre_validation_hooks; our executor
        )


def test_dask_engine_takes_zoopipes_address_keyword():
    pytest.importorskip("distributed")
    from zoopipe_hpc.engines.dask import DaskEngine

    engine = DaskEngine(address="tcp://127.0.0.1:1")
    assert engine._address == "tcp://127.0.0.1:1"


def test_output_adapters_take_zoopipes_output_keyword(tmp_path: Path):
    from zoopipe_hpc import ArrowOutputAdapter, CSVOutputAdapter

    for adapter in (CSVOutputAdapter, JSONOutputAdapter, ArrowOutputAdapter):
        target = tmp_path / f"out.{adapter.format}"
        assert adapter(output=target).path == target
        assert adapter(target).path == target
        with pytest.raises(ConfigurationError, match="exactly one of them"):
            adapter(target, output=target)
        with pytest.raises(ConfigurationError, match="exactly one of them"):
            adapter()
    source = write_csv(tmp_path / "in.csv", users(5))
    Pipe(CSVInputAdapter(source), JSONOutputAdapter(output=tmp_path / "o.jsonl"), User).run()
    assert len(read_jsonl(tmp_path / "o.jsonl")) == 5
