"""Smoke test of benchmarks/engines.py: every engine runs the same work end to end.

Runs ``engines.py --quick --engines multiprocess,pool,dask,ray`` in a subprocess and checks the
structure of its JSON: every measurement succeeded with a positive time and rate, every run of
a workload committed the input's rows, and the ratios against MultiProcessEngine are there. It
never asserts a speed: wall-clock numbers on a shared machine are meaningless for pass/fail.
Most of its time (about 40 s on 2 cores) is Ray's start (about 5 s per run) and the child
process each Ray and Dask task starts per pipe.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "engines.py"
ENGINES = ("multiprocess", "pool", "dask", "ray")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not hasattr(os, "wait4"), reason="the benchmarks measure peak RSS with os.wait4 (POSIX)"
    ),
]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    pytest.importorskip("ray")
    pytest.importorskip("distributed")
    work = tmp_path_factory.mktemp("engines-bench")
    out = work / "results.json"
    argv = [
        sys.executable,
        str(SCRIPT),
        "--quick",
        "--engines",
        ",".join(ENGINES),
        "--json",
        str(out),
        "--data-dir",
        str(work / "data"),
        "--timeout",
        "120",
    ]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=240, cwd=ROOT)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"engines.py --quick did not finish in 240 s: {exc.stderr!r}")
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    data: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    data["_stdout"] = done.stdout
    return data


def test_every_engine_ran_every_workload(results: dict[str, Any]) -> None:
    assert results["benchmark"] == "engines"
    assert results["quick"] is True
    assert results["baseline"] == "multiprocess"
    assert set(results["engines"]) == set(ENGINES)
    workloads = {w["name"]: w for w in results["workloads"]}
    assert len(workloads) == 2
    seen = {(r["workload"], r["engine"]) for r in results["measurements"]}
    assert seen == {(w, e) for w in workloads for e in ENGINES}
    for r in results["measurements"]:
        assert r["ok"], (r["workload"], r["engine"], r.get("error"), r.get("stderr_tail"))
        assert r["seconds"] > 0
        assert r["rows_per_s"] > 0
        assert r["peak_rss_bytes"] > 0
        assert r["wall_vs_multiprocess"] > 0
        assert r["start_seconds"] is not None and r["start_seconds"] >= 0
        assert r["shards"] == workloads[r["workload"]]["shards"]
        assert r["pipes"] == r["shards"]
    for r in results["measurements"]:
        if r["engine"] in ("ray", "dask"):
            # The scheduler's own start is measured on its own, and is part of start().
            assert 0 < r["init_seconds"] <= r["start_seconds"] <= r["seconds"]
        if r["engine"] == "multiprocess":
            assert r["wall_vs_multiprocess"] == pytest.approx(1.0)


def test_every_run_committed_the_same_rows(results: dict[str, Any]) -> None:
    assert results["same_rows_everywhere"] is True
    for workload in results["workloads"]:
        rows = {
            (r["success"], r["output_rows"])
            for r in results["measurements"]
            if r["workload"] == workload["name"]
        }
        assert rows == {(workload["rows"], workload["rows"])}


def test_the_table_is_printed(results: dict[str, Any]) -> None:
    stdout = results["_stdout"]
    for label in ("MultiProcessEngine", "ZooParallelPoolEngine", "RayEngine", "DaskEngine"):
        assert label in stdout
    assert "vs MP" in stdout
    assert "machine:" in stdout
    assert "FAILED" not in stdout
