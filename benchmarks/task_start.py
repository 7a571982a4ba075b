"""What one Slurm array task pays before and while it runs a tiny shard: Python start-up and
imports, measured without a cluster.

    python benchmarks/task_start.py                       # 15 runs of each case
    python benchmarks/task_start.py --compare /work/main  # the same cases with another checkout
    python benchmarks/task_start.py --quick --json out.json

Every case is a fresh process started as a task starts (``python -P``, a clean environment with
only the checkout under test on PYTHONPATH), timed from spawn to exit, median of ``--repeat``:

* ``python -c pass`` and ``python -c "import pyarrow, pydantic"``: the baselines;
* ``python -P -m zoopipe_hpc.engines.slurm --help``: the entry point's start-up and imports;
* a real shard: ``python -P -u -m zoopipe_hpc.engines.slurm <job folder> --shards 0`` with
  ``SLURM_ARRAY_TASK_ID=0`` on a one-row CSV -> CSV pipe, its payload written beforehand by the
  same checkout (what ``SlurmEngine.start`` writes).

Each figure is printed as a ratio against ``python -c pass`` and against the pyarrow + pydantic
import, measured in the same invocation.

A second table is the submission side: writing ``--payloads`` payloads of one pipe whose model
lives in a neighbour module subclassing a second one (``PayloadStore.dump``, as
``SlurmEngine.start`` does per shard), in ms per payload, against ``cloudpickle.dumps`` of the
same pipe with only the model's module by value (what the payloads held before issue 12), in
the same process. ``--compare <checkout>`` measures the task cases and the payloads for another
checkout too (say, the main branch before a change). Nothing here asserts a time; see
``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402 - needs the path above when run as a script
    environment,
    fmt_ratio,
    format_table,
    progress,
    ratio,
    write_results,
)

HERE = Path(__file__).resolve().parents[1]

#: Writes shard 0's payload of a one-row CSV -> CSV pipe into a new job folder (argv[1]).
_SETUP = """
import sys
from pathlib import Path

from pydantic import BaseModel

from zoopipe_hpc import CSVInputAdapter, CSVOutputAdapter, Pipe
from zoopipe_hpc.engines.slurm._payload import PayloadStore


class Item(BaseModel):
    id: int


job = Path(sys.argv[1])
job.mkdir(mode=0o700)
(job / "progress").mkdir(mode=0o700)
(job.parent / "in.csv").write_text("id\\n1\\n")
store = PayloadStore(job)
store.create()
pipe = Pipe(CSVInputAdapter(job.parent / "in.csv"), CSVOutputAdapter(job.parent / "out.csv"), Item)
store.dump("shard-00000", pipe)
"""


#: Times PayloadStore.dump against cloudpickle.dumps for a pipe of a neighbour-module model.
_PACK = """
import json, sys, time
from pathlib import Path

project = Path(sys.argv[1])
project.mkdir(mode=0o700)
(project / "textutil.py").write_text("def clean(v):\\n    return v.strip()\\n")
(project / "base.py").write_text(
    "from pydantic import BaseModel, field_validator\\nfrom textutil import clean\\n"
    "class Base(BaseModel):\\n    name: str\\n"
    "    @field_validator('name')\\n    @classmethod\\n    def _c(cls, v):\\n"
    "        return clean(v)\\n"
)
(project / "models.py").write_text("from base import Base\\nclass User(Base):\\n    id: int\\n")
sys.path.insert(0, str(project))

import cloudpickle
from models import User
from zoopipe_hpc import CSVInputAdapter, CSVOutputAdapter, Pipe
from zoopipe_hpc.engines.slurm._payload import PayloadStore

count = int(sys.argv[3])
job = Path(sys.argv[2])
job.mkdir(mode=0o700)
store = PayloadStore(job)
store.create()
pipe = Pipe(CSVInputAdapter(project / "in.csv"), CSVOutputAdapter(project / "out.csv"), User)
cloudpickle.register_pickle_by_value(sys.modules["models"])
start = time.perf_counter()
for i in range(count):
    cloudpickle.dumps(pipe)
bare = (time.perf_counter() - start) / count
cloudpickle.unregister_pickle_by_value(sys.modules["models"])
start = time.perf_counter()
for i in range(count):
    store.dump(f"shard-{i:05d}", pipe)
