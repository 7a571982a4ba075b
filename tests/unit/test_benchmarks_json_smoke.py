"""Smoke test of benchmarks/json_inputs.py: every case runs at both sizes and is reported.

It never asserts a speed or a memory figure (tests/unit/test_json_array.py asserts that the
reader's memory does not grow); only that each case read every row, that the ratios are there,
and that the script exits 0.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "json_inputs.py"

pytestmark = pytest.mark.skipif(
    not hasattr(os, "wait4"), reason="the benchmarks measure peak RSS with os.wait4 (POSIX)"
)


def test_quick_run_reports_every_case_at_both_sizes(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    argv = [sys.executable, str(SCRIPT), "--quick", "--rows", "3000,12000"]
    argv += ["--json", str(out), "--data-dir", str(tmp_path / "data"), "--timeout", "120"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "vs json.load" in done.stdout and "peak growth" in done.stdout
    results = json.loads(out.read_text())["results"]
    line_cases = {"JSON Lines -> Parquet", "folder -> Parquet", ".gz -> Parquet", ".zst -> Parquet"}
    cases = {"json.load", "array reader", "array -> Parquet", *line_cases}
    assert {(r["case"], r["size"]) for r in results} == {
        (case, size) for case in cases for size in (3000, 12000)
    }
    for r in results:
        assert r["ok"] and r["rows"] == r["size"] and r["seconds"] > 0, r
        assert r["peak_rss_bytes"] > 0 and r["vs_json_load"] > 0 and r["peak_growth"] > 0
        assert (r["vs_jsonl"] is not None) == (r["case"] in line_cases), r
    # The folder case reads files of 1,000 rows (--quick): 4x the rows is 4x the files.
    for rows in (3000, 12000):
        [folder] = (tmp_path / "data").glob(f"people-{rows}-*-files-1000")
        assert len(list(folder.iterdir())) == rows // 1000
    # The array really is one JSON document with those rows.
    [array] = (tmp_path / "data").glob("people-3000-*.json")
    assert len(json.loads(array.read_text())) == 3000
