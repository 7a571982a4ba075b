"""What each engine costs for the same work: one invocation, the same files, the same machine.

    python benchmarks/engines.py                    # 1M rows / 4 shards; 200k rows / 64 shards
    python benchmarks/engines.py --quick            # small sizes (the smoke test)
    python benchmarks/engines.py --slurm            # also SlurmEngine on the local cluster
    python benchmarks/engines.py --engines multiprocess,pool --json out.json

Two workloads, both ``PipeManager.parallelize_pipe(pipe, workers=SHARDS, engine=...)`` of a
CSV -> Parquet pipe validating the 4-field ``Person`` model (``_common.py``):

* **few big shards**: a 1,000,000-row people CSV split into 4 shards; the work dominates;
* **many small pipes**: a 200,000-row people CSV split into 64 shards (about 3,000 rows each);
  what an engine pays per pipe (a process, a task, a child interpreter) dominates.

Engines (``--engines``, default ``multiprocess,pool,ray,dask``):

* ``multiprocess``: ``MultiProcessEngine(max_workers=P)``, the baseline of every ratio;
* ``pool``: ``ZooParallelPoolEngine(n_workers=P)``;
* ``ray``: ``RayEngine(init_kwargs={"num_cpus": P})``, a local Ray instance it starts;
* ``dask``: ``DaskEngine(n_workers=P)``, a ``LocalCluster`` it starts;
* ``slurm``: ``SlurmEngine(array_parallelism=P, ...)`` on the Slurm cluster ``sinfo`` sees.
  Only when asked for (``--slurm`` or ``slurm`` in ``--engines``), never by default, even when
  ``sinfo`` answers: its times depend on the scheduler and on other users' jobs, and what the
  default invocation measures must not change with the machine it runs on. Asked for without
  a cluster that answers, its rows are reported as failed.

``P`` (``--parallel``, default the usable CPUs) is how many pipes each engine runs at once, so
every engine gets the same share of the machine.

Every measurement runs in a fresh child process (this script with ``--child``), started by
``_common.run_child``; the parent generates the data, reads the input once (page cache),
starts the children and prints the table. In the child, the clock covers
``manager.run()`` only: the engine's start (``ray.init``, the ``LocalCluster``), handing the
pipes over, the pipes, the merge and the atomic commit, all of which users pay. Imports of
zoopipe_hpc and of the scheduler's library (ray, distributed) come before it. The engine's
``shutdown()`` (``ray.shutdown()``, closing the ``LocalCluster``) is timed separately after it.

What the memory columns cover:

* **peak MiB**: the measuring child's own peak RSS (``VmHWM``), or the largest peak of any one
  process it reaped, whichever is larger (``_common.peak_rss_self``). It is the maximum of
  single processes, not a sum. For ``multiprocess`` and ``pool`` the reaped workers are the
  pipes' processes. Ray's and Dask's processes (gcs_server, raylet, Ray workers; the Dask
  scheduler runs in the child, its nannies and workers are processes) and each task's child
  process that runs the pipe are reaped by the child or its descendants after ``shutdown()``,
  so their peaks count too, but only as "the largest single process". Slurm tasks run under
  slurmd, not under the child: for ``slurm`` this is the submitting process only.
* **tree MiB**: the largest *sum* of the RSS of the child and all its descendants, sampled every
  0.2 s with psutil while ``run()`` runs. Ray's and Dask's own processes show here. Shared
  pages (Ray's object store, forked copy-on-write pages) are counted once per process, so the
  sum overstates what the processes use together. A short-lived process can fall between
  two samples.

Nothing here asserts a time: the figures are ratios against ``MultiProcessEngine`` measured in
the same invocation, on the same files. A run that fails, or commits a number of rows other
than its input's, is reported as failed and not timed. See ``docs/engines.md`` ("Measured").
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402 - needs the path above when run as a script
    DEFAULT_DATA_DIR,
    DEFAULT_SEED,
    Person,
    count_csv_records,
    ensure_people_csv,
    environment,
    fmt_int,
    fmt_mib,
    fmt_rate,
    fmt_ratio,
    format_table,
    peak_rss_self,
    progress,
    ratio,
    run_child,
    warm_file,
    write_child_report,
    write_results,
)

MULTIPROCESS = "multiprocess"
POOL = "pool"
RAY = "ray"
DASK = "dask"
SLURM = "slurm"
ENGINES = (MULTIPROCESS, POOL, RAY, DASK, SLURM)
DEFAULT_ENGINES = (MULTIPROCESS, POOL, RAY, DASK)
BASELINE = MULTIPROCESS
ENGINE_LABEL = {
    MULTIPROCESS: "MultiProcessEngine",
    POOL: "ZooParallelPoolEngine",
    RAY: "RayEngine",
    DASK: "DaskEngine",
    SLURM: "SlurmEngine",
}

BIG = "few big shards"
SMALL = "many small pipes"
WORKLOADS = (BIG, SMALL)
DEFAULT_ROWS = (1_000_000, 200_000)
DEFAULT_SHARDS = (4, 64)
QUICK_ROWS = (20_000, 4_000)
QUICK_SHARDS = (4, 8)

#: What every Slurm task asks for (the local cluster's nodes have 4000 MB each).
SLURM_TIME = "00:20:00"
SLURM_MEM = "1G"
SLURM_POLL = 0.5
#: Seconds between two samples of the process tree's RSS.
SAMPLE_INTERVAL = 0.2


# ==============================================================================================
# Child side: one measurement, in a process of its own
# ==============================================================================================


class TreeSampler:
    """Samples the summed RSS of this process and all its descendants, in a thread."""

    def __init__(self, interval: float = SAMPLE_INTERVAL) -> None:
        self.interval = interval
        self.peak_bytes: int | None = None
        self.peak_processes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self, me: Any, psutil: Any) -> None:
        total = 0
        count = 0
        try:
            processes = [me, *me.children(recursive=True)]
        except psutil.Error:
            return
        for process in processes:
            try:
                total += process.memory_info().rss
                count += 1
            except psutil.Error:
                continue  # ended between the listing and the look
        if self.peak_bytes is None or total > self.peak_bytes:
            self.peak_bytes = total
        self.peak_processes = max(self.peak_processes, count)

    def _loop(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.is_set():
            self._sample(me, psutil)
            self._stop.wait(self.interval)
        self._sample(me, psutil)

    def __enter__(self) -> TreeSampler:
        try:
            import psutil  # noqa: F401
        except ImportError:
            return self  # no sampler: the column is n/a
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def make_engine(args: argparse.Namespace, work: Path) -> Any:
    name, parallel = args.engine, args.parallel
    if name == MULTIPROCESS:
        from zoopipe_hpc.engines import MultiProcessEngine

        return MultiProcessEngine(max_workers=parallel)
    if name == POOL:
        from zoopipe_hpc.engines import ZooParallelPoolEngine

        return ZooParallelPoolEngine(n_workers=parallel)
    if name == RAY:
        from zoopipe_hpc.engines.ray import RayEngine

        return RayEngine(init_kwargs={"num_cpus": parallel})
    if name == DASK:
        from zoopipe_hpc.engines.dask import DaskEngine

        return DaskEngine(n_workers=parallel)
    if name == SLURM:
        from zoopipe_hpc.engines.slurm import SlurmEngine

        return SlurmEngine(
            folder=work / "jobs",
            time=SLURM_TIME,
            mem=SLURM_MEM,
            array_parallelism=parallel,
            poll_interval=SLURM_POLL,
            job_name=args.job_name,
        )
    raise ValueError(f"unknown engine {name!r}")


def _import_scheduler(name: str) -> None:
    """The scheduler's library, imported before the clock starts (as zoopipe_hpc is)."""
    if name == RAY:
        import ray  # noqa: F401
    elif name == DASK:
        import distributed  # noqa: F401


