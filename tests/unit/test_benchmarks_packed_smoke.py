"""Smoke test of benchmarks/packed_tasks.py: both cases run every shard and the ratio is there.

It never asserts a speed: only that each case wrote every row and that the script exits 0.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "packed_tasks.py"


def test_quick_run_reports_both_cases(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    argv = [sys.executable, str(SCRIPT), "--shards", "3", "--workers", "2", "--json", str(out)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "packed / one shard per task" in done.stdout
    results = json.loads(out.read_text())
    for case in ("one shard per task", "packed"):
        assert results[case]["ok"] and results[case]["rows"] == 3, results
        assert results[case]["seconds"] > 0
    assert results["packed_vs_one_per_task"] > 0