dump = (time.perf_counter() - start) / count
size = store.path("shard-00000").stat().st_size
print(json.dumps({"cloudpickle_s": bare, "dump_s": dump, "bytes": size}))
"""


def measure_payloads(checkout: Path, count: int, work: Path) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="pack-", dir=work))
    done = subprocess.run(
        [sys.executable, "-c", _PACK, str(folder / "project"), str(folder / "job"), str(count)],
        env=_env(checkout),
        cwd=folder,
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    figures: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    figures.update(checkout=str(checkout), payloads=count)
    figures["vs_cloudpickle"] = ratio(figures["dump_s"], figures["cloudpickle_s"])
    progress(f"payloads [{checkout}]: {figures['dump_s'] * 1000:.1f} ms each")
    return figures


def _env(checkout: Path | None, **extra: str) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/")}
    if checkout is not None:
        env["PYTHONPATH"] = str(checkout)
    env.update(extra)
    return env


def _time(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, cwd=cwd, check=True, capture_output=True, timeout=300)
    return time.perf_counter() - start


def measure(
    name: str, checkout: Path | None, argv: list[str], repeat: int, cwd: Path, shard: bool
) -> dict[str, Any]:
    times = []
    for i in range(repeat):
        # A shard run gets a new array job id each time: a new attempt, a new progress record.
        extra = {"SLURM_ARRAY_JOB_ID": str(1000 + i), "SLURM_ARRAY_TASK_ID": "0"} if shard else {}
        times.append(_time(argv, _env(checkout, **extra), cwd))
    label = "" if checkout is None else str(checkout)
    progress(f"{name} [{label or 'python'}]: median {statistics.median(times):.3f} s")
    return {
        "case": name,
        "checkout": label,
        "median_s": statistics.median(times),
        "min_s": min(times),
        "runs": repeat,
    }


def run_cases(checkout: Path, repeat: int, work: Path) -> list[dict[str, Any]]:
    folder = Path(tempfile.mkdtemp(prefix="task-", dir=work))
    job = folder / "job"
    subprocess.run(
        [sys.executable, "-c", _SETUP, str(job)],
        env=_env(checkout),
        cwd=folder,
        check=True,
        capture_output=True,
        timeout=120,
    )
    task = [sys.executable, "-P", "-u", "-m", "zoopipe_hpc.engines.slurm"]
    results = [
        measure("entry point --help", checkout, [*task, "--help"], repeat, folder, False),
        measure(
            "one-row CSV shard", checkout, [*task, str(job), "--shards", "0"], repeat, folder, True
        ),
    ]
    if (folder / "out.csv").read_text().split() != ['"id"', "1"]:
        raise SystemExit(f"the shard run of {checkout} did not write its one row")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="3 runs of each case")
    parser.add_argument("--compare", type=Path, help="another checkout, measured the same way")
    parser.add_argument("--payloads", type=int, default=200, help="payloads written per checkout")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args(argv)
    repeat = 3 if args.quick else args.repeat
    with tempfile.TemporaryDirectory(prefix="zoopipe-task-start-") as tmp:
        work = Path(tmp)
        results = [
            measure("python -c pass", None, [sys.executable, "-c", "pass"], repeat, work, False),
            measure(
                "import pyarrow, pydantic",
                None,
                [sys.executable, "-c", "import pyarrow, pydantic"],
                repeat,
                work,
                False,
            ),
        ]
        checkouts = [HERE] + ([args.compare.resolve()] if args.compare else [])
        for checkout in checkouts:
            results.extend(run_cases(checkout, repeat, work))
        payloads = 20 if args.quick else args.payloads
        packing = [measure_payloads(checkout, payloads, work) for checkout in checkouts]
    bare, imports = results[0]["median_s"], results[1]["median_s"]
    for r in results:
        r["vs_python"] = ratio(r["median_s"], bare)
        r["vs_pyarrow_pydantic"] = ratio(r["median_s"], imports)
    rows = [
        [
            r["case"],
            r["checkout"] or "-",
            f"{r['median_s'] * 1000:.0f}",
            fmt_ratio(r["vs_python"]),
            fmt_ratio(r["vs_pyarrow_pydantic"]),
        ]
        for r in results
    ]
    headers = ["case", "checkout", "median ms", "vs python -c pass", "vs import pyarrow+pydantic"]
    print(format_table(headers, rows, align="llrrr"))
    print()
    rows = [
        [
            p["checkout"],
            f"{p['cloudpickle_s'] * 1000:.1f}",
            f"{p['dump_s'] * 1000:.1f}",
            fmt_ratio(p["vs_cloudpickle"]),
            f"{p['bytes']:,}",
        ]
        for p in packing
    ]
    headers = ["payloads of", "model by value ms", "PayloadStore.dump ms", "ratio", "bytes"]
    print(format_table(headers, rows, align="lrrrr"))
    if args.json:
        report = {"environment": environment(), "results": results, "payloads": packing}
        write_results(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
