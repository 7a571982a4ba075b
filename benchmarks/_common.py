"""Shared helpers for the benchmarks: test data, child processes with peak RSS, tables.

Nothing here measures speed by itself; the benchmark scripts decide what to time. The helpers
are deliberately free of zoopipe / zoopipe_hpc imports so that every measurement can run in a
fresh child process that imports only what it needs.
"""

from __future__ import annotations

import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

__all__ = [
    "BENCH_DIR",
    "DEFAULT_DATA_DIR",
    "DEFAULT_SEED",
    "Person",
    "PERSON_COLUMNS",
    "ChildResult",
    "ensure_people_csv",
    "count_csv_records",
    "run_child",
    "write_child_report",
    "peak_rss_self",
    "warm_file",
    "environment",
    "format_table",
    "fmt_int",
    "fmt_rate",
    "fmt_ratio",
    "fmt_mib",
    "ratio",
    "progress",
    "write_results",
]

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_DATA_DIR = BENCH_DIR / ".data"
DEFAULT_SEED = 20240611
#: Bump when the generator changes, so cached files made by an older generator are not reused.
GENERATOR_VERSION = 1


class Person(BaseModel):
    """The 4-field model every throughput benchmark validates against."""

    id: int
    name: str
    email: str
    score: float


PERSON_COLUMNS = ("id", "name", "email", "score")

# -- test data ---------------------------------------------------------------------------------

_FIRST = (
    "Ada Alan Barbara Claude Dennis Donald Edsger Frances Grace Guido Hedy Ivan John Ken "
    "Linus Margaret Niklaus Radia Rich Shafi Sophie Tim Tony Whitfield Yukihiro Zhores "
    "José Zoë Łukasz Søren"
).split()
_LAST = (
    "Lovelace Turing Liskov Shannon Ritchie Knuth Dijkstra Allen Hopper Rossum Lamarr "
    "Sutherland McCarthy Thompson Torvalds Hamilton Wirth Perlman Hickey Goldwasser Wilson "
    "Berners-Lee Hoare Diffie Matsumoto Alferov Núñez O'Neil"
).split()
_DOMAINS = ("example.org", "example.com", "mail.example.net", "uni.example.edu")


def _people_lines(rows: int, seed: int) -> Iterable[str]:
    """CSV data lines (no header), deterministic for ``(rows, seed)``.

    About 5 % of the names are written ``"Last, First"`` (quoted, with a comma inside) so the
    CSV parsers have to deal with quoting; every row is valid for :class:`Person`.
    """
    rng = random.Random(seed)
    first, last, domains = _FIRST, _LAST, _DOMAINS
    n_first, n_last, n_domains = len(first), len(last), len(domains)
    for i in range(rows):
        f = first[rng.randrange(n_first)]
        la = last[rng.randrange(n_last)]
        r = rng.random()
        if r < 0.05:
            name = f'"{la}, {f}"'
        else:
            name = f"{f} {la}"
        email = f"{f.lower()}.{la.lower()}{i}@{domains[rng.randrange(n_domains)]}"
        score = round(rng.random() * 100.0, 3)
        yield f"{i},{name},{email},{score!r}\n"


