"""Smoke test of benchmarks/task_start.py: every case runs (the shard writes its row) and is
reported with both ratios. It never asserts a time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "task_start.py"


def test_quick_run_reports_every_case_with_its_ratios(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    argv = [sys.executable, str(SCRIPT), "--quick", "--json", str(out)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "vs python -c pass" in done.stdout
    report = json.loads(out.read_text())
    results = report["results"]
    assert [r["case"] for r in results] == [
        "python -c pass",
        "import pyarrow, pydantic",
        "entry point --help",
        "one-row CSV shard",
    ]
    for r in results:
        assert r["runs"] == 3 and r["median_s"] > 0, r
        assert r["vs_python"] > 0 and r["vs_pyarrow_pydantic"] > 0, r
    (payloads,) = report["payloads"]
    assert payloads["payloads"] == 20 and payloads["bytes"] > 0, payloads
    assert payloads["dump_s"] > 0 and payloads["cloudpickle_s"] > 0, payloads
