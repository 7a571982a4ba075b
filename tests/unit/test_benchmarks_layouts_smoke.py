"""Smoke test of benchmarks/parquet_layouts.py: it runs end to end on a small input and reports
both layouts. It never asserts a speed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "parquet_layouts.py"

pytestmark = pytest.mark.skipif(
    not hasattr(os, "wait4"), reason="the benchmarks measure peak RSS with os.wait4 (POSIX)"
)


def test_the_layouts_benchmark_runs_and_reports_both_layouts(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    env = os.environ | {
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    }
    argv = [sys.executable, str(SCRIPT), "--rows", "3000", "--workers", "3"]
    argv += ["--data-dir", str(tmp_path / "data"), "--json", str(out)]
    child = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
    assert child.returncode == 0, child.stderr
    assert "dataset" in child.stdout and "x file" in child.stdout
    best = json.loads(out.read_text())["best"]
    assert best["file"]["files"] == 1 and best["dataset"]["files"] == 3
    assert best["file"]["commit_s"] > 0 and best["dataset"]["commit_s"] > 0


def test_the_compressed_outputs_run_and_report_each_codec(tmp_path: Path) -> None:
    """``--outputs compressed``: every codec's run reports its commit against the plain CSV."""
    out = tmp_path / "figures.json"
    env = os.environ | {
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    }
    argv = [sys.executable, str(SCRIPT), "--rows", "3000", "--workers", "3"]
    argv += ["--outputs", "compressed", "--data-dir", str(tmp_path / "data"), "--json", str(out)]
    child = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
    assert child.returncode == 0, child.stderr
    assert "x csv" in child.stdout
    best = json.loads(out.read_text())["best"]
    assert set(best) == {"csv", "csv.gz", "csv.bz2", "csv.xz:1", "csv.zst"}
    for codec, figures in best.items():
        assert figures["files"] == 1 and figures["commit_s"] > 0, codec
        if codec != "csv":
            assert figures["bytes"] < best["csv"]["bytes"], codec
