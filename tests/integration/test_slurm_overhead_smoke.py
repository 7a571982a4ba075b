"""Smoke test of benchmarks/slurm_overhead.py on the local Slurm cluster.

Runs the benchmark with ``--quick`` in a subprocess and checks the structure of its JSON: every
measurement succeeded with a positive wall time, the engine/plain-sbatch ratio is there, the
engine made one sbatch per array, and its state queries (sacct/squeue) did not grow faster than
the number of shards. It never asserts a time: the machine and the cluster may be shared.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "slurm_overhead.py"
TOOLS = ("sbatch", "sacct", "squeue", "scontrol", "scancel")


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict:  # type: ignore[type-arg]
    # pytest's temporary folder: the local cluster's nodes run on this machine and see it.
    work = tmp_path_factory.mktemp("slurm-overhead")
    out = work / "out.json"
    argv = [
        sys.executable,
        str(SCRIPT),
        "--quick",
        "--json",
        str(out),
        "--data-dir",
        str(work / "data"),
        "--timeout",
        "240",
    ]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=REPO)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"slurm_overhead.py --quick did not finish in 300 s: {exc.stderr!r}")
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert out.exists(), done.stdout
    data: dict = json.loads(out.read_text(encoding="utf-8"))  # type: ignore[type-arg]
    data["_stdout"] = done.stdout
    return data


def test_overhead_rows_have_positive_times_and_a_ratio(results: dict) -> None:  # type: ignore[type-arg]
    assert results["benchmark"] == "slurm_overhead"
    assert results["quick"] is True
    overhead = results["overhead"]
    kinds = {(r["kind"], r["variant"]) for r in overhead}
    assert ("sbatch", "plain") in kinds and ("engine", None) in kinds
    for row in overhead:
        assert row["ok"], row.get("error")
        assert row["shards"] == results["tasks"]
        assert row["seconds"] > 0
        assert row["makespan_seconds"] > 0
        assert row["output_rows"] == results["tasks"]
    engine = next(r for r in overhead if r["kind"] == "engine")
    assert engine["rows_per_shard_min"] == engine["rows_per_shard_max"] == 1
    assert isinstance(results["ratio"], float) and results["ratio"] > 0
    assert isinstance(results["makespan_ratio"], float) and results["makespan_ratio"] > 0
    # What the baseline does, and the cluster facts, are part of the printed result.
    assert "sbatch --wait" in results["baseline"]["command"]
    assert results["baseline"]["task"].startswith(sys.executable)
    assert results["cluster"]["slurm_version"]
    assert results["cluster"]["total_cpus"] > 0
    stdout = results["_stdout"]
    assert "SlurmEngine / plain sbatch" in stdout
    assert results["cluster"]["slurm_version"] in stdout


def test_one_sbatch_per_array_and_state_queries_do_not_follow_the_shards(
    results: dict,  # type: ignore[type-arg]
) -> None:
    rows = results["slurm_calls"]
    assert [r["shards"] for r in rows] == sorted(results["counts"])
    assert len(rows) >= 2
    for row in rows:
        assert row["ok"], row.get("error")
        calls = row["slurm_calls"]
        assert set(calls) == set(TOOLS)
        assert row["arrays"] >= 1
        assert calls["sbatch"] == row["arrays"], calls  # one sbatch per array, never per shard
        assert calls["scancel"] == 0, calls  # nothing was cancelled in a successful run
        assert row["slurm_calls_total"] == sum(calls.values())
        assert row["calls_per_shard"] == pytest.approx(row["slurm_calls_total"] / row["shards"])
    small, large = rows[0], rows[-1]
    assert large["shards"] > small["shards"]
    # A structural bound: one query covers every array, so going from 10 to 30 shards must not
    # multiply the queries by more than the shards (plus a few for the longer run).
    assert large["state_queries"] <= 3 * small["state_queries"] + 10, (small, large)
