"""The parts of ZooPipe's public API a ZooPipe user touches besides hooks and adapters (issue 13):
the top-level names, every engine from ``zoopipe_hpc.engines`` (loaded lazily), the
executors' accessors, ``Pipe`` as a context manager with ZooPipe's parameters and ``run()``,
and ``PipeReport``'s field types."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from zoopipe_hpc import (
    BaseEngine,
    MultiProcessEngine,
    MultiThreadExecutor,
    PipeStatus,
    SingleThreadExecutor,
    get_logger,
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
    import pytest

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
