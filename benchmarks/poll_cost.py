"""What one poll of the coordinator costs, by shard count, without a cluster.

For N shards the script writes a progress folder with the real writers: every shard but a few
finished (a FINISHED record and its result file), ``--running`` shards running (a live record
whose heartbeat is kept fresh) and ``--pending`` shards without a record yet. The active
shards are as many at every N, so a poll whose cost is O(active shards) costs the same at every
N. It then drives the real coordinator-side code on that folder:

* **slurm**: ``SlurmEngine.attach(...)`` (read-only) over the folder, Slurm's ``sacct``
  answered by a stub (a ``SlurmCLI`` that runs no command: every task not finished is
  RUNNING or PENDING);
* **tracker**: the local engines' ``PipeTracker`` through ``ScheduledEngine`` (the shared part
  of the Ray and Dask engines; ``MultiProcessEngine`` polls the same tracker) with a stub
  scheduler whose tasks are ended, running or not launched.
* **watch**: a job directory (a manifest of N shards, as a local job's) looked at from another
  process, as a second ``watch`` does at each poll: ``JobReader.shard_reports`` of
  ``looked_manifest()`` (the manifest read again only when its file changed; each shard's
  record read until it is final).

* **packed** (``--packed``, a table of its own): a whole packed run as the coordinator sees it,
  ``SlurmEngine.attach(...)`` over one packed array of N shards whose ``--running`` tasks
  claim the shards in order (real claims, :class:`ClaimBoard`) and write live records;
  ``--settling`` shards end before each poll (a FINISHED record and a result file) until all
  are over, so the settle rate is the same at every N and the folder fills as a real run's.

One poll is what ``PipeManager.run()`` does between two sleeps: ``engine.is_running`` (inside
``wait``) and ``engine.report`` (the aggregate for the callback). The first poll (which meets
every shard once: it reads the finished ones' final records and result files) is timed on its
own; then ``--polls`` polls are timed while nothing changes in the folder, and as many again
with a new file made in the folder before each (the listing is then read again). Printed per
case: CPU ms a poll (``time.process_time``), the file opens (``os.open``, ``open``), stats and
folder listings (``os.scandir``/``os.listdir``, with the entries they returned) a poll, counted
by wrapping those functions in this process, and the CPU ratio to the smallest N of the same
invocation. Nothing is asserted.

    python benchmarks/poll_cost.py                         # N = 10, 100, 1000, 10000
    python benchmarks/poll_cost.py --counts 10,100 --polls 5 --json out.json
"""

from __future__ import annotations

import argparse
import builtins
import collections
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
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

from zoopipe_hpc.commit.staged import WorkerOutcome, result_path, write_result  # noqa: E402
from zoopipe_hpc.engines._attempts import slurm_attempt_id  # noqa: E402
from zoopipe_hpc.engines._scheduled import ScheduledEngine  # noqa: E402
from zoopipe_hpc.engines._tracking import RUNNING, PipeTracker, TaskEnded, TaskState  # noqa: E402
from zoopipe_hpc.engines._worker import progress_path  # noqa: E402
from zoopipe_hpc.engines.slurm import SlurmCLI, SlurmEngine  # noqa: E402
from zoopipe_hpc.engines.slurm._claims import ClaimBoard  # noqa: E402
from zoopipe_hpc.jobs._reading import JobReader  # noqa: E402
from zoopipe_hpc.jobs.manifest import JobDirectory, JobState, Manifest, ShardRecord  # noqa: E402
from zoopipe_hpc.progress import ProgressWriter  # noqa: E402
from zoopipe_hpc.report import PipeReport  # noqa: E402

#: The array id of the attached Slurm run.
JOB = "9000"


# -- counting file system calls ----------------------------------------------------------------


class _Listing:
    """``os.scandir``'s iterator, counting the entries it yields."""

    def __init__(self, inner: Any, counts: collections.Counter[str]) -> None:
        self._inner = inner
        self._counts = counts

    def __enter__(self) -> _Listing:
        self._inner.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._inner.__exit__(*exc)

    def __iter__(self) -> Iterator[os.DirEntry[str]]:
        for entry in self._inner:
            self._counts["entries"] += 1
            yield entry

    def close(self) -> None:
        self._inner.close()


