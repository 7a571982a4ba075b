"""Every example in examples/ runs to success (the slurm_* ones need the test cluster)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.py"))


def _param(path: Path):  # type: ignore[no-untyped-def]
    marks = [pytest.mark.slurm] if path.name.startswith("slurm_") else []
    return pytest.param(path, id=path.stem, marks=marks)


@pytest.mark.parametrize("example", [_param(p) for p in EXAMPLES])
def test_example_runs(example: Path, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if example.name.startswith("slurm_"):
        request.getfixturevalue("slurm_cluster")
    result = subprocess.run(
        [sys.executable, str(example), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"{example.name} failed:\n{result.stdout}\n{result.stderr}"


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 3