def _time_method(obj: Any, method: str, marks: dict[str, float], key: str) -> None:
    """Wrap ``obj.method`` on this one instance to add the seconds each call takes to ``key``."""
    original = getattr(obj, method)

    def timed(*a: Any, **kw: Any) -> Any:
        began = time.perf_counter()
        try:
            return original(*a, **kw)
        finally:
            marks[key] = marks.get(key, 0.0) + time.perf_counter() - began

    setattr(obj, method, timed)


def child_main(args: argparse.Namespace) -> int:
    report: dict[str, Any] = {"engine": args.engine, "shards": args.shards, "pid": os.getpid()}
    engine = None
    try:
        import pyarrow.parquet as pq

        import zoopipe_hpc as zh

        _import_scheduler(args.engine)
        source = Path(args.input).resolve()
        work = Path(args.out_dir).resolve()
        target = work / "out.parquet"
        engine = make_engine(args, work)
        pipe = zh.Pipe(
            input_adapter=zh.CSVInputAdapter(source),
            output_adapter=zh.ParquetOutputAdapter(target),
            schema_model=Person,
        )
        manager = zh.PipeManager.parallelize_pipe(pipe, workers=args.shards, engine=engine)
        marks: dict[str, float] = {}
        _time_method(engine, "start", marks, "start_seconds")
        if args.engine in (RAY, DASK):
            # ray.init / LocalCluster + Client: the scheduler's own start, inside start().
            _time_method(engine, "_connect", marks, "init_seconds")
        report["startup_rss_bytes"] = peak_rss_self()

        with TreeSampler() as sampler:
            began = time.perf_counter()
            ok = manager.run(timeout=args.run_timeout, progress=False)
            seconds = time.perf_counter() - began
        began = time.perf_counter()
        engine.shutdown()
        shutdown_seconds = time.perf_counter() - began
        engine = None
        report.update(marks)
        report["shutdown_seconds"] = shutdown_seconds
        report["tree_peak_rss_bytes"] = sampler.peak_bytes
        report["tree_peak_processes"] = sampler.peak_processes
        if not ok:
            raise RuntimeError(f"PipeManager.run() failed: {manager.error}")
        per_pipe = [r.total_processed for r in manager.pipe_reports]
        report["seconds"] = seconds
        report["success"] = manager.report.success_count
        report["errors"] = manager.report.error_count
        report["rows_per_pipe_min"] = min(per_pipe)
        report["rows_per_pipe_max"] = max(per_pipe)
        report["pipes"] = len(per_pipe)
        report["hosts"] = sorted({r.host for r in manager.pipe_reports if r.host})
        if target.exists():
            with pq.ParquetFile(target) as f:
                report["output_rows"] = int(f.metadata.num_rows)
        else:
            report["output_rows"] = None
        report["error"] = None
    except BaseException as exc:  # noqa: BLE001 - the parent reports it
        report["error"] = f"{type(exc).__name__}: {exc}"
        report["traceback"] = traceback.format_exc()
        if engine is not None:
            try:
                engine.shutdown()
            except Exception:  # noqa: BLE001 - the first failure is the one to report
                pass
        write_child_report(report)
        return 1
    write_child_report(report)
    return 0


