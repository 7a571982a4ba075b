"""The parts of ZooPipe's public API a ZooPipe user touches besides hooks and adapters (issue 13):
the top-level names, every engine from ``zoopipe_hpc.engines`` (loaded lazily), the
executors' accessors, ``Pipe`` as a context manager with ZooPipe's parameters and ``run()``,
and ``PipeReport``'s field types."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from _support import Trigger, User, users, write_csv

from zoopipe_hpc import (
    BaseEngine,
    CSVInputAdapter,
    JSONOutputAdapter,
    MultiProcessEngine,
    MultiThreadExecutor,
    Pipe,
    PipeReport,
    PipeStatus,
    SingleThreadExecutor,
    get_logger,
)
from zoopipe_hpc.errors import ArgumentTypeError, InputError

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
