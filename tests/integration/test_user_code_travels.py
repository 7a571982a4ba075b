"""User code reaches a compute node, whatever the submitter's working directory.

No cluster: a compute node is simulated by running the task entry point
(``python -P -u -m zoopipe_hpc.engines.slurm <job folder> --shards 0``, as every array task does)
in a fresh process, in another folder, with a clean environment (only zoopipe_hpc's own folder on
PYTHONPATH, as an installed zoopipe_hpc would be) and ``SLURM_ARRAY_TASK_ID`` set by hand. The
payloads are written by real user scripts started from another directory; for the by-value
cases the user's project is moved away before the task runs, as on a node that cannot see it.
The same cases on the real cluster: tests/integration/test_slurm_user_code.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _travel_support import (
    CELL,
    EXPECTED,
    ROOT,
    SUBMIT_PAYLOAD,
    build_extension,
    node_environment,
    read_output,
    write,
    write_input,
    write_neighbour_project,
    write_notebook_project,
    write_package_project,
)


@pytest.fixture
def place(tmp_path: Path) -> Path:
    for name in ("home", "node", "support"):
        (tmp_path / name).mkdir(mode=0o700)
    write(tmp_path / "support", {"_submit.py": SUBMIT_PAYLOAD})
    write_input(tmp_path / "in.csv")
    return tmp_path


def _submit(
    place: Path, argv: list[str], cwd: Path, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *argv],
        cwd=cwd,
        env=node_environment(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _script_args(place: Path) -> list[str]:
    return [
        str(place / "support"),
        str(place / "job"),
        str(place / "in.csv"),
        str(place / "out.csv"),
    ]


def _context(place: Path) -> dict[str, list[str]]:
    """The payload's JSON line (what the task reads before it unpickles)."""
    lines = (place / "job" / "payloads" / "shard-00000.pkl").read_bytes().split(b"\n", 2)
    return json.loads(lines[1])