class SyscallCounter:
    """Counts opens, stats and listings made in this process while it is installed."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self._saved: list[tuple[Any, str, Any]] = []

    def _wrap(self, owner: Any, name: str, kind: str) -> None:
        original = getattr(owner, name)
        counts = self.counts

        def counted(*args: Any, **kwargs: Any) -> Any:
            counts[kind] += 1
            return original(*args, **kwargs)

        self._saved.append((owner, name, original))
        setattr(owner, name, counted)

    def __enter__(self) -> SyscallCounter:
        self._wrap(os, "open", "opens")
        self._wrap(builtins, "open", "opens")
        for name in ("stat", "lstat", "fstat"):
            self._wrap(os, name, "stats")
        original = os.scandir
        listdir = os.listdir
        counts = self.counts

        def listed(*args: Any, **kwargs: Any) -> list[str]:
            counts["listings"] += 1
            names = listdir(*args, **kwargs)
            counts["entries"] += len(names)
            return names

        self._saved.append((os, "listdir", listdir))
        os.listdir = listed  # type: ignore[assignment]

        def scandir(*args: Any, **kwargs: Any) -> _Listing:
            counts["listings"] += 1
            return _Listing(original(*args, **kwargs), counts)

        self._saved.append((os, "scandir", original))
        os.scandir = scandir  # type: ignore[assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        for owner, name, original in reversed(self._saved):
            setattr(owner, name, original)
        self._saved.clear()


# -- the folder ------------------------------------------------------------------------------


def write_finished(record: Path, index: int, attempt_id: str) -> None:
    """A FINISHED record of one processed row, and its result file (what a shard leaves)."""
    with ProgressWriter(record, attempt_id, flush_interval=0.0) as writer:
        writer.start()
        writer.update(1, 1, 0)
        write_result(result_path(record), WorkerOutcome(index, attempt_id, 1, 1, 0))
        writer.finish()


def start_running(record: Path, attempt_id: str) -> ProgressWriter:
    """The open writer of a running shard's record (close it when done)."""
    writer = ProgressWriter(record, attempt_id, flush_interval=0.0)
    writer.start()
    writer.update(1, 1, 0)
    return writer


def layout(count: int, running: int, pending: int) -> tuple[list[int], list[int], list[int]]:
    """The indices of the finished, running and pending shards of ``count`` (the active ones
    last, so that they are as many at every count; ``count`` smaller than that: fewer)."""
    active = min(count, running + pending)
    finished = list(range(count - active))
    run = list(range(count - active, count - active + min(running, active)))
    return finished, run, list(range(count - active + len(run), count))


class _Sacct(SlurmCLI):
    """Answers ``sacct`` as a cluster would for the attached array; runs no command."""

    def __init__(self, states: Sequence[str]) -> None:
        super().__init__(retries=0)
        self.states = list(states)

    def run(self, args: Sequence[str], *, check: bool = True) -> str:
        self.calls[args[0]] += 1
        if args[0] != "sacct":
            raise RuntimeError(f"the benchmark's stub runs only sacct, not {list(args)}")
        return "".join(f"{JOB}_{i}|{state}|0:0|node1|0:0\n" for i, state in enumerate(self.states))


class _StubScheduler(ScheduledEngine[str]):
    """A scheduler whose tasks are 'done', 'running' or not launched (no handle)."""

    def _connect(self) -> None:
        return None

    def _submit(self, index: int, payload: bytes, record: str, attempt_id: str) -> str:
        raise RuntimeError("the benchmark submits nothing")

    def _state(self, handle: str) -> TaskState:
        return TaskEnded(True) if handle == "done" else RUNNING

    def _cancel(self, handle: str) -> None:
        return None


def slurm_case(folder: Path, count: int, running: int, pending: int) -> tuple[Any, list[Any]]:
    """An attached SlurmEngine over ``count`` shards' records; returns it and the live writers."""
    progress_dir = folder / "progress"
    progress_dir.mkdir(parents=True)
    (folder / "logs").mkdir()
    done, run, _ = layout(count, running, pending)
    for index in done:
        attempt = slurm_attempt_id(JOB, index)
        write_finished(progress_path(progress_dir, index, attempt), index, attempt)
    writers = []
    for index in run:
        attempt = slurm_attempt_id(JOB, index)
        writers.append(start_running(progress_path(progress_dir, index, attempt), attempt))
    states = ["COMPLETED"] * len(done) + ["RUNNING"] * len(run)
    states += ["PENDING"] * (count - len(states))
    engine = SlurmEngine(folder.parent, cli=_Sacct(states), state_source="sacct")
    engine.attach(folder, [[f"{JOB}_{i}"] for i in range(count)], read_only=True)
    return engine, writers