def ensure_people_csv(
    rows: int, data_dir: Path | str = DEFAULT_DATA_DIR, seed: int = DEFAULT_SEED, log: bool = True
) -> Path:
    """Path of a CSV of ``rows`` people, generated once (atomically) and reused afterwards."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / f"people-{rows}-s{seed}-v{GENERATOR_VERSION}.csv"
    if path.exists():
        return path
    started = time.perf_counter()
    if log:
        print(f"generating {path} ({rows:,} rows, seed {seed}) ...", file=sys.stderr, flush=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=data_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(",".join(PERSON_COLUMNS) + "\n")
            buffer: list[str] = []
            for line in _people_lines(rows, seed):
                buffer.append(line)
                if len(buffer) >= 100_000:
                    f.write("".join(buffer))
                    buffer.clear()
            f.write("".join(buffer))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if log:
        print(f"  done in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    return path


def count_csv_records(path: Path | str) -> int:
    """Data records of a CSV written by :func:`ensure_people_csv` (no newlines inside fields)."""
    n = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            n += chunk.count(b"\n")
    return max(0, n - 1)


def warm_file(path: Path | str) -> None:
    """Read a file once so every measurement starts with it in the page cache."""
    with open(path, "rb") as f:
        while f.read(1 << 22):
            pass


# -- child processes and peak RSS ---------------------------------------------------------------


def _maxrss_bytes(ru_maxrss: int) -> int:
    # Linux reports KiB, macOS bytes.
    return int(ru_maxrss) if sys.platform == "darwin" else int(ru_maxrss) * 1024


def peak_rss_self() -> int:
    """Peak RSS so far of this process's own image (bytes), and of the workers it reaped.

    ``VmHWM`` belongs to the memory map created at ``exec``, so unlike ``ru_maxrss`` it does not
    include the parent's pages that a freshly forked child briefly shared before ``exec``
    (Linux carries those into ``ru_maxrss``: a tiny child of a 500 MiB parent reports 500 MiB).
    Workers forked from this process without ``exec`` are measured by ``RUSAGE_CHILDREN``.
    """
    import resource

    own = None
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    own = int(line.split()[1]) * 1024
    except OSError:
        own = None
    if own is None:
        own = _maxrss_bytes(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    workers = _maxrss_bytes(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    return max(own, workers)


@dataclass
class ChildResult:
    """What one child process did: its exit status, its own report, and its peak RSS."""

    argv: list[str]
    returncode: int | None
    wall_seconds: float
    #: Largest RSS reached by the child or by any of its descendants it waited for (bytes).
    peak_rss_bytes: int | None
    report: dict[str, Any] | None
    stdout: str = ""
    stderr: str = ""
    timed_out: bool = False
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out and self.report is not None

    def describe_failure(self) -> str:
        if self.timed_out:
            return f"timed out after {self.wall_seconds:.0f} s"
        if self.report is not None and self.report.get("error"):
            return str(self.report["error"])
        tail = (self.stderr or self.stdout).strip().splitlines()[-3:]
        return f"exit code {self.returncode}: " + " | ".join(tail)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("stdout")
        d["stderr_tail"] = "\n".join(self.stderr.strip().splitlines()[-20:])
        d.pop("stderr")
        return d


def run_child(
    argv: Sequence[str],
    timeout: float | None = None,
    cwd: Path | str | None = None,
    env: dict[str, str] | None = None,
) -> ChildResult:
    """Run ``argv`` in a fresh process and measure its peak RSS with ``wait4``.

    The child gets the path of a JSON file in the environment variable ``BENCH_RESULT`` and may
    write its report there (see :func:`write_child_report`). The peak RSS is the ``ru_maxrss``
    that ``wait4`` returns for this one child: the largest resident set of the child itself or
    of any of its own children it has reaped (a worker pool), not their sum. Unlike
    ``getrusage(RUSAGE_CHILDREN)`` in the parent it is not a running maximum over every child
    started so far, so earlier measurements cannot pollute later ones.
    """
    argv = [str(a) for a in argv]
    with tempfile.TemporaryDirectory(prefix="zoopipe-bench-") as scratch:
        result_path = Path(scratch) / "result.json"
        out_path = Path(scratch) / "stdout.txt"
        err_path = Path(scratch) / "stderr.txt"
        child_env = dict(os.environ if env is None else env)
        child_env["BENCH_RESULT"] = str(result_path)
        child_env.setdefault("PYTHONHASHSEED", "0")
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            started = time.perf_counter()
            proc = subprocess.Popen(  # noqa: S603 - our own interpreter and script
                argv, stdout=out, stderr=err, cwd=cwd, env=child_env, start_new_session=True
            )
            rusage = None
            status = None
            timed_out = False
            deadline = None if timeout is None else started + timeout
            delay = 0.005
            while True:
                pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
                if pid == proc.pid:
                    break
                if deadline is not None and time.perf_counter() >= deadline:
                    timed_out = True
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    _, status, rusage = os.wait4(proc.pid, 0)
                    break
                time.sleep(delay)
                delay = min(0.05, delay * 2)
            wall = time.perf_counter() - started
            proc.returncode = os.waitstatus_to_exitcode(status)  # Popen must not wait again
        report = None
        error = None
        if result_path.exists():
            try:
                report = json.loads(result_path.read_text(encoding="utf-8"))
            except ValueError as exc:
                error = f"unreadable child report: {exc}"
        return ChildResult(
            argv=argv,
            returncode=proc.returncode,
            wall_seconds=wall,
            peak_rss_bytes=_peak(report, rusage),
            report=report,
            stdout=out_path.read_text(encoding="utf-8", errors="replace"),
            stderr=err_path.read_text(encoding="utf-8", errors="replace"),
            timed_out=timed_out,
            error=error,
        )


def _peak(report: dict[str, Any] | None, rusage: Any) -> int | None:
    """The child's own measurement when it reported one (see :func:`peak_rss_self`), else
    ``wait4``'s ``ru_maxrss``, which may include pages shared with this parent before exec."""
    if report and isinstance(report.get("self_peak_rss_bytes"), int):
        peak: int = report["self_peak_rss_bytes"]
        return peak
    return _maxrss_bytes(rusage.ru_maxrss) if rusage is not None else None


def write_child_report(report: dict[str, Any]) -> None:
    """In a child started by :func:`run_child`: hand ``report`` back to the parent."""
    report.setdefault("self_peak_rss_bytes", peak_rss_self())
    target = os.environ.get("BENCH_RESULT")
    if not target:
        print(json.dumps(report, indent=2, default=str))
        return
    tmp = target + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(report, f, default=str)
    os.replace(tmp, target)


def environment() -> dict[str, Any]:
    """Versions and machine facts worth keeping next to the numbers."""
    from importlib import metadata

    versions = {}
    for name in ("zoopipe_hpc", "zoopipe", "pyarrow", "pydantic", "pydantic_core"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    try:
        import psutil

        memory = int(psutil.virtual_memory().total)
    except Exception:  # noqa: BLE001 - informational only
        memory = None
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_bytes": memory,
        "versions": versions,
    }


# -- formatting ---------------------------------------------------------------------------------


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt_int(value: int | None) -> str:
    return "n/a" if value is None else f"{value:,}"


def fmt_rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def fmt_mib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / (1 << 20):,.0f}"


def format_table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None
) -> str:
    """A plain-text table; ``align`` has one ``l``/``r`` per column (default: first left)."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    align = align or ("l" + "r" * (len(headers) - 1))

    def line(row: Sequence[str]) -> str:
        parts = [
            cell.ljust(width) if how == "l" else cell.rjust(width)
            for cell, width, how in zip(row, widths, align, strict=True)
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def progress(message: str) -> None:
    """A progress line on stderr, so that stdout keeps only the results."""
    print(message, file=sys.stderr, flush=True)


def write_results(path: str | os.PathLike[str], results: Any) -> Path:
    """Write ``results`` as indented JSON to ``path`` (folders made as needed) and say where."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"\nresults written to {out}")
    return out