# ==============================================================================================
# Parent side: data, children, the table
# ==============================================================================================


def slurm_problem() -> str | None:
    """Why Slurm cannot be used from here, or None when ``sinfo`` lists a usable node."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "Slurm is not installed here (no sinfo/sbatch on PATH)"
    try:
        out = subprocess.run(
            ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=15, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"sinfo did not answer: {exc}"
    if out.returncode != 0:
        return f"sinfo failed: {(out.stderr or out.stdout).strip()}"
    states = [s.strip().rstrip("*~#") for s in out.stdout.split()]
    if not any(s in ("idle", "mixed", "allocated", "completing") for s in states):
        return f"no usable Slurm node (states: {', '.join(states) or 'none'})"
    return None


def measure(
    engine: str,
    workload: str,
    rows: int,
    shards: int,
    source: Path,
    work_dir: Path,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """One run of ``engine`` on ``workload`` in a fresh child; a flat dict of what happened."""
    work = Path(tempfile.mkdtemp(prefix=f"{engine}-{shards}-", dir=work_dir))
    job_name = f"zpbench-{uuid.uuid4().hex[:10]}"
    argv = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        "--engine",
        engine,
        "--shards",
        str(shards),
        "--input",
        str(source),
        "--out-dir",
        str(work),
        "--parallel",
        str(args.parallel),
        "--job-name",
        job_name,
        "--run-timeout",
        str(max(30.0, args.timeout - 30.0)),
    ]
    try:
        child = run_child(argv, timeout=args.timeout, cwd=work)
    finally:
        if engine == SLURM and shutil.which("scancel"):
            # A child that failed or was killed may leave tasks behind: only this job name.
            subprocess.run(["scancel", "--name", job_name], capture_output=True, check=False)
        shutil.rmtree(work, ignore_errors=True)
    report = child.report or {}
    result = _result(engine, workload, rows, shards, args)
    result.update({key: report.get(key) for key in _FROM_CHILD_REPORT})
    result["peak_rss_bytes"] = child.peak_rss_bytes
    result["child_wall_seconds"] = child.wall_seconds
    if not child.ok or report.get("error"):
        result["error"] = child.describe_failure()
        if child.stderr.strip():
            result["stderr_tail"] = "\n".join(child.stderr.strip().splitlines()[-15:])
        if report.get("traceback"):
            result["traceback"] = report["traceback"]
        return result
    problems = []
    if report.get("success") != rows:
        problems.append(f"validated {report.get('success')} of {rows:,} rows")
    if report.get("errors"):
        problems.append(f"{report['errors']:,} invalid rows (none expected)")
    if report.get("output_rows") != rows:
        problems.append(f"committed {report.get('output_rows')} of {rows:,} rows")
    if report.get("pipes") != shards:
        problems.append(f"{report.get('pipes')} pipes for {shards} shards")
    if problems:
        result["error"] = "CHECK FAILED: " + "; ".join(problems)
        return result
    result["seconds"] = report["seconds"]
    result["rows_per_s"] = rows / report["seconds"] if report["seconds"] > 0 else None
    result["ok"] = True
    return result


def fastest(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest successful repeat (peak RSS: the largest seen over the successful ones)."""
    good = [r for r in results if r["ok"]]
    best = dict(min(good, key=lambda r: r["seconds"]) if good else results[-1])
    for key in ("peak_rss_bytes", "tree_peak_rss_bytes"):
        peaks = [r[key] for r in good if r.get(key)]
        if peaks:
            best[key] = max(peaks)
    best["repeats"] = [{k: r.get(k) for k in ("seconds", "ok", "error")} for r in results]
    return best


