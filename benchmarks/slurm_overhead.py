"""What SlurmEngine costs on top of a plain ``sbatch --array``, and how many Slurm calls it makes.

    python benchmarks/slurm_overhead.py                 # 100-task comparison; 10/100/1000 shards
    python benchmarks/slurm_overhead.py --quick         # 20-task comparison; 10/30 shards
    python benchmarks/slurm_overhead.py --counts 10,100 --json out.json

Needs a Slurm cluster (``scripts/slurm-cluster up`` starts the local one). In one invocation:

1. **Overhead.** ``PipeManager.parallelize_pipe(pipe, workers=N, engine=SlurmEngine(...)).run()``
   on a CSV of N one-row shards (a 1-field pydantic model), against ``sbatch --wait
   --array=0-(N-1)`` of a trivial batch script that starts the same interpreter
   (``sys.executable``) on a tiny script which reads its byte range of the same CSV and writes
   it to a part file. Two more baselines take the same script importing first what an engine
   task loads (the entry point, the pipe, the CSV and JSON adapters; ``import zoopipe_hpc``
   alone is lazy and loads nothing),
   directly and through ``srun`` (as submitit's job script starts its tasks), so the ratio can
   be split into interpreter/import cost and the engine's own machinery.
2. **Slurm calls.** ``engine.slurm_calls()`` after runs of 10, 100, 1,000 and 10,000 shards
   (from ``--pack-from`` shards on, packed: ``max_tasks=--pack-tasks``): one sbatch per array,
   and state queries within the request budget whatever the shard count: the peak in any
   60 s window and the sustained rate after the first minute, from the time of every call; the
   coordinator's CPU seconds, peak RSS and time per poll (``engine._look``, which
   ``pipe_reports``, ``is_running`` and ``report`` go through), which should stay flat in the
   shard count.

``--max-tasks K`` packs every engine run (the overhead comparison too): ``--tasks 1000
--max-tasks 6`` measures the makespan of 1,000 one-row shards on packed tasks against the
plain array.

Every measurement runs in a fresh child process (this script with ``--child``), started by
``_common.run_child``; the parent waits for an empty queue before each one, and afterwards
lists the jobs of other users that ran during it. Nothing here asserts a time. See
``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402 - needs the path above when run as a script
    DEFAULT_DATA_DIR,
    environment,
    fmt_ratio,
    format_table,
    progress,
    ratio,
    run_child,
    write_child_report,
    write_results,
)


class Item(BaseModel):
    """The 1-field model of every shard (defined in ``__main__``: pickled by value)."""

    id: int


ENGINE = "engine"
SBATCH = "sbatch"
#: Baseline variants: (name, import zoopipe_hpc first, start through srun).
BASELINES: dict[str, tuple[bool, bool]] = {
    "plain": (False, False),
    "import": (True, False),
    "srun+import": (True, True),
}
BASELINE_LABEL = {
    "plain": "plain sbatch --wait",
    "import": "  + import zoopipe_hpc",
    "srun+import": "  + srun + import",
}
ENGINE_LABEL = "SlurmEngine run()"
HEADLINE = "plain"
SLURM_TOOLS = ("sbatch", "sacct", "squeue", "scontrol", "scancel")

DEFAULT_TASKS = 100
DEFAULT_COUNTS = (10, 100, 1000, 10000)
#: Shard counts from which the Slurm-call table packs the shards (MaxJobCount-sized runs).
DEFAULT_PACK_FROM = 10000
DEFAULT_PACK_TASKS = 6
QUICK_TASKS = 20
QUICK_COUNTS = (10, 30)
DEFAULT_SETTLE = 300.0
QUICK_SETTLE = 20.0

TIME = "00:05:00"
TIME_MINUTES = 5
MEM = "200M"
ID_WIDTH = 7

#: The baseline task: the same interpreter reads its byte range of the CSV and writes it out.
TASK_SCRIPT = '''\
"""One task of the plain sbatch baseline: copy this task's byte range of the CSV to a part."""
import os
import sys

if "--import" in sys.argv:
    # What an engine task of this run loads (``import zoopipe_hpc`` alone loads nothing now).
    import zoopipe_hpc.adapters.csv  # noqa: F401
    import zoopipe_hpc.adapters.json  # noqa: F401
    import zoopipe_hpc.engines.slurm.task  # noqa: F401
    import zoopipe_hpc.pipe  # noqa: F401

task = int(os.environ["SLURM_ARRAY_TASK_ID"])
source, ranges, out = sys.argv[1:4]
with open(ranges, encoding="ascii") as f:
    start, end = (int(x) for x in f.read().split("\\n")[task].split())
with open(source, "rb") as f:
    f.seek(start)
    data = f.read(end - start)
part = os.path.join(out, f"part-{task:05d}.csv")
with open(part + ".tmp", "wb") as f:
    f.write(data)