def _run_task(place: Path) -> subprocess.CompletedProcess[str]:
    task = [sys.executable, "-P", "-u", "-m", "zoopipe_hpc.engines.slurm"]
    env = node_environment(SLURM_ARRAY_JOB_ID="41", SLURM_ARRAY_TASK_ID="0")
    return subprocess.run(
        [*task, str(place / "job"), "--shards", "0"],
        cwd=place / "node",
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _ok(done: subprocess.CompletedProcess[str]) -> None:
    if done.returncode != 0:
        pytest.fail(f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}")


def test_a_model_in_a_neighbour_module_travels_from_another_directory(place: Path) -> None:
    project = write_neighbour_project(place / "project")
    # python ~/project/run.py from the home directory: the project is sys.path[0], not the cwd.
    _ok(_submit(place, [str(project / "run.py"), *_script_args(place)], cwd=place / "home"))
    context = _context(place)
    assert context["by_value"] == ["base", "models", "steps", "textutil"]
    assert str(project) in context["sys_path"]
    project.rename(place / "elsewhere")  # a node that does not see the project
    _ok(_run_task(place))
    assert read_output(place / "out.csv") == EXPECTED


def test_a_model_from_a_local_package_travels(place: Path) -> None:
    project = write_package_project(place / "project")
    _ok(_submit(place, [str(project / "run.py"), *_script_args(place)], cwd=place / "home"))
    by_value = _context(place)["by_value"]
    assert {"mymodels._text", "mymodels.common", "mymodels.hooks", "mymodels.person"} <= set(
        by_value
    )
    project.rename(place / "elsewhere")
    _ok(_run_task(place))
    assert read_output(place / "out.csv") == EXPECTED


def test_a_notebook_cell_importing_a_helper_module_travels(place: Path) -> None:
    notebook = write_notebook_project(place / "notebook")
    cell = place / "cell.py"
    cell.write_text(CELL, encoding="utf-8")
    driver = (
        "import __main__, sys\n"
        f"__main__.SUPPORT = {str(place / 'support')!r}\n"
        f"__main__.ARGS = {_script_args(place)[1:]!r}\n"
        f"exec(compile(open({str(cell)!r}).read(), '<cell 1>', 'exec'), __main__.__dict__)\n"
    )
    # A kernel started in the notebook's folder: "" (the cwd) on sys.path, the cell in __main__.
    _ok(_submit(place, ["-c", driver], cwd=notebook))
    assert _context(place)["by_value"] == ["helpers"]
    notebook.rename(place / "elsewhere")
    _ok(_run_task(place))
    assert read_output(place / "out.csv") == EXPECTED


def test_a_module_imported_at_run_time_is_found_through_the_submitters_sys_path(
    place: Path,
) -> None:
    project = write_neighbour_project(place / "project")
    write(
        project,
        {
            "late.py": "MARK = '!'\n",
            "steps.py": """
                from zoopipe_hpc import BaseHook


                class Mark(BaseHook):
                    def execute(self, entries, store):
                        import late  # imported on the node, when the hook runs

                        for entry in entries:
                            if entry["validated_data"] is not None:
                                entry["validated_data"]["name"] += late.MARK
                        return entries
            """,
        },
    )
    _ok(_submit(place, [str(project / "run.py"), *_script_args(place)], cwd=place / "home"))
    assert "late" not in _context(place)["by_value"]
    _ok(_run_task(place))  # the project stays: it is on the shared filesystem
    assert read_output(place / "out.csv") == EXPECTED


def _compiled_project(place: Path, load: str) -> Path:
    project = write_neighbour_project(place / "project")
    build_extension(place / "ext")
    write(
        project,
        {
            "textutil.py": f"""
                {load}

                def clean(text: str) -> str:
                    return text.strip().upper() * (fastpath.twice(1) // 2)

                MARK = "!"
            """
        },
    )
    return project


def test_a_compiled_module_of_the_users_travels_by_reference_from_its_sys_path_folder(
    place: Path,
) -> None:
    project = _compiled_project(place, "import fastpath")
    path = f"{ROOT}{os.pathsep}{place / 'ext'}"
    argv = [str(project / "run.py"), *_script_args(place)]
    _ok(_submit(place, argv, cwd=place / "home", PYTHONPATH=path))
    context = _context(place)
    assert context["by_reference"] == ["fastpath"]
    assert str(place / "ext") in context["sys_path"]
    _ok(_run_task(place))  # the node's PYTHONPATH lacks ext/: the payload puts it back
    assert read_output(place / "out.csv") == EXPECTED


def test_a_compiled_module_outside_sys_path_is_refused_before_anything_is_submitted(
    place: Path,
) -> None:
    ext = place / "ext"
    load = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('fastpath', {str(ext)!r} "
        "+ '/fastpath' + __import__('sysconfig').get_config_var('EXT_SUFFIX'))\n"
        "fastpath = importlib.util.module_from_spec(spec)\n"
        "sys.modules['fastpath'] = fastpath\n"
        "spec.loader.exec_module(fastpath)"
    )
    project = _compiled_project(place, load.replace("\n", "\n                "))
    done = _submit(place, [str(project / "run.py"), *_script_args(place)], cwd=place / "home")
    assert done.returncode == 1
    assert "ConfigurationError" in done.stderr
    assert "module 'fastpath'" in done.stderr
    assert "compiled code of your own" in done.stderr and "PYTHONPATH" in done.stderr
    assert not (place / "job" / "payloads" / "shard-00000.pkl").exists()


def test_a_durable_job_refuses_code_that_cannot_travel_before_making_its_directory(
    place: Path,
) -> None:
    jobs = place / "jobs"
    build_extension(jobs)  # next to the job file: on sys.path only while the schema imports
    write(
        jobs,
        {
            "models.py": """
                import fastpath
                from pydantic import BaseModel, field_validator


                class User(BaseModel):
                    id: int
                    name: str

                    @field_validator("id")
                    @classmethod
                    def _twice(cls, value: int) -> int:
                        return fastpath.twice(value)
            """,
            "clean.yaml": f"""
                name: clean
                input: {{format: csv, path: {place / "in.csv"}}}
                output: {{format: csv, path: {place / "out.csv"}}}
                schema: "models:User"
                workers: 2
                engine: {{kind: slurm, time: "00:05:00"}}
            """,
        },
    )
    script = (
        "import sys\n"
        "from zoopipe_hpc.errors import ConfigurationError\n"
        "from zoopipe_hpc.jobs.config import load_job_file\n"
        "from zoopipe_hpc.jobs.submission import dry_run, submit\n"
        f"config = load_job_file({str(jobs / 'clean.yaml')!r})\n"
        "for call in (dry_run, submit):\n"
        "    try:\n"
        "        call(config)\n"
        "    except ConfigurationError as exc:\n"
        "        print(call.__name__, 'refused:', exc)\n"
    )
    done = _submit(place, ["-c", script], cwd=place / "home")
    _ok(done)
    lines = done.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["dry_run refused", "submit refused"]
    assert all("module 'fastpath'" in line and "compiled code" in line for line in lines)
    assert not (jobs / "zoopipe-jobs").exists() or not any((jobs / "zoopipe-jobs").iterdir())