def describe(r: dict[str, Any]) -> str:
    if not r["ok"]:
        return f"FAILED: {r['error']}"
    text = f"{r['seconds']:.2f} s, {r['rows_per_s']:,.0f} rows/s"
    if r.get("init_seconds") is not None:
        text += f" (engine init {r['init_seconds']:.2f} s)"
    return text + f", peak RSS {fmt_mib(r['peak_rss_bytes'])} MiB"


def _parse_pair(text: str | None, default: tuple[int, int], what: str) -> tuple[int, int]:
    if text is None:
        return default
    values = [int(x.strip().replace("_", "")) for x in text.split(",") if x.strip()]
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 1:
        raise SystemExit(f"--{what} takes one or two positive numbers (big,small), got {text!r}")
    return values[0], values[1]


def _usable_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def parent_main(args: argparse.Namespace) -> int:
    began = time.perf_counter()
    rows_pair = _parse_pair(args.rows, QUICK_ROWS if args.quick else DEFAULT_ROWS, "rows")
    shards_pair = _parse_pair(args.shards, QUICK_SHARDS if args.quick else DEFAULT_SHARDS, "shards")
    engines = [e.strip() for e in (args.engines or ",".join(DEFAULT_ENGINES)).split(",")]
    engines = [e for e in engines if e]
    unknown = [e for e in engines if e not in ENGINES]
    if unknown:
        raise SystemExit(f"--engines takes some of {','.join(ENGINES)}; unknown: {unknown}")
    if args.slurm and SLURM not in engines:
        engines.append(SLURM)
    if BASELINE not in engines:
        engines.insert(0, BASELINE)  # every ratio needs it
    engines = sorted(dict.fromkeys(engines), key=ENGINES.index)
    if args.parallel is None:
        args.parallel = _usable_cpus()
    if args.timeout is None:
        args.timeout = 300.0 if args.quick else 1800.0
    slurm_note = slurm_problem() if SLURM in engines else None
    if slurm_note:
        progress(f"NOTE: {slurm_note}; the Slurm rows are reported as failed")

    data_dir = Path(args.data_dir).resolve()
    sources: dict[int, Path] = {}
    for n in sorted(set(rows_pair)):
        sources[n] = ensure_people_csv(n, data_dir, seed=args.seed)
        counted = count_csv_records(sources[n])
        if counted != n:
            raise SystemExit(f"{sources[n]} holds {counted} records, expected {n}: delete it")
    workloads = [
        (BIG, rows_pair[0], shards_pair[0]),
        (SMALL, rows_pair[1], shards_pair[1]),
    ]

    work_dir = Path(tempfile.mkdtemp(prefix="engines-", dir=data_dir))
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    try:
        for repeat in range(args.repeat):
            for workload, rows, shards in workloads:
                for engine in engines:
                    tag = f"[{repeat + 1}/{args.repeat}] " if args.repeat > 1 else ""
                    progress(
                        f"{tag}{workload}: {ENGINE_LABEL[engine]}, {rows:,} rows in "
                        f"{shards} shards, {args.parallel} at a time ..."
                    )
                    if engine == SLURM and slurm_note:
                        result = _not_run(engine, workload, rows, shards, args, slurm_note)
                    else:
                        warm_file(sources[rows])
                        result = measure(
                            engine, workload, rows, shards, sources[rows], work_dir, args
                        )
                    progress(f"    {describe(result)}")
                    runs.setdefault((workload, engine), []).append(result)
    finally:
        if not args.keep:
            shutil.rmtree(work_dir, ignore_errors=True)

    measurements = [fastest(runs[(w, e)]) for w, _, _ in workloads for e in engines]
    for workload, _, _ in workloads:
        base = next(
            r for r in measurements if r["workload"] == workload and r["engine"] == BASELINE
        )
        for r in measurements:
            if r["workload"] != workload:
                continue
            ok = r["ok"] and base["ok"]
            r["wall_vs_multiprocess"] = ratio(r["seconds"], base["seconds"]) if ok else None
            r["rate_vs_multiprocess"] = ratio(r["rows_per_s"], base["rows_per_s"]) if ok else None
    committed = {r["output_rows"] for r in measurements if r["ok"]}
    results = {
        "benchmark": "engines",
        "quick": bool(args.quick),
        "engines": engines,
        "baseline": BASELINE,
        "parallel": args.parallel,
        "repeat": args.repeat,
        "seed": args.seed,
        "workloads": [{"name": w, "rows": n, "shards": s} for w, n, s in workloads],
        "inputs": {str(n): str(p) for n, p in sources.items()},
        "slurm": {
            "asked": SLURM in engines,
            "problem": slurm_note,
            "time": SLURM_TIME,
            "mem": SLURM_MEM,
            "poll_interval": SLURM_POLL,
        },
        "same_rows_everywhere": all(
            len({r["output_rows"] for r in measurements if r["ok"] and r["workload"] == w}) <= 1
            for w, _, _ in workloads
        ),
        "committed_row_counts": sorted(c for c in committed if c is not None),
        "environment": environment(),
        "load_average_after": _loadavg(),
        "measurements": measurements,
        "total_seconds": time.perf_counter() - began,
    }
    print_report(results)
    if args.json:
        write_results(args.json, results)
    failed = [r for r in measurements if not r["ok"]]
    if failed:
        print(f"\n{len(failed)} measurement(s) FAILED, see above.", file=sys.stderr)
        return 1
    return 0