def tracker_case(folder: Path, count: int, running: int, pending: int) -> tuple[Any, list[Any]]:
    """A ScheduledEngine whose tracker follows ``count`` pipes' records (stub scheduler)."""
    done, run, _ = layout(count, running, pending)
    engine = _StubScheduler(progress_dir=folder)
    tracker = PipeTracker(count, folder)
    engine._tracker = tracker
    engine._handles = [None] * count
    for index in done:
        write_finished(tracker.record_path(index), index, tracker.attempt_ids[index])
        engine._handles[index] = "done"
    writers = []
    for index in run:
        writers.append(start_running(tracker.record_path(index), tracker.attempt_ids[index]))
        engine._handles[index] = "running"
    return engine, writers


class _Watch:
    """A look at a job directory from another process, with the engine's two properties."""

    def __init__(self, path: Path) -> None:
        self.reader = JobReader(path)
        self._reports: list[Any] = []

    @property
    def is_running(self) -> bool:
        self._reports = self.reader.shard_reports(self.reader.looked_manifest())
        return not all(r.is_finished for r in self._reports)

    @property
    def report(self) -> Any:
        return PipeReport.aggregate(self._reports)


def watch_case(folder: Path, count: int, running: int, pending: int) -> tuple[Any, list[Any]]:
    """A local job's directory of ``count`` shards (manifest and records), looked at."""
    progress_dir = folder / "progress"
    progress_dir.mkdir(parents=True)
    done, run, _ = layout(count, running, pending)
    shards = []
    writers = []
    for index in range(count):
        attempt = f"w{index:06d}"
        record = progress_path(progress_dir, index, attempt)
        if index in done:
            write_finished(record, index, attempt)
            shards.append(ShardRecord(index, f"part {index}", ["local"], "completed", attempt))
        elif index in run:
            writers.append(start_running(record, attempt))
            shards.append(ShardRecord(index, f"part {index}", ["local"], "running", attempt))
        else:
            shards.append(ShardRecord(index, f"part {index}", [], "pending", attempt))
    manifest = Manifest("bench", "bench", "local", "x", {}, shards, state=JobState.RUNNING)
    JobDirectory(folder).create(manifest)
    return _Watch(folder), writers


CASES: dict[str, Callable[[Path, int, int, int], tuple[Any, list[Any]]]] = {
    "slurm": slurm_case,
    "tracker": tracker_case,
    "watch": watch_case,
}


# -- measuring -------------------------------------------------------------------------------


def one_poll(engine: Any) -> None:
    """What PipeManager.run() asks between two sleeps: is_running (in wait), then report."""
    engine.is_running  # noqa: B018 - the look itself is what is measured
    engine.report  # noqa: B018


def timed_polls(
    engine: Any, writers: list[Any], polls: int, before: Callable[[int], None]
) -> dict[str, float]:
    cpu = 0.0
    counter = SyscallCounter()
    for k in range(polls):
        for writer in writers:
            writer.update(k + 2, k + 2, 0)  # the running shards move (outside the timing)
        before(k)
        with counter:
            began = time.process_time()
            one_poll(engine)
            cpu += time.process_time() - began
    counts = counter.counts
    return {
        "cpu_ms": cpu / polls * 1000,
        "opens": counts["opens"] / polls,
        "stats": counts["stats"] / polls,
        "listings": counts["listings"] / polls,
        "entries": counts["entries"] / polls,
    }


