"""User code reaches the compute nodes of the real cluster (the cases of issue 12).

Each test starts a user's script in a fresh process from another directory, with a clean
environment (only zoopipe_hpc's own folder on PYTHONPATH): the script runs two shards on
SlurmEngine and checks its run; the test checks the output. Before, each of these failed on
every node with ``ModuleNotFoundError`` (only the model's own module travelled by value, and the
submitter's ``sys.path`` was not reproduced). Without a cluster, the same cases run on a
simulated node: tests/integration/test_user_code_travels.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from _travel_support import (
    CELL,
    EXPECTED,
    SUBMIT_SLURM,
    node_environment,
    read_output,
    write,
    write_input,
    write_neighbour_project,
    write_notebook_project,
    write_package_project,
)

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]


@pytest.fixture
def place(tmp_path: Path) -> Path:
    # pytest's temporary folder: the local cluster's nodes run on this machine and see it.
    (tmp_path / "home").mkdir(mode=0o700)
    write(tmp_path / "support", {"_submit.py": SUBMIT_SLURM})
    write_input(tmp_path / "in.csv")
    return tmp_path


def _args(place: Path) -> list[str]:
    return [str(place / "jobs"), str(place / "in.csv"), str(place / "out.csv")]


def _run(argv: list[str], cwd: Path) -> None:
    # A clean environment, but the Slurm client's own settings kept (a cluster's SLURM_CONF).
    slurm = {k: v for k, v in os.environ.items() if k in ("SLURM_CONF", "USER", "LOGNAME")}
    done = subprocess.run(
        [sys.executable, *argv],
        cwd=cwd,
        env=node_environment(**slurm),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        pytest.fail(f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}")


def test_slurm_a_model_in_a_neighbour_module_started_from_another_directory(place: Path) -> None:
    project = write_neighbour_project(place / "project")
    _run([str(project / "run.py"), str(place / "support"), *_args(place)], cwd=place / "home")
    assert read_output(place / "out.csv") == EXPECTED


def test_slurm_a_model_importing_a_local_package(place: Path) -> None:
    project = write_package_project(place / "project")
    _run([str(project / "run.py"), str(place / "support"), *_args(place)], cwd=place / "home")
    assert read_output(place / "out.csv") == EXPECTED


def test_slurm_a_notebook_cell_importing_a_helper_module(place: Path) -> None:
    notebook = write_notebook_project(place / "notebook")
    cell = place / "cell.py"
    cell.write_text(CELL, encoding="utf-8")
    driver = (
        "import __main__\n"
        f"__main__.SUPPORT = {str(place / 'support')!r}\n"
        f"__main__.ARGS = {_args(place)!r}\n"
        f"exec(compile(open({str(cell)!r}).read(), '<cell 1>', 'exec'), __main__.__dict__)\n"
    )
    _run(["-c", driver], cwd=notebook)
    assert read_output(place / "out.csv") == EXPECTED