os.replace(part + ".tmp", part)
'''


# ==============================================================================================
# Small helpers (both sides)
# ==============================================================================================


def _run(args: list[str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)


def write_input(path: Path, rows: int) -> list[tuple[int, int]]:
    """A CSV ``id`` with ``rows`` fixed-width rows and no final newline; each row's byte range.

    Without the final newline, every cut of an even split lands on the newline that ends a row,
    so ``parallelize_pipe(workers=rows)`` gives exactly one row per shard (with a final newline
    the cuts land on row starts and the splitter makes 2-row and empty shards alternately).
    """
    header = b"id\n"
    lines = [f"{i:0{ID_WIDTH}d}".encode() for i in range(rows)]
    path.write_bytes(header + b"\n".join(lines))
    ranges = []
    offset = len(header)
    for i, line in enumerate(lines):
        end = offset + len(line) + (1 if i < rows - 1 else 0)
        ranges.append((offset, end))
        offset = end
    return ranges


def parse_cpu(text: str) -> float | None:
    """sacct's TotalCPU (``[D-][HH:]MM:SS[.mmm]``) in seconds."""
    text = text.strip()
    if not text:
        return None
    days = 0
    if "-" in text:
        d, _, text = text.partition("-")
        days = int(d)
    parts = [float(p) for p in text.split(":")]
    seconds = 0.0
    for p in parts:
        seconds = seconds * 60 + p
    return days * 86400 + seconds


def sacct_tasks(array_ids: list[str], expected: int, wait: float = 30.0) -> dict[str, Any]:
    """Per-task accounting of the given arrays (allocation rows): CPU, elapsed, nodes, states.

    slurmdbd records the last tasks a moment after they end: ask again until ``expected`` tasks
    have ended, for at most ``wait`` seconds. Outside the engine's SlurmCLI, so not counted.
    """
    deadline = time.monotonic() + wait
    rows: list[list[str]] = []
    while True:
        out = _run(
            [
                "sacct",
                "-j",
                ",".join(array_ids),
                "--noheader",
                "--parsable2",
                "--format=JobID,State,ElapsedRaw,TotalCPU,NodeList,End",
            ]
        )
        rows = [
            line.split("|")
            for line in out.stdout.splitlines()
            if line.strip() and "." not in line.split("|")[0]
        ]
        done = [r for r in rows if len(r) >= 6 and r[5] not in ("", "Unknown")]
        if len(done) >= expected or time.monotonic() >= deadline:
            break
        time.sleep(1.0)
    cpu = [c for c in (parse_cpu(r[3]) for r in rows if len(r) >= 6) if c is not None]
    elapsed = [int(r[2]) for r in rows if len(r) >= 6 and r[2].isdigit()]
    states: dict[str, int] = {}
    nodes: dict[str, int] = {}
    for r in rows:
        if len(r) >= 6:
            state = r[1].split()[0]
            states[state] = states.get(state, 0) + 1
            nodes[r[4]] = nodes.get(r[4], 0) + 1
    return {
        "tasks_in_sacct": len(rows),
        "task_cpu_seconds_mean": sum(cpu) / len(cpu) if cpu else None,
        "task_cpu_seconds_total": sum(cpu) if cpu else None,
        "task_elapsed_seconds_mean": sum(elapsed) / len(elapsed) if elapsed else None,
        "task_states": states,
        "task_nodes": nodes,
    }


def _cpu_times() -> tuple[float, float]:
    """(own user+sys CPU, reaped children's user+sys CPU) of this process, in seconds."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


# ==============================================================================================
# Child side: one measurement, in a process of its own
# ==============================================================================================


STATE_TOOLS = ("sacct", "squeue")


def query_rates(times: list[float], start: float, end: float) -> tuple[int, float | None]:
    """(most state queries in any 60 s window, queries a minute after the first minute)."""
    times = sorted(times)
    peak, low = 0, 0
    for high, t in enumerate(times):
        while t - times[low] >= 60.0:
            low += 1
        peak = max(peak, high - low + 1)
    later = [t for t in times if t >= start + 60.0]
    rest = end - (start + 60.0)
    return peak, (len(later) / rest * 60.0 if rest >= 60.0 else None)


def _peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def percentile(values: list[float], share: float) -> float | None:
    """The value below which ``share`` of ``values`` lie (nearest rank); None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def cpu_split(
    began: float, ended: float, marks: dict[str, float], poll_cpu: list[float], shards: int
) -> dict[str, Any]:
    """The driver's CPU seconds during run() split into start (plan, payloads, sbatch), the
    polls (the sum of each poll's own CPU), the rest of the wait (sleeping, the loop) and the
    commit (merge and publish, after the wait); the CPU of one poll (median, p95) and the
    polls' CPU per shard settled."""
    started = marks.get("submitted_cpu", began)
    waited = marks.get("waited_cpu", ended)
    polling = sum(poll_cpu)
    return {
        "start_cpu_seconds": started - began,
        "poll_cpu_seconds": polling,
        "wait_other_cpu_seconds": (waited - started) - polling,
        "commit_cpu_seconds": ended - waited,
        "poll_cpu_ms_median": _ms(percentile(poll_cpu, 0.5)),
        "poll_cpu_ms_p95": _ms(percentile(poll_cpu, 0.95)),
        "poll_cpu_ms_per_shard": polling / shards * 1000 if shards else None,
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def child_engine(args: argparse.Namespace, report: dict[str, Any]) -> None:
    import zoopipe_hpc as zh
    from zoopipe_hpc.engines.slurm import SlurmCLI, SlurmEngine

    calls_at: list[tuple[float, str]] = []

    class TimedCLI(SlurmCLI):
        """The engine's door to Slurm, noting when each command ran (its single-attempt
        view for state queries is a copy: it shares this list)."""

        def run(self, args: Any, *, check: bool = True) -> str:
            calls_at.append((time.time(), str(args[0])))
            return super().run(args, check=check)

    work = Path(args.work).resolve()
    source = work / "input.csv"
    target = work / "out.jsonl"
    n = args.shards
    write_input(source, n)
    packing: dict[str, int] = {}
    if args.max_tasks:
        packing["max_tasks"] = args.max_tasks
        if args.workers_per_task:
            packing["workers_per_task"] = args.workers_per_task
    engine = SlurmEngine(
        folder=work / "jobs",
        time=TIME,
        mem=MEM,
        poll_interval=args.poll_interval,
        job_name=args.job_name,
        cli=TimedCLI(),
        **packing,
    )
    poll_seconds: list[float] = []
    poll_cpu: list[float] = []
    look = engine._look  # one poll: pipe_reports, is_running and report all go through it

    def timed_look() -> Any:
        began, cpu = time.perf_counter(), time.process_time()
        try:
            return look()
        finally:
            poll_cpu.append(time.process_time() - cpu)
            poll_seconds.append(time.perf_counter() - began)

    engine._look = timed_look  # type: ignore[method-assign]
    pipe = zh.Pipe(
        input_adapter=zh.CSVInputAdapter(source),
        output_adapter=zh.JSONOutputAdapter(target, format="jsonl"),
        schema_model=Item,
    )
    manager = zh.PipeManager.parallelize_pipe(pipe, workers=n, engine=engine)

    # Timestamps (and this process's CPU time) at the engine's public steps, taken by thin
    # wrappers on this one instance: run() = start (plan, payloads, sbatch), wait (the polls
    # and the sleeps between them), then the merge and commit.
    marks: dict[str, float] = {}
    start, wait = engine.start, engine.wait

    def timed_start(pipes: Any) -> None:
        try:
            start(pipes)
        finally:
            marks["submitted"] = time.time()
            marks["submitted_cpu"] = time.process_time()

    def timed_wait(timeout: float | None = None) -> bool:
        done = wait(timeout)
        marks["waited"] = time.time()
        marks["waited_cpu"] = time.process_time()
        return done

    engine.start = timed_start  # type: ignore[method-assign]
    engine.wait = timed_wait  # type: ignore[method-assign]

    own0, kids0 = _cpu_times()
    cpu0 = time.process_time()
    t0 = time.time()
    began = time.perf_counter()
    ok = manager.run(timeout=args.run_timeout)
    seconds = time.perf_counter() - began
    t_end = time.time()
    cpu1 = time.process_time()
    own1, kids1 = _cpu_times()

    reports = manager.pipe_reports
    arrays = sorted({r.extra["slurm_job_id"].split("_")[0] for r in reports if r.extra})
    report["array_ids"] = arrays
    report["arrays"] = len(arrays)
    report["slurm_calls"] = engine.slurm_calls()
    report["ok_run"] = ok
    queries = [t for t, tool in calls_at if tool in STATE_TOOLS]
    peak, sustained = query_rates(queries, t0, t_end)
    polls = sorted(poll_seconds)
    report.update(
        {
            "packed_tasks": args.max_tasks or None,
            "queries_peak_per_minute": peak,
            "queries_sustained_per_minute": sustained,
            "polls": len(polls),
            "poll_ms_median": polls[len(polls) // 2] * 1000 if polls else None,
            "poll_ms_max": polls[-1] * 1000 if polls else None,
            "driver_peak_rss_mib": _peak_rss_mib(),
            **cpu_split(cpu0, cpu1, marks, poll_cpu, n),
        }
    )
    if not ok:
        raise RuntimeError(f"PipeManager.run() failed: {manager.error}")
    ends = [r.end_timestamp for r in reports if r.end_timestamp is not None]
    last_end = max(ends) if ends else None
    per_shard = [r.total_processed for r in reports]
    lines = target.read_bytes().count(b"\n") if target.exists() else None
    report.update(
        {
            "seconds": seconds,
            "submit_seconds": marks.get("submitted", t0) - t0,
            "makespan_seconds": (last_end - t0) if last_end else None,
            "tail_seconds": (t_end - last_end) if last_end else None,
            "detect_seconds": (marks["waited"] - last_end)
            if last_end and "waited" in marks
            else None,
            "commit_seconds": (t_end - marks["waited"]) if "waited" in marks else None,
            "driver_cpu_seconds": own1 - own0,
            "driver_cpu_ms_per_poll_whole_run": (own1 - own0) / len(poll_seconds) * 1000
            if poll_seconds
            else None,
            "slurm_commands_cpu_seconds": kids1 - kids0,
            "success": manager.report.success_count,
            "errors": manager.report.error_count,
            "rows_per_shard_min": min(per_shard),
            "rows_per_shard_max": max(per_shard),
            "output_rows": lines,
            "nodes": sorted({r.host for r in reports if r.host}),
            "started_at": t0,
            "ended_at": t_end,
        }
    )
    report.update(sacct_tasks(arrays, n))
    problems = []
    if report["success"] != n:
        problems.append(f"validated {report['success']} of {n} rows")
    if lines != n:
        problems.append(f"wrote {lines} of {n} rows")
    if problems:
        raise RuntimeError("CHECK FAILED: " + "; ".join(problems))


def child_sbatch(args: argparse.Namespace, report: dict[str, Any]) -> None:
    work = Path(args.work).resolve()
    source = work / "input.csv"
    n = args.shards
    ranges = write_input(source, n)
    ranges_path = work / "ranges.txt"
    ranges_path.write_text("\n".join(f"{a} {b}" for a, b in ranges), encoding="ascii")
    task_path = work / "task.py"
    task_path.write_text(TASK_SCRIPT, encoding="utf-8")
    out = work / "parts"
    out.mkdir()
    logs = work / "logs"
    logs.mkdir()
    with_import, with_srun = BASELINES[args.variant]
    command = " ".join(
        shlex.quote(str(a))
        for a in [sys.executable, task_path, source, ranges_path, out]
        + (["--import"] if with_import else [])
    )
    launcher = "srun --unbuffered " if with_srun else "exec "
    script = work / "baseline.sh"
    script.write_text(
        "#!/bin/bash\n"
        f"#SBATCH --job-name={args.job_name}\n"
        f"#SBATCH --time={TIME_MINUTES}\n"
        f"#SBATCH --mem={MEM}\n"
        "#SBATCH --cpus-per-task=1\n"
        "#SBATCH --nodes=1\n"
        f"#SBATCH --output={logs}/%A_%a.out\n"
        f"{launcher}{command}\n",
        encoding="utf-8",
    )
    argv = ["sbatch", "--wait", "--parsable", f"--array=0-{n - 1}", str(script)]
    report["command"] = " ".join(argv)
    report["job_script"] = script.read_text(encoding="utf-8")
    t0 = time.time()
    began = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    first = proc.stdout.readline()  # sbatch --parsable prints the id at once, then waits
    submitted = time.time()
    stdout, stderr = proc.communicate(timeout=args.run_timeout)
    seconds = time.perf_counter() - began
    t_end = time.time()
    job_id = first.strip().split(";")[0]
    report["array_ids"] = [job_id] if job_id else []
    report["arrays"] = 1 if job_id else 0
    report["slurm_calls"] = {"sbatch": 1}
    report["sbatch_returncode"] = proc.returncode
    if proc.returncode != 0 or not job_id.isdigit():
        raise RuntimeError(
            f"sbatch --wait exited {proc.returncode}: {(stderr or stdout or first).strip()}"
        )
    parts = sorted(out.glob("part-*.csv"))
    last_end = max((p.stat().st_mtime for p in parts), default=None)
    report.update(
        {
            "seconds": seconds,
            "submit_seconds": submitted - t0,
            "makespan_seconds": (last_end - t0) if last_end else None,
            "tail_seconds": (t_end - last_end) if last_end else None,
            "detect_seconds": (t_end - last_end) if last_end else None,
            "commit_seconds": 0.0,
            "output_rows": len(parts),
            "started_at": t0,
            "ended_at": t_end,
        }
    )
    report.update(sacct_tasks([job_id], n))
    copied = b"".join(p.read_bytes() for p in parts)
    if len(parts) != n or copied != source.read_bytes()[len(b"id\n") :]:
        raise RuntimeError(f"CHECK FAILED: {len(parts)} of {n} parts, or their bytes differ")


def child_main(args: argparse.Namespace) -> int:
    report: dict[str, Any] = {
        "kind": args.kind,
        "variant": args.variant,
        "shards": args.shards,
        "pid": os.getpid(),
        "job_name": args.job_name,
    }
    try:
        if args.kind == ENGINE:
            import zoopipe_hpc  # noqa: F401 - imported before the clock starts

            child_engine(args, report)
        else:
            child_sbatch(args, report)
        report["error"] = None
    except BaseException as exc:  # noqa: BLE001 - the parent reports it
        report["error"] = f"{type(exc).__name__}: {exc}"
        report["traceback"] = traceback.format_exc()
        write_child_report(report)
        return 1
    write_child_report(report)
    return 0


# ==============================================================================================
# Parent side: cluster facts, children, tables
# ==============================================================================================


def cluster_facts() -> dict[str, Any]:
    facts: dict[str, Any] = {}
    version = _run(["sinfo", "-V"])
    facts["slurm_version"] = version.stdout.strip() or None
    nodes = _run(["sinfo", "-h", "-N", "-o", "%N|%c|%m|%P|%T|%n"])
    node_rows: dict[str, dict[str, Any]] = {}
    for line in nodes.stdout.splitlines():
        parts = line.split("|")
        if len(parts) == 6:
            name, cpus, mem, partition, state, host = parts
            row = node_rows.setdefault(
                name,
                {
                    "cpus": int(cpus),
                    "memory_mb": int(mem),
                    "partitions": [],
                    "state": state,
                    "host": host,
                },
            )
            row["partitions"].append(partition)
    facts["nodes"] = node_rows
    facts["total_cpus"] = sum(r["cpus"] for r in node_rows.values())
    hosts = {r["host"] for r in node_rows.values()}
    facts["nodes_on_this_machine"] = bool(hosts) and hosts <= {
        socket.gethostname(),
        socket.getfqdn(),
        "localhost",
    }
    config = _run(["scontrol", "show", "config"]).stdout
    for key in (
        "MaxArraySize",
        "SchedulerType",
        "SchedulerParameters",
        "SelectTypeParameters",
        "MinJobAge",
        "AccountingStorageType",
    ):
        match = re.search(rf"^{key}\s*=\s*(.*)$", config, re.MULTILINE)
        facts[key] = match.group(1).strip() if match else None
    return facts


def queue_jobs() -> list[str]:
    out = _run(["squeue", "-h", "-o", "%i|%u|%j|%T"])
    return [line for line in out.stdout.splitlines() if line.strip()]


def wait_for_empty_queue(limit: float) -> list[str]:
    """Wait (at most ``limit`` s) until no job is queued or running; what is left, if any."""
    deadline = time.monotonic() + limit
    jobs = queue_jobs()
    announced = False
    while jobs and time.monotonic() < deadline:
        if not announced:
            progress(f"    waiting for {len(jobs)} queued job(s) of others to finish ...")
            announced = True
        time.sleep(2.0)
        jobs = queue_jobs()
    return jobs


def foreign_jobs(started: float, ended: float, ours: list[str]) -> list[str]:
    """Jobs (not ours) queued or running at some moment between ``started`` and ``ended``."""
    fmt = "%Y-%m-%dT%H:%M:%S"
    out = _run(
        [
            "sacct",
            "-a",
            "-X",
            "--noheader",
            "--parsable2",
            "-S",
            datetime.fromtimestamp(started - 1).strftime(fmt),
            "-E",
            datetime.fromtimestamp(ended + 1).strftime(fmt),
            "--format=JobID,JobName,User,State,Submit,End",
        ]
    )
    lo, hi = int(started), int(ended) + 1  # sacct's times are whole seconds
    seen = []
    for line in out.stdout.splitlines():
        parts = line.split("|")
        if len(parts) < 6 or parts[0].split("_")[0] in ours:
            continue
        submit, end = _epoch(parts[4]), _epoch(parts[5])
        if submit is not None and submit >= hi:
            continue
        if end is not None and end <= lo:
            continue
        seen.append("|".join(parts[:4]))
    return seen


def _epoch(text: str) -> float | None:
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S").timestamp()
    except ValueError:
        return None  # Unknown, None: still running


def measure(
    kind: str,
    variant: str | None,
    shards: int,
    work_dir: Path,
    args: argparse.Namespace,
    max_tasks: int | None = None,
) -> dict[str, Any]:
    """One measurement in a fresh child (an engine run packed onto ``max_tasks`` tasks if
    given); a flat dict of what happened."""
    leftover = wait_for_empty_queue(args.settle)
    work = Path(tempfile.mkdtemp(prefix=f"{kind}-{variant or 'x'}-{shards}-", dir=work_dir))
    job_name = f"zpbench-{uuid.uuid4().hex[:10]}"
    argv = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        "--kind",
        kind,
        "--shards",
        str(shards),
        "--work",
        str(work),
        "--poll-interval",
        str(args.poll_interval),
        "--job-name",
        job_name,
        "--run-timeout",
        str(max(60.0, args.timeout - 60.0)),
    ]
    if variant:
        argv += ["--variant", variant]
    if kind == ENGINE and max_tasks:
        argv += ["--max-tasks", str(max_tasks)]
        if args.workers_per_task:
            argv += ["--workers-per-task", str(args.workers_per_task)]
    try:
        child = run_child(argv, timeout=args.timeout, cwd=work)
    finally:
        # A child that failed or was killed may leave tasks behind: cancel only this job name.
        _run(["scancel", "--name", job_name])
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report = child.report or {}
    result: dict[str, Any] = {
        "kind": kind,
        "variant": variant,
        "label": ENGINE_LABEL if kind == ENGINE else BASELINE_LABEL[variant or HEADLINE],
        "shards": shards,
        "child_wall_seconds": child.wall_seconds,
        "queue_before": leftover,
    }
    for key, value in report.items():
        if key not in ("traceback", "pid", "kind", "variant", "shards"):
            result[key] = value
    result["ok"] = child.ok and not report.get("error")
    if not result["ok"]:
        result["error"] = child.describe_failure()
        if child.stderr.strip():
            result["stderr_tail"] = "\n".join(child.stderr.strip().splitlines()[-15:])
        if report.get("traceback"):
            result["traceback"] = report["traceback"]
    if report.get("started_at") and report.get("ended_at"):
        result["foreign_jobs"] = foreign_jobs(
            report["started_at"], report["ended_at"], report.get("array_ids") or []
        )
    else:
        result["foreign_jobs"] = []
    calls = result.get("slurm_calls") or {}
    result["slurm_calls"] = {tool: int(calls.get(tool, 0)) for tool in SLURM_TOOLS}
    result["slurm_calls_total"] = sum(result["slurm_calls"].values())
    result["state_queries"] = result["slurm_calls"]["sacct"] + result["slurm_calls"]["squeue"]
    return result


def describe(r: dict[str, Any]) -> str:
    if not r["ok"]:
        return f"FAILED: {r['error']}"
    text = f"{r['seconds']:.2f} s (last task ended at {r['makespan_seconds']:.2f} s)"
    if r["kind"] == ENGINE:
        calls = ", ".join(f"{k} {v}" for k, v in r["slurm_calls"].items() if v)
        text += f", Slurm calls: {calls}"
    if r["foreign_jobs"]:
        text += f"; {len(r['foreign_jobs'])} job(s) of others queued or running meanwhile"
    return text


def fastest(results: list[dict[str, Any]]) -> dict[str, Any]:
    good = [r for r in results if r["ok"]]
    best = dict(min(good, key=lambda r: r["seconds"]) if good else results[-1])
    best["repeats"] = [
        {k: r.get(k) for k in ("seconds", "makespan_seconds", "ok", "error")} for r in results
    ]
    return best


def parent_main(args: argparse.Namespace) -> int:
    began = time.perf_counter()
    if shutil.which("sbatch") is None:
        print("sbatch is not on PATH: this benchmark needs a Slurm cluster", file=sys.stderr)
        return 2
    tasks = args.tasks or (QUICK_TASKS if args.quick else DEFAULT_TASKS)
    if args.counts:
        counts = tuple(sorted({int(x.replace("_", "")) for x in args.counts.split(",")}))
    else:
        counts = QUICK_COUNTS if args.quick else DEFAULT_COUNTS
    if min(counts) < 1 or tasks < 1:
        raise SystemExit("--tasks and --counts must be positive")
    if args.baselines is None:
        args.baselines = HEADLINE if args.quick else ",".join(BASELINES)
    if args.settle is None:
        args.settle = QUICK_SETTLE if args.quick else DEFAULT_SETTLE
    baselines = [b.strip() for b in args.baselines.split(",") if b.strip()]
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown or HEADLINE not in baselines:
        raise SystemExit(f"--baselines takes some of {list(BASELINES)}, including {HEADLINE!r}")

    cluster = cluster_facts()
    max_array = int(cluster.get("MaxArraySize") or 1001)
    if tasks > max_array - 1:
        raise SystemExit(f"--tasks {tasks}: a plain array holds at most {max_array - 1} tasks")
    data_dir = Path(args.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    work_dir = Path(tempfile.mkdtemp(prefix="slurm-overhead-", dir=data_dir))
    progress(f"work folder {work_dir} (on the filesystem the nodes share)")
    try:
        # -- 1. overhead: the engine and the plain baselines, interleaved ----------------------
        runs: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
        plan: list[tuple[str, str | None]] = [(SBATCH, b) for b in baselines] + [(ENGINE, None)]
        for repeat in range(args.repeat):
            for kind, variant in plan:
                tag = f"[{repeat + 1}/{args.repeat}] " if args.repeat > 1 else ""
                label = ENGINE_LABEL if kind == ENGINE else BASELINE_LABEL[variant or ""].strip()
                progress(f"{tag}{label}, {tasks} tasks ...")
                result = measure(kind, variant, tasks, work_dir, args, args.max_tasks)
                progress(f"    {describe(result)}")
                runs.setdefault((kind, variant), []).append(result)
        overhead = [fastest(runs[key]) for key in plan]
        base = next(r for r in overhead if r["variant"] == HEADLINE)
        for r in overhead:
            ok = r["ok"] and base["ok"]
            r["wall_vs_plain"] = ratio(r.get("seconds"), base.get("seconds")) if ok else None
            r["makespan_vs_plain"] = (
                ratio(r.get("makespan_seconds"), base.get("makespan_seconds")) if ok else None
            )
            r["task_cpu_vs_plain"] = (
                ratio(r.get("task_cpu_seconds_mean"), base.get("task_cpu_seconds_mean"))
                if ok
                else None
            )
        engine_row = overhead[-1]

        # -- 2. Slurm calls against the number of shards ----------------------------------------
        counts_rows: list[dict[str, Any]] = []
        for n in counts:
            packed = args.max_tasks or (args.pack_tasks if n >= args.pack_from else None)
            if n == tasks and engine_row["ok"] and packed == args.max_tasks:
                result = dict(engine_row)
                result["reused_from_overhead"] = True
            else:
                how = f", packed onto {packed} tasks" if packed else ""
                progress(f"Slurm calls: {ENGINE_LABEL}, {n} shards{how} ...")
                result = measure(ENGINE, None, n, work_dir, args, packed)
                result["reused_from_overhead"] = False
                progress(f"    {describe(result)}")
            result.pop("repeats", None)
            counts_rows.append(result)
        for r in counts_rows:
            r["calls_per_shard"] = r["slurm_calls_total"] / r["shards"] if r["ok"] else None
            seconds = r.get("seconds")
            r["state_queries_per_minute"] = (
                r["state_queries"] / seconds * 60 if r["ok"] and seconds else None
            )
            r["one_sbatch_per_array"] = bool(r["ok"] and r["slurm_calls"]["sbatch"] == r["arrays"])
    finally:
        if not args.keep:
            shutil.rmtree(work_dir, ignore_errors=True)

    results = {
        "benchmark": "slurm_overhead",
        "quick": bool(args.quick),
        "tasks": tasks,
        "counts": list(counts),
        "repeat": args.repeat,
        "poll_interval": args.poll_interval,
        "max_tasks": args.max_tasks,
        "pack_from": args.pack_from,
        "pack_tasks": args.pack_tasks,
        "slurm_parameters": {"time": TIME, "mem": MEM, "cpus_per_task": 1},
        "python": sys.executable,
        "baseline": {
            "headline": HEADLINE,
            "command": f"sbatch --wait --parsable --array=0-{tasks - 1} baseline.sh",
            "task": f"{sys.executable} task.py INPUT RANGES OUT: reads its byte range of the "
            "same CSV and writes it to a part file (stdlib only)",
            "variants": {
                name: {"import_zoopipe_hpc": imp, "srun": srun}
                for name, (imp, srun) in BASELINES.items()
                if name in baselines
            },
        },
        "ratio": engine_row.get("wall_vs_plain"),
        "makespan_ratio": engine_row.get("makespan_vs_plain"),
        "environment": environment(),
        "cluster": cluster,
        "overhead": overhead,
        "slurm_calls": counts_rows,
        "total_seconds": time.perf_counter() - began,
    }
    print_report(results)
    if args.json:
        write_results(args.json, results)
    failed = [r for r in overhead + counts_rows if not r["ok"]]
    if failed:
        print(f"\n{len(failed)} measurement(s) FAILED, see above.", file=sys.stderr)
        return 1
    return 0


def _f(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def print_report(results: dict[str, Any]) -> None:
    env = results["environment"]
    cluster = results["cluster"]
    nodes = cluster["nodes"]
    tasks = results["tasks"]
    node_text = ", ".join(
        f"{name} ({n['cpus']} CPUs, {n['memory_mb']} MB, {n['state']})"
        for name, n in sorted(nodes.items())
    )
    partitions = sorted({p for n in nodes.values() for p in n["partitions"]})
    print()
    print("slurm_overhead: SlurmEngine vs plain sbatch --array --wait, on the same cluster")
    print(
        f"machine: {env['usable_cpus'] or env['cpu_count']} CPUs, Python {env['python']}, "
        f"zoopipe_hpc {env['versions'].get('zoopipe_hpc')}, "
        f"pydantic {env['versions'].get('pydantic')}, pyarrow {env['versions'].get('pyarrow')}"
    )
    print(
        f"cluster: {cluster['slurm_version']}, {len(nodes)} nodes, "
        f"{cluster['total_cpus']} CPUs in all, partition(s) {', '.join(partitions)}; "
        f"MaxArraySize {cluster['MaxArraySize']}, {cluster['SchedulerType']} "
        f"({cluster['SchedulerParameters']}), accounting {cluster['AccountingStorageType']}"
    )
    print(f"nodes: {node_text}")
    if cluster.get("nodes_on_this_machine"):
        host_cpus = env["usable_cpus"] or env["cpu_count"]
        print(
            f"NOTE: every node is a slurmd on this one machine: {cluster['total_cpus']} Slurm CPUs "
            f"share its {host_cpus} CPUs, so concurrent tasks slow each other down"
        )
    print(
        f"every task asks for --time={TIME_MINUTES} --mem={MEM} --cpus-per-task=1; "
        f"SlurmEngine(time={TIME!r}, mem={MEM!r}, poll_interval={results['poll_interval']})"
    )
    print(f"interpreter (engine and baselines): {results['python']}")
    print()

    print(
        f"1. overhead: {tasks} one-row shards (a {tasks}-row CSV, 1-field pydantic model), "
        f"{cluster['total_cpus']} CPU slots"
    )
    print(f"   baseline: {results['baseline']['command']}; each task runs")
    print(f"     {results['baseline']['task']}")
    variants = results["baseline"]["variants"]
    if "import" in variants:
        print(
            "   + import zoopipe_hpc: the same task script, importing first what an engine task"
            " loads (its entry point, the pipe, the CSV and JSON adapters)"
        )
    if "srun+import" in variants:
        print("   + srun + import: the same again, started through srun as submitit's script does")
    print(
        "   engine: PipeManager.parallelize_pipe(pipe, workers=N, engine=SlurmEngine(...)).run()"
        " (CSV -> JSON Lines, parts merged and committed)"
    )
    print()
    rows = []
    notes = []
    for r in results["overhead"]:
        if not r["ok"]:
            rows.append([r["label"], r["shards"]] + ["n/a"] * 10)
            notes.append(f"{r['label'].strip()}: FAILED: {r['error']}")
            continue
        rows.append(
            [
                r["label"],
                r["shards"],
                _f(r["seconds"]),
                fmt_ratio(r["wall_vs_plain"]),
                _f(r["makespan_seconds"]),
                fmt_ratio(r["makespan_vs_plain"]),
                _f(r["submit_seconds"]),
                _f(r["tail_seconds"]),
                _f(r.get("task_cpu_seconds_mean"), 3),
                fmt_ratio(r["task_cpu_vs_plain"]),
                _f(r.get("task_elapsed_seconds_mean"), 1),
                r["slurm_calls_total"],
            ]
        )
        if r["foreign_jobs"]:
            notes.append(
                f"{r['label'].strip()}: {len(r['foreign_jobs'])} job(s) of others queued or "
                "running meanwhile: the cluster was shared, the times are noisy"
            )
        if r.get("queue_before"):
            notes.append(
                f"{r['label'].strip()}: started with {len(r['queue_before'])} job(s) in the queue"
            )
    print(
        format_table(
            [
                "run",
                "tasks",
                "wall s",
                "vs plain",
                "makespan s",
                "vs plain",
                "submit s",
                "tail s",
                "task CPU s",
                "vs plain",
                "task s",
                "Slurm calls",
            ],
            rows,
            align="lrrrrrrrrrrr",
        )
    )
    for note in notes:
        print(f"  * {note}")
    engine = results["overhead"][-1]
    if engine["ok"]:
        print()
        print(
            f"SlurmEngine / plain sbatch: {fmt_ratio(results['ratio'])} wall time, "
            f"{fmt_ratio(results['makespan_ratio'])} makespan"
        )
        print(
            f"engine tail {_f(engine['tail_seconds'])} s = noticing the last task "
            f"{_f(engine.get('detect_seconds'))} s + merge and commit "
            f"{_f(engine.get('commit_seconds'))} s; shards held "
            f"{engine['rows_per_shard_min']}-{engine['rows_per_shard_max']} row(s) each; "
            f"tasks ran on {', '.join(engine.get('nodes') or [])}"
        )
    print()
    print("  wall s: from the call (run() / sbatch --wait) to its return, in the child process")
    print("  makespan s: from that call to the end of the last task (its own clock: the end time")
    print("    in its progress record / its part file's mtime); free of how each one waits")
    print("  submit s: until sbatch returned the array id (the engine first writes every payload)")
    print("  tail s: last task's end to the return; sbatch --wait polls at growing intervals")
    print("    (returns at about 2, 10, 42, 74 ... s), the engine every poll_interval + merge")
    print("  task CPU s: mean TotalCPU of a task from sacct (interpreter, imports, work)")
    print("  task s: mean elapsed time of a task from sacct (whole seconds)")

    print()
    print("2. Slurm commands run by the engine (engine.slurm_calls()) against the number of shards")
    print()
    rows = []
    notes = []
    for r in results["slurm_calls"]:
        c = r["slurm_calls"]
        if not r["ok"]:
            rows.append([r["shards"]] + ["n/a"] * 19)
            notes.append(f"{r['shards']} shards: FAILED: {r['error']}")
            continue
        rows.append(
            [
                r["shards"],
                r.get("packed_tasks") or "-",
                r["arrays"],
                c["sbatch"],
                c["sacct"],
                c["squeue"],
                c["scontrol"],
                c["scancel"],
                r["slurm_calls_total"],
                _f(r["seconds"], 1),
                r.get("queries_peak_per_minute", "n/a"),
                _f(r.get("queries_sustained_per_minute"), 1),
                _f(r.get("start_cpu_seconds")),
                _f(r.get("poll_cpu_seconds")),
                _f(r.get("commit_cpu_seconds")),
                r.get("polls", "n/a"),
                _f(r.get("poll_cpu_ms_median"), 2),
                _f(r.get("poll_cpu_ms_p95"), 2),
                _f(r.get("poll_cpu_ms_per_shard"), 3),
                _f(r.get("poll_ms_median"), 1),
                _f(r.get("driver_peak_rss_mib"), 0),
            ]
        )
        if r.get("reused_from_overhead"):
            notes.append(f"{r['shards']} shards: the engine run of part 1")
        if not r["one_sbatch_per_array"]:
            notes.append(f"{r['shards']} shards: {c['sbatch']} sbatch for {r['arrays']} array(s)")
        if r["foreign_jobs"]:
            notes.append(
                f"{r['shards']} shards: {len(r['foreign_jobs'])} job(s) of others queued or "
                "running meanwhile"
            )
    print(
        format_table(
            [
                "shards",
                "packed",
                "arrays",
                "sbatch",
                "sacct",
                "squeue",
                "scontrol",
                "scancel",
                "total",
                "wall s",
                "peak 60 s",
                "sustained/min",
                "start CPU s",
                "poll CPU s",
                "commit CPU s",
                "polls",
                "poll CPU ms",
                "p95",
                "ms/shard",
                "poll ms",
                "peak RSS MiB",
            ],
            rows,
        )
    )
    for note in notes:
        print(f"  * {note}")
    good = [r for r in results["slurm_calls"] if r["ok"]]
    if len(good) >= 2:
        small, large = good[0], good[-1]
        one_each = all(r["one_sbatch_per_array"] for r in good)
        print()
        print(
            f"from {small['shards']} to {large['shards']} shards "
            f"({large['shards'] / small['shards']:g}x): Slurm calls "
            f"{small['slurm_calls_total']} -> {large['slurm_calls_total']} "
            f"({fmt_ratio(ratio(large['slurm_calls_total'], small['slurm_calls_total']))}), "
            f"wall time {fmt_ratio(ratio(large['seconds'], small['seconds']))}; "
            f"sbatch per array: {'always 1' if one_each else 'NOT 1'}"
        )
    print()
    print("  packed: max_tasks of a packed run (- : one shard per array task)")
    print("  peak 60 s: the most state queries (sacct+squeue) in any 60 s window (the burst);")
    print("    sustained/min: their rate after the first minute (n/a for runs under two")
    print("    minutes). Target: at most 4 sustained.")
    print("  the submitting process's CPU during run(), split: start CPU s (plan, payloads,")
    print("    sbatch), poll CPU s (the sum of every poll's own CPU), commit CPU s (merge and")
    print("    publish); polls: how many; poll CPU ms, p95: one poll's CPU (median, 95th")
    print("    percentile; target: flat in the shards); ms/shard: poll CPU per shard settled;")
    print("    poll ms: one poll's wall time (median); peak RSS: the submitting process's")
    print()
    print(f"total benchmark time: {results['total_seconds']:.1f} s")


# ==============================================================================================


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="SlurmEngine's overhead over plain sbatch --array, and its Slurm calls."
    )
    parser.add_argument(
        "--tasks",
        type=int,
        default=None,
        help=f"tasks of the overhead comparison (default {DEFAULT_TASKS}; "
        f"{QUICK_TASKS} with --quick)",
    )
    parser.add_argument(
        "--counts",
        default=None,
        metavar="N,N,...",
        help="shard counts of the Slurm-call table (default "
        f"{','.join(map(str, DEFAULT_COUNTS))}; {','.join(map(str, QUICK_COUNTS))} with --quick)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"small sizes for a smoke test: {QUICK_TASKS} tasks, counts "
        f"{','.join(map(str, QUICK_COUNTS))}, the plain baseline only",
    )
    parser.add_argument(
        "--baselines",
        default=None,
        help=f"baseline variants to run (default all: {','.join(BASELINES)}; only "
        f"{HEADLINE!r} with --quick; {HEADLINE!r} is always required)",
    )
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=0.5,
        help="SlurmEngine poll_interval in seconds (default 0.5)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run every overhead case this many times (interleaved), keep the fastest",
    )
    parser.add_argument(
        "--max-tasks",
        type=int,
        default=None,
        help="pack every engine run onto at most this many array tasks (SlurmEngine max_tasks)",
    )
    parser.add_argument(
        "--workers-per-task",
        type=int,
        default=None,
        help="shards a packed task runs at once (default: the engine's)",
    )
    parser.add_argument(
        "--pack-from",
        type=int,
        default=DEFAULT_PACK_FROM,
        help=f"shard counts of the Slurm-call table from which runs are packed onto "
        f"--pack-tasks tasks (default {DEFAULT_PACK_FROM})",
    )
    parser.add_argument(
        "--pack-tasks",
        type=int,
        default=DEFAULT_PACK_TASKS,
        help=f"max_tasks of those packed runs (default {DEFAULT_PACK_TASKS})",
    )
    parser.add_argument("--json", default=None, metavar="OUT", help="also write results here")
    parser.add_argument(
        "--data-dir",
        default=str(DEFAULT_DATA_DIR),
        help="parent of the work folder; must be on a filesystem the nodes share "
        "(default benchmarks/.data)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=1800.0,
        help="seconds before one measurement is killed and its jobs cancelled (default 1800)",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=None,
        help=f"seconds to wait for an empty queue before each measurement "
        f"(default {DEFAULT_SETTLE:g}; {QUICK_SETTLE:g} with --quick)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    # Child mode (internal).
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--kind", choices=[ENGINE, SBATCH], help=argparse.SUPPRESS)
    parser.add_argument("--variant", choices=list(BASELINES), help=argparse.SUPPRESS)
    parser.add_argument("--shards", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--job-name", default="zpbench", help=argparse.SUPPRESS)
    parser.add_argument("--run-timeout", type=float, default=1740.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.poll_interval <= 0:
        parser.error("--poll-interval must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args)
    return parent_main(args)


if __name__ == "__main__":
    sys.exit(main())
