"""The single-file merge against the dataset layout: what committing a sharded Parquet output
costs, in one invocation, on the same input and machine.

    python benchmarks/parquet_layouts.py                   # 4,000,000 rows, 4 shards
    python benchmarks/parquet_layouts.py --rows 200000     # quick
    python benchmarks/parquet_layouts.py --workers 8 --repeat 3 --json out.json

One pipe (CSV -> Parquet, the 4-field ``Person`` model of ``_common.py``) is split into
``--workers`` shards with ``PipeManager.parallelize_pipe`` and run twice per repetition, in a
fresh child process each: once into ``ParquetOutputAdapter(path)`` (``layout="file"``: the
commit merges the parts into one file, re-encoding every row group in the committing process)
and once into ``ParquetOutputAdapter(path, layout="dataset")`` (the commit links the parts into
a version folder and swaps a symbolic link; no row is read). For each it reports:

* **run s / run CPU s**: ``manager.run()``, wall clock and CPU seconds of the child and all of
  its workers (user + system, ``getrusage`` of the child and its children);
* **commit s / commit CPU s**: ``Transaction.commit`` alone (prepare, record, publish), wall
  clock and CPU seconds of the committing process: what a login node or a commit job pays;
* the ratio of each against the file layout measured in the same run, and the output's size.

``--outputs compressed`` measures CSV outputs the same way instead: ``people.csv`` (the
baseline), ``.csv.gz``, ``.csv.bz2``, ``.csv.xz`` (at level 1) and ``.csv.zst``, whose shards
compress their own parts and whose commit concatenates the parts' frames (no row decompressed):
what compressing costs the workers, and that the commit stays a copy of bytes.

Nothing is asserted; the figures describe the machine they were taken on.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    DEFAULT_DATA_DIR,
    ensure_people_csv,
    environment,
    fmt_ratio,
    format_table,
    ratio,
    run_child,
    warm_file,
)

__all__ = ["COMPRESSED", "LAYOUTS", "main", "measure"]

LAYOUTS = ("file", "dataset")
#: The CSV outputs of ``--outputs compressed``, the plain file first (the baseline).
#: ``:N`` is a compression level: xz at its default level 6 took 120x the plain file's time
#: here (about 0.7 MB/s a core), so the set measures ``xz -1``.
COMPRESSED = ("csv", "csv.gz", "csv.bz2", "csv.xz:1", "csv.zst")
SETS = {"layouts": LAYOUTS, "compressed": COMPRESSED}


def _times(value: float | None) -> str:
    """A ratio with three decimals: the dataset commit is a small fraction of the merge."""
    return "n/a" if value is None else f"{value:.3f}x"


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _child(layout: str, source: Path, out: Path, workers: int) -> dict[str, Any]:
    """One run (in this fresh process): times of the run and of its commit."""
    from _common import Person

    from zoopipe_hpc import (
        CSVInputAdapter,
        CSVOutputAdapter,
        ParquetOutputAdapter,
        Pipe,
        PipeManager,
    )
    from zoopipe_hpc.commit.transaction import Transaction

    commit = Transaction.commit
    timed: dict[str, float] = {}

    def timed_commit(self: Transaction, outcomes: Any) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            commit(self, outcomes)
        finally:
            timed["commit_s"] = time.perf_counter() - wall
            timed["commit_cpu_s"] = time.process_time() - cpu

    Transaction.commit = timed_commit  # type: ignore[method-assign]
    adapter: Any
    if layout in COMPRESSED:
        suffix, _, level = layout.partition(":")
        target = out / f"people.{suffix}"
        adapter = CSVOutputAdapter(target, compression_level=int(level) if level else None)
    else:
        target = out / ("people.parquet" if layout == "file" else "people")
        adapter = ParquetOutputAdapter(target, layout=layout)
    pipe = Pipe(CSVInputAdapter(source), adapter, Person)
    manager = PipeManager.parallelize_pipe(pipe, workers=workers)
    wall, cpu = time.perf_counter(), _cpu_seconds()
    ok = manager.run()
    run_s, run_cpu_s = time.perf_counter() - wall, _cpu_seconds() - cpu
    if not ok:
        raise SystemExit(f"the {layout} run failed: {manager.error}")
    real = Path(os.path.realpath(target))
    files = [real] if real.is_file() else sorted(real.iterdir())
    return {
        "layout": layout,
        "run_s": run_s,
        "run_cpu_s": run_cpu_s,
        **timed,
        "files": len(files),
        "bytes": sum(f.stat().st_size for f in files),
    }


def measure(source: Path, workers: int, layout: str) -> dict[str, Any]:
    """Run one layout in a fresh child process; its figures."""
    out = Path(tempfile.mkdtemp(prefix=f"zoopipe-bench-{layout}-"))
    try:
        argv = [sys.executable, __file__, "--child", layout, "--csv", str(source)]
        argv += ["--out", str(out), "--workers", str(workers)]
        result = run_child(argv, timeout=3600)
        if result.returncode != 0:
            raise SystemExit(f"the {layout} child failed ({result.returncode}): {result.stderr}")
        figures: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
        return figures
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--outputs", choices=sorted(SETS), default="layouts", help="Parquet layouts or CSV codecs"
    )
    parser.add_argument("--child", choices=LAYOUTS + COMPRESSED, help=argparse.SUPPRESS)
    parser.add_argument("--csv", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child, args.csv, args.out, args.workers)))
        return 0
    source = ensure_people_csv(args.rows, args.data_dir)
    warm_file(source)
    variants = SETS[args.outputs]
    runs = [measure(source, args.workers, v) for _ in range(args.repeat) for v in variants]
    best = {
        layout: {
            key: min(r[key] for r in runs if r["layout"] == layout)
            for key in ("run_s", "run_cpu_s", "commit_s", "commit_cpu_s")
        }
        | {k: runs[variants.index(layout)][k] for k in ("files", "bytes")}
        for layout in variants
    }
    base = best[variants[0]]
    rows = []
    for layout in variants:
        b = best[layout]
        rows.append(
            [
                layout,
                f"{b['run_s']:.2f}",
                fmt_ratio(ratio(b["run_s"], base["run_s"])),
                f"{b['run_cpu_s']:.2f}",
                fmt_ratio(ratio(b["run_cpu_s"], base["run_cpu_s"])),
                f"{b['commit_s']:.3f}",
                _times(ratio(b["commit_s"], base["commit_s"])),
                f"{b['commit_cpu_s']:.3f}",
                _times(ratio(b["commit_cpu_s"], base["commit_cpu_s"])),
                b["files"],
                f"{b['bytes'] / (1 << 20):.1f}",
            ]
        )
    against = f"x {variants[0]}"
    headers = ["output", "run s", against, "run CPU s", against, "commit s", against]
    headers += ["commit CPU s", against, "files", "MiB"]
    print(f"{args.rows:,} rows, {args.workers} shards, best of {args.repeat}")
    print(format_table(headers, rows))
    if args.json is not None:
        document = {"rows": args.rows, "workers": args.workers, "runs": runs, "best": best}
        args.json.write_text(json.dumps(document | {"environment": environment()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
