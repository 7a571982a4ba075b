"""Smoke test of benchmarks/throughput.py: it runs end to end and reports sane numbers.

It never asserts a speed: only that every zoopipe_hpc measurement succeeded with a positive
rate and that the peak-RSS pair was measured. Wall-clock numbers on a shared CI machine are
meaningless for pass/fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"
SCRIPT = BENCH / "throughput.py"

pytestmark = pytest.mark.skipif(
    not hasattr(os, "wait4"), reason="the benchmarks measure peak RSS with os.wait4 (POSIX)"
)


@pytest.fixture(scope="module")
def common():
    sys.path.insert(0, str(BENCH))
    try:
        import _common

        yield _common
    finally:
        sys.path.remove(str(BENCH))


def test_generated_data_is_deterministic(tmp_path: Path, common) -> None:
    a = common.ensure_people_csv(2_000, tmp_path / "a", seed=7, log=False)
    b = common.ensure_people_csv(2_000, tmp_path / "b", seed=7, log=False)
    c = common.ensure_people_csv(2_000, tmp_path / "c", seed=8, log=False)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()
    assert common.count_csv_records(a) == 2_000
    # Cached: asking again returns the same file without rewriting it.
    mtime = a.stat().st_mtime_ns
    assert common.ensure_people_csv(2_000, tmp_path / "a", seed=7, log=False) == a
    assert a.stat().st_mtime_ns == mtime


def test_generated_rows_are_valid_for_the_model(tmp_path: Path, common) -> None:
    import csv

    path = common.ensure_people_csv(1_000, tmp_path, seed=3, log=False)
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1_000
    people = [common.Person.model_validate(row) for row in rows]
    assert [p.id for p in people] == list(range(1_000))
    assert any("," in p.name for p in people)  # some quoted fields with a comma inside


def test_peak_rss_is_per_child_and_not_polluted(common) -> None:
    prelude = f"import sys; sys.path.insert(0, {str(Path(common.__file__).parent)!r}); "
    prelude += "from _common import write_child_report; "
    big = common.run_child(
        [sys.executable, "-c", prelude + "x = b'x' * (150 << 20); write_child_report({})"],
        timeout=60,
    )
    small = common.run_child([sys.executable, "-c", prelude + "write_child_report({})"], timeout=60)
    assert big.returncode == 0 and small.returncode == 0
    assert big.peak_rss_bytes is not None and small.peak_rss_bytes is not None
    assert big.peak_rss_bytes >= 150 << 20
    # The second child is measured on its own: the first one's peak does not leak into it.
    assert small.peak_rss_bytes < big.peak_rss_bytes - (100 << 20)


def test_child_timeout_kills_the_child(common) -> None:
    result = common.run_child([sys.executable, "-c", "import time; time.sleep(60)"], timeout=1)
    assert result.timed_out
    assert not result.ok
    assert result.wall_seconds < 30


def test_format_table_aligns_columns(common) -> None:
    text = common.format_table(["name", "n"], [["a", 1], ["bbb", 22]])
    lines = text.splitlines()
    assert lines[0] == "name   n"
    assert lines[2] == "a      1"
    assert lines[3] == "bbb   22"


@pytest.mark.slow
def test_quick_benchmark_runs_and_reports_every_row(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--quick",
            "--rss-hpc-only",
            "--json",
            str(out),
            "--data-dir",
            str(tmp_path / "data"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(out.read_text(encoding="utf-8"))
    assert results["quick"] is True
    assert results["rows"] == 50_000
    small, large = results["rss_rows"]
    assert (small, large) == (50_000, 200_000)

    # zoopipe_hpc: Parquet and JSON Lines, one worker and two, every one a positive rate.
    hpc = [r for r in results["throughput"] if r["engine"] == "zoopipe_hpc"]
    assert {(r["output"], r["workers"]) for r in hpc} == {
        ("parquet", 1),
        ("parquet", 2),
        ("jsonl", 1),
        ("jsonl", 2),
    }
    for r in hpc:
        assert r["ok"], r
        assert r["rows_per_s"] > 0
        assert r["seconds"] > 0
        assert r["output_rows"] == 50_000
        assert r["peak_rss_bytes"] > 0
        assert "vs_zoopipe" in r and "vs_pyarrow" in r

    # The pyarrow baseline (the speed limit) ran too.
    (baseline,) = [r for r in results["throughput"] if r["engine"] == "pyarrow"]
    assert baseline["ok"] and baseline["rows_per_s"] > 0

    # zoopipe rows exist; they may be n/a (not installed, or a conversion it cannot do).
    zoo = [r for r in results["throughput"] if r["engine"] == "zoopipe"]
    assert len(zoo) == 4
    for r in zoo:
        assert (r["ok"] and r["rows_per_s"] > 0) or r["error"]

    # Peak RSS of one zoopipe_hpc worker, small and large input, both outputs.
    rss = [r for r in results["rss"] if r["engine"] == "zoopipe_hpc"]
    assert {(r["output"], r["rows"]) for r in rss} == {
        ("parquet", small),
        ("parquet", large),
        ("jsonl", small),
        ("jsonl", large),
    }
    for r in rss:
        assert r["ok"], r
        assert r["peak_rss_bytes"] > 0
        assert r["workers"] == 1
    ratios = [q for q in results["rss_ratios"] if q["engine"] == "zoopipe_hpc"]
    assert len(ratios) == 2
    for q in ratios:
        assert q["peak_ratio"] > 0

    assert "zoopipe_hpc CSV -> Parquet" in proc.stdout
    assert "peak RSS of one worker" in proc.stdout


def test_hooks_table_runs_and_reports_each_hook_kind(tmp_path: Path) -> None:
    out = tmp_path / "hooks.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--hooks",
            "--rows",
            "3000",
            "--no-zoopipe",
            "--json",
            str(out),
            "--data-dir",
            str(tmp_path / "data"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = json.loads(out.read_text(encoding="utf-8"))["runs"]
    assert {r["hook"] for r in runs} == {"none", "row", "arrow"}
    assert all(r["ok"] and r["rows_per_s"] > 0 and r["success"] == 3000 for r in runs)
    assert "Arrow hook" in proc.stdout and "/no hook" in proc.stdout


def test_wide_table_runs_and_counts_the_invalid_rows(tmp_path: Path) -> None:
    out = tmp_path / "wide.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--wide",
            "--rows",
            "2000",
            "--no-zoopipe",
            "--json",
            str(out),
            "--data-dir",
            str(tmp_path / "data"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(out.read_text(encoding="utf-8"))
    invalid = results["invalid"]
    assert 0.02 * 2000 < invalid < 0.04 * 2000
    runs = results["runs"]
    assert {(r["engine"], r["columnar"]) for r in runs} == {
        ("pyarrow", True),
        ("zoopipe_hpc", True),
        ("zoopipe_hpc", False),
    }
    assert {(r["engine"], r["columnar"], r["read_ahead"]) for r in runs} >= {
        ("zoopipe_hpc", True, True),
        ("zoopipe_hpc", True, False),
    }
    for r in runs:
        assert r["ok"], r
        assert r["rows_per_s"] > 0
    for r in runs:
        if r["engine"] == "zoopipe_hpc":
            assert (r["success"], r["errors"]) == (2000 - invalid, invalid)
            assert r["pyarrow_over_this"] > 0
    assert "16 columns" in proc.stdout and "[row path]" in proc.stdout
    assert "[no read-ahead]" in proc.stdout and "load average" in proc.stdout
