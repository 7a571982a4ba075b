"""A Slurm task imports only what its shard needs (fast task start, issue 12).

Each check runs in a fresh ``python -P`` process, as a task does, and lists ``sys.modules``:
after importing the entry point (nothing of the pipe yet), and after running a real one-row
CSV -> CSV shard through it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pydantic import BaseModel

from zoopipe_hpc import CSVInputAdapter, CSVOutputAdapter, Pipe
from zoopipe_hpc.engines.slurm._payload import PayloadStore

#: Never needed by a task whose pipe does not use them.
HEAVY = (
    "ray",
    "dask",
    "distributed",
    "duckdb",
    "pyiceberg",
    "sqlalchemy",
    "IPython",
    "submitit",
    "yaml",
    "pyarrow.parquet",
    "pyarrow.dataset",
    "zoopipe_hpc.display",
    "zoopipe_hpc.jobs",
    "zoopipe_hpc.manager",
    "zoopipe_hpc.engines.multiprocess",
    "zoopipe_hpc.engines.slurm.engine",
    "zoopipe_hpc.engines.slurm._packed",
    "zoopipe_hpc.engines.slurm._claims",
    "zoopipe_hpc.adapters.parquet",
    "zoopipe_hpc.adapters.json",
)

_LIST_MODULES = """
import json, runpy, sys
sys.argv = ["zoopipe_hpc.engines.slurm", *sys.argv[1:]]
code = 0
if len(sys.argv) > 1:
    try:
        runpy.run_module("zoopipe_hpc.engines.slurm", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code
else:
    import zoopipe_hpc.engines.slurm.task  # noqa: F401
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


class Item(BaseModel):
    id: int


def _modules(*argv: str, cwd: Path) -> tuple[int, set[str]]:
    done = subprocess.run(
        [sys.executable, "-P", "-c", _LIST_MODULES, *argv],
        cwd=cwd,
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
            "SLURM_ARRAY_JOB_ID": "3",
            "SLURM_ARRAY_TASK_ID": "0",
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    answer = json.loads(done.stdout.splitlines()[-1])
    return answer["code"], set(answer["modules"])


def _loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if n in modules)


def test_importing_the_task_entry_point_loads_nothing_of_a_pipe(tmp_path: Path) -> None:
    code, modules = _modules(cwd=tmp_path)
    assert code == 0
    assert _loaded(modules, (*HEAVY, "pyarrow", "pydantic", "zoopipe_hpc.pipe")) == []


def test_a_csv_shard_loads_only_what_it_uses(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text("id\n7\n", encoding="utf-8")
    job = tmp_path / "job"
    job.mkdir(mode=0o700)
    (job / "progress").mkdir(mode=0o700)
    store = PayloadStore(job)
    store.create()
    pipe = Pipe(CSVInputAdapter(source), CSVOutputAdapter(tmp_path / "out.csv"), Item)
    store.dump("shard-00000", pipe)
    code, modules = _modules(str(job), "--shards", "0", cwd=tmp_path)
    assert code == 0
    assert (tmp_path / "out.csv").read_text(encoding="utf-8").splitlines() == ['"id"', "7"]
    assert _loaded(modules, HEAVY) == []
    assert {"pyarrow.csv", "pydantic", "zoopipe_hpc.adapters.csv"} <= modules


def test_every_lazily_exported_name_resolves_to_its_defining_object() -> None:
    import importlib

    for package in (
        "zoopipe_hpc",
        "zoopipe_hpc.adapters",
        "zoopipe_hpc.engines",
        "zoopipe_hpc.engines.slurm",
        "zoopipe_hpc.testing",
    ):
        module = importlib.import_module(package)
        for name in module.__all__:
            value = getattr(module, name)
            assert vars(module)[name] is value and name in dir(module), (package, name)
            if str(getattr(value, "__module__", "")).startswith("zoopipe_hpc"):  # not an alias
                assert value.__name__ == name, (package, name)