def measure(case: str, count: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    folder = work / f"{case}-{count}"
    began = time.perf_counter()
    engine, writers = CASES[case](folder, count, args.running, args.pending)
    built = time.perf_counter() - began
    try:
        counter = SyscallCounter()
        with counter:
            first = time.process_time()
            one_poll(engine)
            first = time.process_time() - first
        first_opens = counter.counts["opens"]
        # Past the window in which a folder's unchanged mtime is not trusted yet.
        time.sleep(args.settle)
        quiet = timed_polls(engine, writers, args.polls, lambda k: None)
        changes = folder / "progress" if case in ("slurm", "watch") else folder

        def change(k: int) -> None:
            (changes / f"bench-change-{k}.tmp").write_bytes(b"")

        changed = timed_polls(engine, writers, args.polls, change)
        report = engine.report
    finally:
        for writer in writers:
            writer.close()
    done, run, waiting = layout(count, args.running, args.pending)
    return {
        "case": case,
        "shards": count,
        "finished": len(done),
        "running": len(run),
        "pending": len(waiting),
        "build_seconds": built,
        "first_poll_ms": first * 1000,
        "first_poll_opens": first_opens,
        "quiet": quiet,
        "changed": changed,
        "pipes_finished": report.pipes_finished,
        "processed": report.total_processed,
    }


class _PackedSacct(SlurmCLI):
    """``sacct`` of one packed array: its ``tasks`` tasks RUNNING until ``over["over"]``."""

    def __init__(self, tasks: int) -> None:
        super().__init__(retries=0)
        self.tasks = tasks
        self.over = {"over": False}  # shared with the engine's single-attempt copy

    def run(self, args: Sequence[str], *, check: bool = True) -> str:
        self.calls[args[0]] += 1
        state = "COMPLETED" if self.over["over"] else "RUNNING"
        return "".join(f"{JOB}_{t}|{state}|0:0|node{t}|0:0\n" for t in range(self.tasks))


def packed_run(count: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """A whole packed run of ``count`` shards (see the module), every poll measured."""
    folder = work / f"packed-{count}"
    progress_dir = folder / "progress"
    progress_dir.mkdir(parents=True)
    (folder / "logs").mkdir()
    tasks = max(1, args.running)
    cli = _PackedSacct(tasks)
    engine = SlurmEngine(folder.parent, cli=cli, state_source="sacct", poll_interval=0.5)
    clock = [1000.0]
    engine._clock = lambda: clock[0]
    engine.attach(folder, [[f"{JOB}_*"]] * count, read_only=True)
    boards = [
        ClaimBoard(folder, slurm_attempt_id(JOB, t), range(count)).open() for t in range(tasks)
    ]
    running: dict[int, tuple[ProgressWriter, str]] = {}
    claimed = 0
    cpu: list[float] = []
    counter = SyscallCounter()
    try:
        while True:
            for index in sorted(running)[: args.settling]:
                writer, attempt = running.pop(index)
                record = progress_path(progress_dir, index, attempt)
                write_finished_from(writer, record, index, attempt)
            while len(running) < tasks and claimed < count:
                board = boards[claimed % tasks]
                if not board.claim(claimed):
                    raise RuntimeError(f"shard {claimed} was claimed twice")
                record = progress_path(progress_dir, claimed, board.attempt_id)
                running[claimed] = (start_running(record, board.attempt_id), board.attempt_id)
                claimed += 1
            cli.over["over"] = not running
            for writer, _ in running.values():
                writer.update(1, 1, 0)  # the heartbeat moves
            clock[0] += 0.5
            with counter:
                began = time.process_time()
                one_poll(engine)
                cpu.append(time.process_time() - began)
            if not engine.is_running:
                break
            if len(cpu) > 4 * count + 100:
                raise RuntimeError(f"the packed run of {count} shards did not end")
    finally:
        for writer, _ in running.values():
            writer.close()
    report = engine.report
    polls = len(cpu)
    ordered = sorted(cpu)
    counts = counter.counts
    return {
        "case": "packed",
        "shards": count,
        "polls": polls,
        "cpu_ms_median": ordered[polls // 2] * 1000,
        "cpu_ms_p95": ordered[min(polls - 1, int(0.95 * polls))] * 1000,
        "cpu_ms_mean": sum(cpu) / polls * 1000,
        "opens": counts["opens"] / polls,
        "listings": counts["listings"] / polls,
        "entries": counts["entries"] / polls,
        "state_queries": cli.calls["sacct"],
        "pipes_finished": report.pipes_finished,
        "processed": report.total_processed,
    }


def write_finished_from(writer: ProgressWriter, record: Path, index: int, attempt: str) -> None:
    """End a running shard as a worker does: its result file, then the FINISHED record."""
    writer.update(1, 1, 0)
    write_result(result_path(record), WorkerOutcome(index, attempt, 1, 1, 0))
    writer.finish()
    writer.close()


def print_packed(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print()
    print(
        f"packed: one array, {args.running} tasks claiming in order, {args.settling} shards "
        "ending before each poll, until the run is over; per poll:"
    )
    base = rows[0]
    table = [
        [
            f"{r['shards']:,}",
            r["polls"],
            f"{r['cpu_ms_median']:.3f}",
            f"{r['cpu_ms_p95']:.3f}",
            f"{r['cpu_ms_mean']:.3f}",
            f"{r['opens']:.1f}",
            f"{r['listings']:.2f}",
            f"{r['entries']:.0f}",
            r["state_queries"],
            fmt_ratio(ratio(r["cpu_ms_median"], base["cpu_ms_median"])),
        ]
        for r in rows
    ]
    headers = [
        "shards",
        "polls",
        "CPU ms med",
        "p95",
        "mean",
        "opens",
        "listings",
        "entries",
        "sacct",
        f"med vs {base['shards']:,}",
    ]
    print(format_table(headers, table, "rrrrrrrrrr"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", default="10,100,1000,10000", help="shard counts")
    parser.add_argument("--cases", default="slurm,tracker", help="of " + ",".join(CASES))
    parser.add_argument("--running", type=int, default=4, help="running shards at every N")
    parser.add_argument("--pending", type=int, default=2, help="pending shards at every N")
    parser.add_argument("--polls", type=int, default=30, help="polls timed per measurement")
    parser.add_argument(
        "--packed", action="store_true", help="also the packed-run table (a whole run per N)"
    )
    parser.add_argument(
        "--settling", type=int, default=2, help="packed: shards ending before each poll"
    )
    parser.add_argument(
        "--settle", type=float, default=1.2, help="seconds between the first poll and the others"
    )
    parser.add_argument("--data-dir", type=Path, help="parent of the work folder (default: /tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--json", type=Path, help="also write every number as JSON")
    args = parser.parse_args(argv)
    counts = sorted({int(c) for c in args.counts.split(",") if c.strip()})
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES]
    if unknown or not counts or min(counts) < 1 or args.polls < 1:
        parser.error(f"--cases from {sorted(CASES)}, --counts and --polls positive")
    work = Path(tempfile.mkdtemp(prefix="zoopipe-poll-cost-", dir=args.data_dir))
    rows: list[dict[str, Any]] = []
    packed: list[dict[str, Any]] = []
    try:
        for case in cases:
            for count in counts:
                progress(f"{case}: {count:,} shards ...")
                rows.append(measure(case, count, args, work))
        for count in counts if args.packed else []:
            progress(f"packed run: {count:,} shards ...")
            packed.append(packed_run(count, args, work))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{args.running} running and {args.pending} pending shards at every N, the rest done;")
    print(f"{args.polls} polls (is_running + report) per row; per poll:")
    table = []
    for row in rows:
        base = next(r for r in rows if r["case"] == row["case"])
        for when in ("quiet", "changed"):
            figures = row[when]
            table.append(
                [
                    row["case"],
                    f"{row['shards']:,}",
                    "unchanged" if when == "quiet" else "changed",
                    f"{row['first_poll_ms']:.1f}",
                    f"{figures['cpu_ms']:.3f}",
                    f"{figures['opens']:.1f}",
                    f"{figures['stats']:.1f}",
                    f"{figures['listings']:.1f}",
                    f"{figures['entries']:.0f}",
                    fmt_ratio(ratio(figures["cpu_ms"], base[when]["cpu_ms"])),
                ]
            )
    headers = [
        "engine",
        "shards",
        "folder",
        "first poll ms",
        "CPU ms/poll",
        "opens",
        "stats",
        "listings",
        "entries",
        f"CPU vs {counts[0]:,}",
    ]
    print(format_table(headers, table, "lrlrrrrrrr"))
    if packed:
        print_packed(packed, args)
    if args.json is not None:
        results = {"environment": environment(), "args": vars(args), "rows": rows}
        write_results(args.json, {**results, "packed": packed})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
