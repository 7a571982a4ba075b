"""User projects for the "user code travels" tests: files on disk, and the scripts that submit
them, shared by the simulated compute node (tests/integration/test_user_code_travels.py) and
the real cluster (tests/integration/test_slurm_user_code.py).

Each project validates ``id,name`` rows; its model and hooks come from the user's own modules
(never from tests/ or site-packages), and its output names say which code ran: the name is
cleaned by a helper of a second module, and a hook adds a mark.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sysconfig
import textwrap
from pathlib import Path

import zoopipe_hpc

__all__ = [
    "CELL",
    "EXPECTED",
    "ROOT",
    "SUBMIT_PAYLOAD",
    "SUBMIT_SLURM",
    "build_extension",
    "node_environment",
    "read_output",
    "write",
    "write_input",
    "write_neighbour_project",
    "write_notebook_project",
    "write_package_project",
]

#: The folder zoopipe_hpc is imported from (the worktree under test): on the nodes' PYTHONPATH,
#: as an installed zoopipe_hpc would be in their environment.
ROOT = Path(zoopipe_hpc.__file__).resolve().parents[1]

#: What every project writes from :func:`write_input`'s four rows: cleaned names, hook's mark.
EXPECTED = [
    {"id": "0", "name": "ADA!"},
    {"id": "1", "name": "GRACE!"},
    {"id": "2", "name": "ALAN!"},
    {"id": "3", "name": "EDSGER!"},
]


def read_output(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def write(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return folder


def write_input(path: Path, rows: int = 4) -> list[tuple[int, str]]:
    names = ["ada", " grace", "alan ", "edsger", "barbara", "donald"]
    data = [(i, names[i % len(names)]) for i in range(rows)]
    path.write_text("id,name\n" + "".join(f"{i},{n}\n" for i, n in data), encoding="utf-8")
    return data


def write_neighbour_project(folder: Path) -> Path:
    """``run.py`` next to ``models.py``, whose model subclasses ``base.py``'s, which cleans
    with ``textutil.py``; the hook comes from ``steps.py``. Returns the project folder."""
    return write(
        folder,
        {
            "textutil.py": """
                def clean(text: str) -> str:
                    return text.strip().upper()

                MARK = "!"
            """,
            "base.py": """
                from pydantic import BaseModel, field_validator

                from textutil import clean


                class BaseRecord(BaseModel):
                    id: int
                    name: str

                    @field_validator("name")
                    @classmethod
                    def _clean(cls, value: str) -> str:
                        return clean(value)
            """,
            "models.py": """
                from base import BaseRecord


                class User(BaseRecord):
                    pass
            """,
            "steps.py": """
                import textutil

                from zoopipe_hpc import BaseHook


                class Mark(BaseHook):
                    def execute(self, entries, store):
                        for entry in entries:
                            if entry["validated_data"] is not None:
                                entry["validated_data"]["name"] += textutil.MARK
                        return entries
            """,
            "run.py": """
                import sys

                from models import User
                from steps import Mark

                sys.path.insert(0, sys.argv[1])  # the tests' submit helpers, not user code
                from _submit import submit

                submit(User, [Mark()], *sys.argv[2:])
            """,
        },
    )


def write_package_project(folder: Path) -> Path:
    """``run.py`` next to a local package ``mymodels`` (relative imports inside it)."""
    return write(
        folder,
        {
            "mymodels/__init__.py": """
                from .person import Person

                __all__ = ["Person"]
            """,
            "mymodels/_text.py": """
                def clean(text: str) -> str:
                    return text.strip().upper()
            """,
            "mymodels/common.py": """
                from pydantic import BaseModel, field_validator

                from ._text import clean


                class Named(BaseModel):
                    name: str

                    @field_validator("name")
                    @classmethod
                    def _clean(cls, value: str) -> str:
                        return clean(value)
            """,
            "mymodels/person.py": """
                from .common import Named


                class Person(Named):
                    id: int
            """,
            "mymodels/hooks.py": """
                from zoopipe_hpc import BaseHook


                class Mark(BaseHook):
                    def execute(self, entries, store):
                        for entry in entries:
                            if entry["validated_data"] is not None:
                                entry["validated_data"]["name"] += "!"
                        return entries
            """,
            "run.py": """
                import sys

                from mymodels import Person
                from mymodels.hooks import Mark

                sys.path.insert(0, sys.argv[1])
                from _submit import submit

                submit(Person, [Mark()], *sys.argv[2:])
            """,
        },
    )


def write_notebook_project(folder: Path) -> Path:
    """A notebook's folder: ``helpers.py`` next to it; the cell (:data:`CELL`) defines the
    model and the hook in ``__main__`` on top of the helper's classes."""
    return write(
        folder,
        {
            "helpers.py": """
                from pydantic import BaseModel, field_validator


                def clean(text: str) -> str:
                    return text.strip().upper()


                class Base(BaseModel):
                    id: int
                    name: str

                    @field_validator("name")
                    @classmethod
                    def _clean(cls, value: str) -> str:
                        return clean(value)
            """,
        },
    )


