"""Packed Slurm tasks against one task per shard, on this machine, without Slurm.

Both cases run the exact task command the Slurm engine submits
(``python -P -u -m zoopipe_hpc.engines.slurm <job folder> --shards ...``), as real processes
with ``SLURM_ARRAY_JOB_ID`` / ``SLURM_ARRAY_TASK_ID`` set by hand, over job folders written
with the engine's own payload store, for N one-row shards (each its own CSV and JSON Lines
file, a 1-field pydantic model):

* **one shard per task** (the baseline, today's default): N tasks, W of them at a time, as an
  array with ``--array=0-N%W`` on W free CPUs would run them: each pays Python's start-up and
  the imports of pyarrow and pydantic;
* **packed**: one task with ``--packed W`` (``SlurmEngine(max_tasks=1, workers_per_task=W)``)
  that claims the N shards one by one and runs W at a time in forked workers: start-up and
  imports are paid once.

Printed: the wall time of each, the ratio packed / baseline, and the cost per shard. Nothing is
asserted; the ratio is what compares across machines.

    python benchmarks/packed_tasks.py                 # 64 shards, 2 at a time
    python benchmarks/packed_tasks.py --shards 8 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

ROOT = Path(__file__).resolve().parents[1]


class Item(BaseModel):
    id: int


def prepare(folder: Path, shards: int) -> Path:
    """A job folder (0700) with one signed payload per one-row shard; returns it."""
    from zoopipe_hpc import CSVInputAdapter, JSONOutputAdapter, Pipe
    from zoopipe_hpc._private import Use, ensure_private_dir
    from zoopipe_hpc.engines.slurm._payload import PayloadStore
    from zoopipe_hpc.engines.slurm.task import shard_payload_name
    from zoopipe_hpc.errors import PayloadRefused

    use = Use(action="benchmark", risk="none", error=PayloadRefused)
    for path in (folder, folder / "progress", folder / "logs", folder / "data"):
        ensure_private_dir(path, "benchmark folder", use)
    store = PayloadStore(folder)
    store.create()
    for index in range(shards):
        source = folder / "data" / f"in-{index}.csv"
        source.write_text(f"id\n{index}\n")
        pipe = Pipe(
            CSVInputAdapter(source),
            JSONOutputAdapter(folder / "data" / f"out-{index}.jsonl"),
            Item,
        )
        store.dump(shard_payload_name(index), pipe)
    return folder


def task_command(folder: Path, shards: int, packed: int | None) -> list[str]:
    command = [sys.executable, "-P", "-u", "-m", "zoopipe_hpc.engines.slurm", str(folder)]
    command += ["--shards", f"0-{shards - 1}"]
    return command + (["--packed", str(packed)] if packed is not None else [])


def environment(job: str, task: int) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(ROOT), str(ROOT / "benchmarks")) if p)
    extra = os.environ.get("PYTHONPATH", "")
    return {
        **os.environ,
        "PYTHONPATH": f"{path}{os.pathsep}{extra}" if extra else path,
        "SLURM_ARRAY_JOB_ID": job,
        "SLURM_ARRAY_TASK_ID": str(task),
        "SLURM_RESTART_COUNT": "0",
    }


def one_per_task(folder: Path, shards: int, width: int, timeout: float) -> float:
    """N tasks, ``width`` at a time; returns the wall seconds."""
    command = task_command(folder, shards, None)
    started = time.perf_counter()
    running: list[subprocess.Popen[bytes]] = []
    for task in range(shards):
        while len(running) >= width:
            running[0].wait(timeout)
            running = [p for p in running if p.poll() is None]
        running.append(subprocess.Popen(command, env=environment("100", task)))
    for process in running:
        process.wait(timeout)
    return time.perf_counter() - started


def packed(folder: Path, shards: int, width: int, timeout: float) -> float:
    """One packed task of ``width`` workers; returns the wall seconds."""
    started = time.perf_counter()
    subprocess.run(
        task_command(folder, shards, width), env=environment("200", 0), timeout=timeout, check=True
    )
    return time.perf_counter() - started


def rows_written(folder: Path, shards: int) -> int:
    total = 0
    for index in range(shards):
        target = folder / "data" / f"out-{index}.jsonl"
        total += sum(1 for line in target.read_text().splitlines() if line.strip())
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", type=int, default=64, help="one-row shards (default 64)")
    parser.add_argument("--workers", type=int, default=2, help="shards at a time (default 2)")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"shards": args.shards, "workers": args.workers}
    with tempfile.TemporaryDirectory(prefix="zoopipe-packed-bench-") as scratch:
        for name, run in (("one shard per task", one_per_task), ("packed", packed)):
            folder = prepare(Path(scratch) / name.replace(" ", "-"), args.shards)
            seconds = run(folder, args.shards, args.workers, args.timeout)
            rows = rows_written(folder, args.shards)
            results[name] = {"seconds": seconds, "rows": rows, "ok": rows == args.shards}
    baseline, pack = results["one shard per task"], results["packed"]
    results["packed_vs_one_per_task"] = pack["seconds"] / baseline["seconds"]
    print(f"{args.shards} one-row shards, {args.workers} at a time, on {os.cpu_count()} CPUs")
    for name in ("one shard per task", "packed"):
        r = results[name]
        per_shard = r["seconds"] / args.shards * 1000
        print(
            f"  {name:<20} {r['seconds']:7.2f} s  {per_shard:7.1f} ms per shard  "
            f"rows {r['rows']}/{args.shards}"
        )
    print(f"  packed / one shard per task: {results['packed_vs_one_per_task']:.3f}x wall time")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    return 0 if baseline["ok"] and pack["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