# What the measuring child reports about itself, copied into its result as they are.
_FROM_CHILD_REPORT = (
    "start_seconds",
    "init_seconds",
    "shutdown_seconds",
    "startup_rss_bytes",
    "tree_peak_rss_bytes",
    "tree_peak_processes",
    "success",
    "errors",
    "output_rows",
    "pipes",
    "rows_per_pipe_min",
    "rows_per_pipe_max",
    "hosts",
)


def _result(
    engine: str, workload: str, rows: int, shards: int, args: argparse.Namespace
) -> dict[str, Any]:
    """One measurement's record before anything is known: what was asked, every figure None."""
    result: dict[str, Any] = {
        "engine": engine,
        "label": ENGINE_LABEL[engine],
        "workload": workload,
        "rows": rows,
        "shards": shards,
        "parallel": args.parallel,
        "seconds": None,
        "rows_per_s": None,
        "peak_rss_bytes": None,
        "child_wall_seconds": None,
        "ok": False,
        "error": None,
    }
    result.update(dict.fromkeys(_FROM_CHILD_REPORT))
    return result


def _not_run(
    engine: str, workload: str, rows: int, shards: int, args: argparse.Namespace, why: str
) -> dict[str, Any]:
    result = _result(engine, workload, rows, shards, args)
    result["error"] = f"not run: {why}"
    return result


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _s(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def print_report(results: dict[str, Any]) -> None:
    env = results["environment"]
    versions = ", ".join(f"{k} {v or 'not installed'}" for k, v in env["versions"].items())
    extra = []
    for name in ("ray", "distributed"):
        try:
            from importlib import metadata

            extra.append(f"{name} {metadata.version(name)}")
        except Exception:  # noqa: BLE001 - informational only
            extra.append(f"{name} not installed")
    cpus = env["usable_cpus"] or env["cpu_count"]
    memory = f", {env['memory_bytes'] / (1 << 30):.0f} GiB" if env.get("memory_bytes") else ""
    print()
    print("engines: the same CSV -> Parquet work (4-field pydantic model) through each engine")
    print(f"machine: {cpus} CPUs{memory}, Python {env['python']}, {env['platform']}")
    print(f"versions: {versions}, {', '.join(extra)}")
    print(
        f"every engine runs {results['parallel']} pipes at a time; baseline: "
        f"{ENGINE_LABEL[results['baseline']]}(max_workers={results['parallel']}), "
        "same invocation, same files"
    )
    slurm = results["slurm"]
    if slurm["asked"]:
        print(
            f"SlurmEngine: --time={slurm['time']} --mem={slurm['mem']}, "
            f"array_parallelism={results['parallel']}, poll_interval={slurm['poll_interval']}"
            + (f"; NOT RUN: {slurm['problem']}" if slurm["problem"] else "")
        )
    print()
    table = []
    notes = []
    for r in results["measurements"]:
        head = [r["workload"], f"{r['rows']:,}", r["shards"], r["label"]]
        if not r["ok"]:
            table.append(head + ["FAILED"] + [""] * 7 + [fmt_mib(r.get("peak_rss_bytes"))])
            notes.append(f"{r['workload']}, {r['label']}: FAILED: {r['error']}")
            continue
        table.append(
            head
            + [
                _s(r["seconds"]),
                fmt_ratio(r["wall_vs_multiprocess"]),
                fmt_rate(r["rows_per_s"]),
                _s(r.get("start_seconds")),
                _s(r.get("init_seconds")),
                _s(r.get("shutdown_seconds")),
                fmt_int(r["output_rows"]),
                fmt_mib(r.get("tree_peak_rss_bytes")),
                fmt_mib(r.get("peak_rss_bytes")),
            ]
        )
    print(
        format_table(
            [
                "workload",
                "rows",
                "shards",
                "engine",
                "run() s",
                "vs MP",
                "rows/s",
                "start() s",
                "init s",
                "shutdown s",
                "committed",
                "tree MiB",
                "peak MiB",
            ],
            table,
            align="lrrlrrrrrrrrr",
        )
    )
    for note in notes:
        print(f"  * {note}")
    print()
    print("  run() s: wall time of manager.run(), engine start, merge and commit included")
    print("  vs MP: run() time / MultiProcessEngine's run() time on the same workload (>1: slower)")
    print("  start() s: inside engine.start(), until every pipe was handed over (part of run())")
    print("  init s: ray.init / LocalCluster + Client, inside start() (Ray and Dask only)")
    print("  shutdown s: engine.shutdown() after run() (ray.shutdown, closing the LocalCluster)")
    print("  committed: rows in the committed Parquet file (checked against the input's rows)")
    print("  tree MiB: largest sampled sum of RSS over the measuring process and its descendants")
    print("  peak MiB: largest peak RSS of a single process: the measuring one or one it reaped")
    same = "yes" if results["same_rows_everywhere"] else "NO"
    print(f"\nevery successful run of a workload committed the same rows: {same}")
    print(f"total benchmark time: {results['total_seconds']:.1f} s")


# ==============================================================================================


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="What each engine costs for the same work (CSV -> Parquet, sharded)."
    )
    parser.add_argument(
        "--rows",
        default=None,
        metavar="BIG[,SMALL]",
        help="input rows of the two workloads (default "
        f"{DEFAULT_ROWS[0]},{DEFAULT_ROWS[1]}; {QUICK_ROWS[0]},{QUICK_ROWS[1]} with --quick)",
    )
    parser.add_argument(
        "--shards",
        default=None,
        metavar="BIG[,SMALL]",
        help="shards (pipes) of the two workloads (default "
        f"{DEFAULT_SHARDS[0]},{DEFAULT_SHARDS[1]}; "
        f"{QUICK_SHARDS[0]},{QUICK_SHARDS[1]} with --quick)",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, for the smoke test")
    parser.add_argument(
        "--engines",
        default=None,
        help=f"comma-separated, some of {','.join(ENGINES)} (default "
        f"{','.join(DEFAULT_ENGINES)}); multiprocess, the baseline, is always run",
    )
    parser.add_argument(
        "--slurm", action="store_true", help="add SlurmEngine (needs a Slurm cluster)"
    )
    parser.add_argument(
        "--parallel",
        type=int,
        default=None,
        help="pipes each engine runs at once (default: the usable CPUs)",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="run every case this many times, keep the fastest"
    )
    parser.add_argument("--json", default=None, metavar="OUT", help="also write results here")
    parser.add_argument(
        "--data-dir",
        default=str(DEFAULT_DATA_DIR),
        help="where inputs are cached and outputs written; Slurm nodes must see it "
        "(default benchmarks/.data)",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="data generator seed")
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds before one measurement is killed (default 1800; 300 with --quick)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    # Child mode (internal).
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--engine", choices=ENGINES, help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--out-dir", help=argparse.SUPPRESS)
    parser.add_argument("--job-name", default="zpbench", help=argparse.SUPPRESS)
    parser.add_argument("--run-timeout", type=float, default=1770.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.parallel is not None and args.parallel < 1:
        parser.error("--parallel must be at least 1")
    if args.child:
        args.shards = int(args.shards)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args)
    return parent_main(args)


if __name__ == "__main__":
    sys.exit(main())