#: A notebook cell: run with ``exec`` in ``__main__`` (as IPython runs cells), started in the
#: notebook's folder with ``""`` on ``sys.path`` (as a Jupyter kernel is).
CELL = """
import sys

import helpers
from zoopipe_hpc import BaseHook


class Row(helpers.Base):
    pass


class Mark(BaseHook):
    def execute(self, entries, store):
        for entry in entries:
            data = entry["validated_data"]
            if data is not None:
                data["name"] = helpers.clean(data["name"]) + "!"
        return entries


sys.path.insert(0, SUPPORT)
from _submit import submit

submit(Row, [Mark()], *ARGS)
"""

#: ``_submit.py`` for the simulated node: writes shard 0's payload as ``SlurmEngine.start``
#: does (``PayloadStore.dump``), into a new job folder; nothing is submitted.
SUBMIT_PAYLOAD = """
from pathlib import Path

from zoopipe_hpc import CSVInputAdapter, CSVOutputAdapter, Pipe
from zoopipe_hpc.engines.slurm._payload import PayloadStore


def submit(model, hooks, job, source, target):
    job = Path(job)
    job.mkdir(mode=0o700)
    (job / "progress").mkdir(mode=0o700)
    store = PayloadStore(job)
    store.create()
    pipe = Pipe(
        input_adapter=CSVInputAdapter(source),
        output_adapter=CSVOutputAdapter(target),
        schema_model=model,
        post_validation_hooks=hooks,
    )
    store.dump("shard-00000", pipe)
"""

#: ``_submit.py`` for the real cluster: the whole run, two shards on SlurmEngine.
SUBMIT_SLURM = """
from zoopipe_hpc import CSVInputAdapter, CSVOutputAdapter, Pipe, PipeManager
from zoopipe_hpc.engines.slurm import SlurmEngine


def submit(model, hooks, folder, source, target):
    pipe = Pipe(
        input_adapter=CSVInputAdapter(source),
        output_adapter=CSVOutputAdapter(target),
        schema_model=model,
        post_validation_hooks=hooks,
    )
    engine = SlurmEngine(folder=folder, time="00:05:00", poll_interval=0.5)
    manager = PipeManager.parallelize_pipe(pipe, workers=2, engine=engine)
    if not manager.run(timeout=240):
        raise SystemExit(f"the run failed: {manager.report}")
"""


def node_environment(**extra: str) -> dict[str, str]:
    """A clean environment: only PATH, HOME and zoopipe_hpc's own folder on PYTHONPATH."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT)}
    env["HOME"] = os.environ.get("HOME", "/root")
    env.update(extra)
    return env


def build_extension(folder: Path, name: str = "fastpath") -> Path:
    """Compile a tiny C extension ``name`` (``twice(n)``) into ``folder``; returns its file."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    source = folder / f"{name}.c"
    source.write_text(
        textwrap.dedent(
            f"""
            #define PY_SSIZE_T_CLEAN
            #include <Python.h>
            static PyObject *twice(PyObject *self, PyObject *arg) {{
                long v = PyLong_AsLong(arg);
                if (v == -1 && PyErr_Occurred()) return NULL;
                return PyLong_FromLong(2 * v);
            }}
            static PyMethodDef methods[] = {{{{"twice", twice, METH_O, "2 n"}}, {{NULL}}}};
            static struct PyModuleDef mod = {{PyModuleDef_HEAD_INIT, "{name}", NULL, -1, methods}};
            PyMODINIT_FUNC PyInit_{name}(void) {{ return PyModule_Create(&mod); }}
            """
        ),
        encoding="utf-8",
    )
    target = folder / f"{name}{sysconfig.get_config_var('EXT_SUFFIX')}"
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("no C compiler (cc) on PATH: apt-get install gcc")
    include = sysconfig.get_paths()["include"]
    subprocess.run(
        [compiler, "-shared", "-fPIC", f"-I{include}", "-o", str(target), str(source)],
        check=True,
        capture_output=True,
    )
    source.unlink()
    return target
