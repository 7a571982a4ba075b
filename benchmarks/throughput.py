"""Throughput and peak memory of zoopipe_hpc, beside ZooPipe and plain pyarrow, in one run.

    python benchmarks/throughput.py                # 1M rows (about 2-4 minutes)
    python benchmarks/throughput.py --quick        # 50k rows, RSS pair 50k / 200k (smoke test)
    python benchmarks/throughput.py --json out.json
    python benchmarks/throughput.py --columnar-table   # fast path: clean and 2 % dirty input
    python benchmarks/throughput.py --hooks        # a hook adding a field: row vs Arrow hook
    python benchmarks/throughput.py --columnar-table --zoned  # ... with a time-zoned column
    python benchmarks/throughput.py --wide         # a 16-column CSV with NA markers, 3 % invalid

Every measurement runs in a fresh child process (this script again, with ``--child``), so the
memory and caches of one run do not leak into the next; the parent only generates the data,
starts the children, measures each child's peak RSS with ``wait4`` and prints the tables.
Nothing here asserts a time: the numbers are ratios against baselines measured in the same
invocation, on the same file, on the same machine. See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402 - needs the path above when run as a script
    DEFAULT_DATA_DIR,
    DEFAULT_SEED,
    ChildResult,
    Person,
    count_csv_records,
    ensure_people_csv,
    environment,
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
from _wide import WideRecord, WideRecordNA, ensure_wide_csv, run_pyarrow_wide  # noqa: E402
from pydantic import BaseModel  # noqa: E402

HPC = "zoopipe_hpc"
ZOOPIPE = "zoopipe"
PYARROW = "pyarrow"
OUTPUTS = ("parquet", "jsonl")
OUTPUT_LABEL = {"parquet": "Parquet", "jsonl": "JSON Lines"}
SUFFIX = {"parquet": ".parquet", "jsonl": ".jsonl"}

#: What the ``--hooks`` table measures: no hook, a row hook, an Arrow hook (each adds ``tag``).
NO_HOOK, ROW_HOOK, ARROW_HOOK = "none", "row", "arrow"
HOOK_LABEL = {NO_HOOK: "no hook", ROW_HOOK: "row hook", ARROW_HOOK: "Arrow hook"}

QUICK_ROWS = 50_000


class ZonedPerson(Person):
    """:class:`Person` with an ISO-8601 timestamp in a time zone (``--zoned``)."""

    seen: dt.datetime


#: The model the children validate against (``--zoned``: :class:`ZonedPerson`).
MODEL: type[BaseModel] = Person
#: ``null_values`` of zoopipe_hpc's CSV input (``--wide``: ``["NA"]``).
CSV_NULLS: list[str] | None = None
QUICK_RSS_ROWS = (50_000, 200_000)


# ==============================================================================================
# Child side: one measurement, in a process of its own
# ==============================================================================================


def _count_output_rows(path: Path, output: str) -> int:
    if output == "parquet":
        import pyarrow.parquet as pq

        with pq.ParquetFile(path) as f:
            return int(f.metadata.num_rows)
    n = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            n += chunk.count(b"\n")
    return n


def _collect_outputs(target: Path, output: str) -> tuple[int | None, list[str], str | None]:
    """(rows written, files holding them, note) for the target or, failing that, its parts."""
    if target.exists():
        return _count_output_rows(target, output), [target.name], None
    parts = sorted(
        p
        for p in target.parent.iterdir()
        if p.name != target.name
        and p.suffix == target.suffix
        and p.name.startswith(target.stem)
        and "part" in p.name
    )
    if not parts:
        return None, [], "no output file was written"
    rows = sum(_count_output_rows(p, output) for p in parts)
    return rows, [p.name for p in parts], f"left {len(parts)} part files, not merged into one"


def _json_lines(batch: Any) -> Any:
    """The rows of ``batch`` as JSON Lines, built column by column with pyarrow compute.

    What a pyarrow user would write to get JSON Lines fast, with no validation: numbers are
    cast to text, text values get their quotes from the literal parts around them and are
    escaped (backslashes, quotes) only in batches that hold any (one ``bytes`` search of the
    column's data buffer says), nulls become ``null``, and one ``binary_join_element_wise``
    assembles each line. Control characters are not escaped (pyarrow has no JSON writer; a
    validating writer must escape them), which only favours the baseline.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    parts: list[Any] = []
    literal = "{"
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        literal += json.dumps(name) + ":"
        if pa.types.is_string(column.type):
            data = column.buffers()[2]  # every value's bytes (perhaps a few more: harmless)
            raw = data.to_pybytes() if data is not None else b""
            if b"\\" in raw:
                column = pc.replace_substring(column, "\\", "\\\\")
            if b'"' in raw:
                column = pc.replace_substring(column, '"', '\\"')
            if column.null_count:
                column = pc.binary_join_element_wise('"', column, '"', "")
                parts += [literal, pc.fill_null(column, "null")]
                literal = ","
            else:
                parts += [literal + '"', column]
                literal = '",'
        else:
            parts += [literal, pc.fill_null(column.cast(pa.string()), "null")]
            literal = ","
    parts.append(literal.removesuffix(",") + "}\n")
    return pc.binary_join_element_wise(*parts, "")


def _run_pyarrow(source: Path, target: Path, output: str, workers: int) -> dict[str, Any]:
    """Plain pyarrow, no validation: the CSV read with pyarrow's typed, multithreaded reader,
    then Parquet through ``ParquetWriter``, or JSON Lines (:func:`_json_lines`) written
    straight from each batch's text buffer."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    types = {"id": pa.int64(), "name": pa.string(), "email": pa.string(), "score": pa.float64()}
    reader = pacsv.open_csv(source, convert_options=pacsv.ConvertOptions(column_types=types))
    rows = 0
    if output == "parquet":
        with pq.ParquetWriter(target, reader.schema) as writer:
            for batch in reader:
                writer.write_batch(batch)
                rows += batch.num_rows
        return {"success": rows, "errors": 0}
    with open(target, "wb") as f:
        for batch in reader:
            lines = _json_lines(batch)
            _, offsets, data = lines.buffers()
            ends = memoryview(offsets).cast("i")
            f.write(memoryview(data)[ends[lines.offset] : ends[lines.offset + len(lines)]])
            rows += batch.num_rows
    return {"success": rows, "errors": 0}


class TaggedPerson(Person):
    """:class:`Person` with the field the ``--hooks`` hooks add before validation."""

    tag: str


def _hpc_hooks(hook: str) -> list[Any]:
    """The zoopipe_hpc hook that adds ``tag`` to every record (``name`` upper-cased)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    import zoopipe_hpc as zh

    class RowTag(zh.BaseHook):
        def execute(
            self, entries: list[zh.EntryTypedDict], store: zh.HookStore
        ) -> list[zh.EntryTypedDict]:
            for entry in entries:
                raw = entry["raw_data"]
                raw["tag"] = raw["name"].upper()
            return entries

    class ArrowTag(zh.BaseArrowHook):
        def execute_table(self, table: pa.Table, store: zh.HookStore) -> pa.Table:
            return table.append_column("tag", pc.utf8_upper(table["name"]))

    return {NO_HOOK: [], ROW_HOOK: [RowTag()], ARROW_HOOK: [ArrowTag()]}[hook]


def _run_hpc(
    source: Path, target: Path, output: str, workers: int, hook: str = NO_HOOK
) -> dict[str, Any]:
    import zoopipe_hpc as zh

    out = (
        zh.ParquetOutputAdapter(target)
        if output == "parquet"
        else zh.JSONOutputAdapter(target, format="jsonl")
    )
    pipe = zh.Pipe(
        input_adapter=zh.CSVInputAdapter(source, null_values=CSV_NULLS),
        output_adapter=out,
        schema_model=MODEL if hook == NO_HOOK else TaggedPerson,
        pre_validation_hooks=_hpc_hooks(hook),
    )
    if workers == 1:
        report = pipe.run()
        return {"success": report.success_count, "errors": report.error_count}
    manager = zh.PipeManager.parallelize_pipe(pipe, workers=workers)
    if not manager.run():
        raise RuntimeError(f"PipeManager.run() failed: {manager.error}")
    report = manager.report
    return {"success": report.success_count, "errors": report.error_count}


def _run_zoopipe(
    source: Path, target: Path, output: str, workers: int, hook: str = NO_HOOK
) -> dict[str, Any]:
    try:
        import zoopipe as zp
    except Exception as exc:  # noqa: BLE001 - reported as "n/a" by the parent
        raise ImportError(f"zoopipe is not importable: {type(exc).__name__}: {exc}") from exc
    if hook == ARROW_HOOK:
        raise NotImplementedError("zoopipe has no Arrow hook")
    hooks: list[Any] = []
    if hook == ROW_HOOK:

        class RowTag(zp.BaseHook):  # type: ignore[misc, name-defined]
            def execute(self, entries: list[Any], store: Any) -> list[Any]:
                for entry in entries:
                    raw = entry["raw_data"]
                    raw["tag"] = raw["name"].upper()
                return entries

        hooks = [RowTag()]

    if output == "parquet":
        if not hasattr(zp, "ParquetOutputAdapter"):
            raise NotImplementedError("this zoopipe has no ParquetOutputAdapter")
        out = zp.ParquetOutputAdapter(str(target))
    else:
        out = zp.JSONOutputAdapter(str(target), format="jsonl")
    # ZooPipe's CSV splitter needs an absolute path (a relative one is looked up at "/").
    pipe = zp.Pipe(
        input_adapter=zp.CSVInputAdapter(str(source.resolve())),
        output_adapter=out,
        schema_model=MODEL if hook == NO_HOOK else TaggedPerson,
        pre_validation_hooks=hooks,
    )
    if workers == 1:
        pipe.start()
        pipe.wait()
        report = pipe.report
        if report.has_error:
            raise RuntimeError(f"zoopipe pipe failed: {getattr(report, 'exception', None)}")
        return {"success": report.success_count, "errors": report.error_count}
    manager = zp.PipeManager.parallelize_pipe(pipe, workers=workers)
    if not manager.run(on_report_update=None):
        raise RuntimeError("zoopipe PipeManager.run() did not finish")
    report = manager.report
    if getattr(report, "has_error", False):
        raise RuntimeError("zoopipe PipeManager reported an error")
    return {"success": report.success_count, "errors": report.error_count}


RUNNERS = {PYARROW: _run_pyarrow, HPC: _run_hpc, ZOOPIPE: _run_zoopipe}


def _cpu_seconds() -> float:
    """User + system CPU time of this process and of every child it has reaped."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def child_main(args: argparse.Namespace) -> int:
    global MODEL, CSV_NULLS
    if args.zoned:
        MODEL = ZonedPerson
    if args.wide:
        # ZooPipe's CSV reader has no null markers: its model maps "NA" to None itself.
        MODEL = WideRecordNA if args.engine == ZOOPIPE else WideRecord
        CSV_NULLS = ["NA"]
    source = Path(args.input).resolve()
    out_dir = Path(args.out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"out{SUFFIX[args.output]}"
    report: dict[str, Any] = {
        "engine": args.engine,
        "output": args.output,
        "workers": args.workers,
        "input": str(source),
        "pid": os.getpid(),
    }
    try:
        runner = RUNNERS[args.engine]
        if args.engine == HPC:
            import zoopipe_hpc  # noqa: F401 - imported before the clock starts
        elif args.engine == ZOOPIPE:
            try:
                import zoopipe  # noqa: F401
            except Exception as exc:  # noqa: BLE001
                raise ImportError(
                    f"zoopipe is not importable: {type(exc).__name__}: {exc}"
                ) from exc
        import pyarrow.parquet  # noqa: F401

        report["startup_rss_bytes"] = peak_rss_self()
        cpu_before = _cpu_seconds()
        started = time.perf_counter()
        if args.engine == PYARROW and args.wide:
            counts = run_pyarrow_wide(source, target)
        elif args.engine == PYARROW:
            counts = runner(source, target, args.output, args.workers)
        else:
            counts = runner(source, target, args.output, args.workers, hook=args.hook)
        seconds = time.perf_counter() - started
        multiprocessing.active_children()  # reap finished workers so their CPU time counts
        report["cpu_seconds"] = _cpu_seconds() - cpu_before
        report.update(counts)
        report["seconds"] = seconds
        rows, files, note = _collect_outputs(target, args.output)
        report["output_rows"] = rows
        report["output_files"] = files
        report["note"] = note
        report["error"] = None
    except BaseException as exc:  # noqa: BLE001 - the parent reports it
        report["error"] = f"{type(exc).__name__}: {exc}"
        report["error_kind"] = type(exc).__name__
        report["traceback"] = traceback.format_exc()
        write_child_report(report)
        return 1
    write_child_report(report)
    return 0


# ==============================================================================================
# Parent side: data, children, tables
# ==============================================================================================


@dataclass
class Case:
    engine: str
    output: str
    workers: int
    rows: int
    source: Path
    invalid: int = 0  # rows of the input that are invalid (dirty inputs)
    columnar: bool = True  # False: zoopipe_hpc with ZOOPIPE_HPC_COLUMNAR=0 (the row path)
    hook: str = NO_HOOK  # --hooks: the hook that adds a field before validation
    zoned: bool = False  # validate against ZonedPerson (input from ensure_zoned_csv)
    wide: bool = False  # --wide: the 16-column input and model of _wide.py
    read_ahead: bool = True  # False: zoopipe_hpc with ZOOPIPE_HPC_READ_AHEAD=0

    @property
    def label(self) -> str:
        what = f"CSV -> {OUTPUT_LABEL[self.output]}"
        if self.engine == PYARROW:
            return f"pyarrow {what} (no validation)"
        return f"{self.engine} {what}"


def short_rows(n: int) -> str:
    if n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n % 1_000 == 0:
        return f"{n // 1_000}k"
    return f"{n:,}"


def measure(case: Case, work_dir: Path, timeout: float) -> dict[str, Any]:
    """Run ``case`` in a fresh child; a flat dict of what happened."""
    out_dir = Path(tempfile.mkdtemp(prefix=f"{case.engine}-{case.output}-", dir=work_dir))
    argv = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        "--engine",
        case.engine,
        "--output",
        case.output,
        "--workers",
        str(case.workers),
        "--input",
        str(case.source),
        "--out-dir",
        str(out_dir),
        "--hook",
        case.hook,
        *(["--zoned"] if case.zoned else []),
        *(["--wide"] if case.wide else []),
    ]
    env = None
    if not case.columnar:
        env = {**os.environ, "ZOOPIPE_HPC_COLUMNAR": "0"}
    if not case.read_ahead:
        env = {**(env or os.environ), "ZOOPIPE_HPC_READ_AHEAD": "0"}
    try:
        child: ChildResult = run_child(argv, timeout=timeout, env=env)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    report = child.report or {}
    result: dict[str, Any] = {
        "engine": case.engine,
        "output": case.output,
        "conversion": f"csv->{case.output}",
        "label": case.label,
        "workers": case.workers,
        "rows": case.rows,
        "seconds": report.get("seconds"),
        "cpu_seconds": report.get("cpu_seconds"),
        "rows_per_s": None,
        "rows_per_cpu_s": None,
        "peak_rss_bytes": child.peak_rss_bytes,
        "startup_rss_bytes": report.get("startup_rss_bytes"),
        "child_wall_seconds": child.wall_seconds,
        "success": report.get("success"),
        "errors": report.get("errors"),
        "output_rows": report.get("output_rows"),
        "output_files": report.get("output_files"),
        "note": report.get("note"),
        "error": None,
        "ok": False,
    }
    if not child.ok:
        result["error"] = child.describe_failure()
        result["error_kind"] = report.get("error_kind")
        if child.stderr.strip():
            result["stderr_tail"] = "\n".join(child.stderr.strip().splitlines()[-15:])
        return result
    seconds = report["seconds"]
    result["rows_per_s"] = case.rows / seconds if seconds > 0 else None
    cpu = report.get("cpu_seconds")
    result["rows_per_cpu_s"] = case.rows / cpu if cpu else None
    problems = []
    valid = case.rows - case.invalid
    if report.get("success") is not None and report["success"] != valid:
        problems.append(f"validated {report['success']:,} of {valid:,} valid rows")
    if report.get("errors") is not None and report["errors"] != case.invalid:
        problems.append(f"found {report['errors']:,} of {case.invalid:,} invalid rows")
    if report.get("output_rows") is not None and report["output_rows"] != valid:
        problems.append(f"wrote {report['output_rows']:,} of {valid:,} valid rows")
    if report.get("output_rows") is None:
        problems.append("no output")
    if problems:
        result["error"] = "CHECK FAILED: " + "; ".join(problems)
        return result
    result["ok"] = True
    return result


def best_of(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest successful repeat (peak RSS: the largest seen over all repeats)."""
    good = [r for r in results if r["ok"]]
    best = dict(max(good, key=lambda r: r["rows_per_s"]) if good else results[-1])
    peaks = [r["peak_rss_bytes"] for r in results if r["ok"] and r["peak_rss_bytes"]]
    if peaks:
        best["peak_rss_bytes"] = max(peaks)
    best["repeats"] = [
        {
            k: r.get(k)
            for k in ("seconds", "cpu_seconds", "rows_per_s", "peak_rss_bytes", "ok", "error")
        }
        for r in results
    ]
    return best


def zoopipe_status(timeout: float) -> tuple[bool, str | None]:
    child = run_child([sys.executable, "-c", "import zoopipe"], timeout=timeout)
    if child.returncode == 0:
        return True, None
    tail = child.stderr.strip().splitlines()[-1:] or [f"exit code {child.returncode}"]
    return False, f"zoopipe is not importable ({tail[0]}); its rows are n/a"


def describe_result(r: dict[str, Any]) -> str:
    if r["ok"]:
        return (
            f"{r['rows_per_s']:,.0f} rows/s in {r['seconds']:.2f} s, "
            f"peak RSS {fmt_mib(r['peak_rss_bytes'])} MiB"
        )
    return f"FAILED: {r['error']}"


def parent_main(args: argparse.Namespace) -> int:
    began = time.perf_counter()
    load_before = _loadavg()
    rows = QUICK_ROWS if args.quick and args.rows is None else (args.rows or 1_000_000)
    if args.rss_rows:
        rss_rows = tuple(int(x.replace("_", "")) for x in args.rss_rows.split(","))
        if len(rss_rows) != 2 or min(rss_rows) < 1:
            raise SystemExit("--rss-rows takes two positive counts, e.g. 1000000,4000000")
    elif args.quick and args.rows is None:
        rss_rows = QUICK_RSS_ROWS
    else:
        rss_rows = (rows, 4 * rows)
    data_dir = Path(args.data_dir).resolve()
    if args.columnar_table:
        return columnar_main(args, rows, data_dir)
    if args.hooks:
        return hooks_main(args, rows, data_dir)
    if args.wide:
        return wide_main(args, rows, data_dir)

    # -- data -----------------------------------------------------------------------------------
    sources: dict[int, Path] = {}
    for n in sorted({rows, *rss_rows}):
        sources[n] = ensure_people_csv(n, data_dir, seed=args.seed)
        counted = count_csv_records(sources[n])
        if counted != n:
            raise SystemExit(f"{sources[n]} holds {counted} records, expected {n}: delete it")

    if args.no_zoopipe:
        have_zoopipe, zoopipe_note = False, "zoopipe skipped (--no-zoopipe); its rows are n/a"
    else:
        have_zoopipe, zoopipe_note = zoopipe_status(args.timeout)
    if zoopipe_note:
        progress(f"NOTE: {zoopipe_note}")

    work_dir = Path(tempfile.mkdtemp(prefix="run-", dir=data_dir))
    try:
        # -- throughput ---------------------------------------------------------------------------
        cases = [Case(PYARROW, "parquet", 1, rows, sources[rows])]
        for output in OUTPUTS:
            for workers in sorted({1, args.workers}):
                cases.append(Case(HPC, output, workers, rows, sources[rows]))
                if have_zoopipe:
                    cases.append(Case(ZOOPIPE, output, workers, rows, sources[rows]))
        runs: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
        for repeat in range(args.repeat):
            for case in cases:
                warm_file(case.source)
                tag = f"[{repeat + 1}/{args.repeat}] " if args.repeat > 1 else ""
                progress(f"{tag}{case.label}, {case.workers} worker(s), {case.rows:,} rows ...")
                result = measure(case, work_dir, args.timeout)
                progress(f"    {describe_result(result)}")
                runs.setdefault((case.engine, case.output, case.workers), []).append(result)
        throughput = [best_of(v) for v in runs.values()]
        if not have_zoopipe:
            for output in OUTPUTS:
                for workers in sorted({1, args.workers}):
                    throughput.append(_missing(ZOOPIPE, output, workers, rows, zoopipe_note))
        _add_ratios(throughput)

        # -- peak RSS of one worker, small and large input ----------------------------------------
        rss_engines = [HPC] + ([ZOOPIPE] if have_zoopipe and not args.rss_hpc_only else [])
        rss: list[dict[str, Any]] = []
        for engine in rss_engines:
            for output in OUTPUTS:
                for n in rss_rows:
                    reuse = runs.get((engine, output, 1)) if n == rows else None
                    if reuse:
                        result = best_of(reuse)
                        result["reused_from_throughput"] = True
                    else:
                        case = Case(engine, output, 1, n, sources[n])
                        warm_file(case.source)
                        progress(f"peak RSS: {case.label}, 1 worker, {n:,} rows ...")
                        result = measure(case, work_dir, args.timeout)
                        progress(f"    {describe_result(result)}")
                        result["reused_from_throughput"] = False
                    result.pop("repeats", None)
                    rss.append(result)
        rss_ratios = _rss_ratios(rss, rss_rows)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)

    total = time.perf_counter() - began
    results = {
        "benchmark": "throughput",
        "rows": rows,
        "rss_rows": list(rss_rows),
        "workers": args.workers,
        "repeat": args.repeat,
        "seed": args.seed,
        "quick": bool(args.quick),
        "inputs": {str(n): str(p) for n, p in sources.items()},
        "zoopipe_available": have_zoopipe,
        "zoopipe_note": zoopipe_note,
        "environment": environment(),
        "throughput": throughput,
        "rss": rss,
        "rss_ratios": rss_ratios,
        "total_seconds": total,
        "load_average_before": load_before,
        "load_average_after": _loadavg(),
    }
    print_report(results)
    if args.json:
        write_results(args.json, results)
    failed = [r for r in throughput + rss if r["engine"] != ZOOPIPE and not r["ok"]]
    if failed:
        print(
            f"\n{len(failed)} zoopipe_hpc/pyarrow measurement(s) FAILED, see above.",
            file=sys.stderr,
        )
        return 1
    return 0


# ==============================================================================================
# --columnar-table: the columnar fast path, clean and 2 % dirty input, one worker
# ==============================================================================================

#: Every 50th record of the dirty input has an id that is not an integer (2 %).
DIRTY_EVERY = 50


def ensure_dirty_csv(clean: Path) -> tuple[Path, int]:
    """A copy of ``clean`` with every 50th record's id made invalid; (path, invalid rows)."""
    path = clean.with_name(f"{clean.stem}-dirty{DIRTY_EVERY}.csv")
    invalid = 0
    with open(clean, encoding="utf-8", newline="") as f:
        header = f.readline()
        if path.exists():
            for index, _ in enumerate(f):
                invalid += index % DIRTY_EVERY == DIRTY_EVERY // 3
            return path, invalid
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8", newline="") as out:
            out.write(header)
            for index, line in enumerate(f):
                if index % DIRTY_EVERY == DIRTY_EVERY // 3:
                    line = "x" + line  # "x123,..." is not an int, for anyone
                    invalid += 1
                out.write(line)
        os.replace(tmp, path)
    return path, invalid


def ensure_zoned_csv(clean: Path) -> Path:
    """A copy of ``clean`` with a ``seen`` column: ISO-8601 timestamps ending in ``Z``
    (``ZOOPIPE_BENCH_MIXED_ZONES=1``: every 7th in ``+02:00``, so batches mix two zones)."""
    mixed = os.environ.get("ZOOPIPE_BENCH_MIXED_ZONES") == "1"
    path = clean.with_name(f"{clean.stem}-zoned{'-mixed' if mixed else ''}.csv")
    if path.exists():
        return path
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    zone = dt.timezone(dt.timedelta(hours=2))
    tmp = path.with_name(path.name + ".tmp")
    with open(clean, encoding="utf-8", newline="") as f, open(tmp, "w", encoding="utf-8") as out:
        out.write(f.readline().rstrip("\n") + ",seen\n")
        for index, line in enumerate(f):
            moment = start + dt.timedelta(seconds=37 * index, microseconds=index % 1000)
            if mixed and index % 7 == 3:
                text = moment.astimezone(zone).isoformat()
            else:
                text = moment.isoformat().replace("+00:00", "Z")
            out.write(f"{line.rstrip(chr(10))},{text}\n")
    os.replace(tmp, path)
    return path


def columnar_main(args: argparse.Namespace, rows: int, data_dir: Path) -> int:
    """Clean and 2 %-dirty CSV to Parquet and JSON Lines, one worker: zoopipe_hpc with the
    columnar fast path, zoopipe_hpc on the row path, ZooPipe, and plain pyarrow."""
    began = time.perf_counter()
    clean = ensure_people_csv(rows, data_dir, seed=args.seed)
    if args.zoned:
        clean = ensure_zoned_csv(clean)
    dirty, invalid = ensure_dirty_csv(clean)
    zoned = bool(args.zoned)
    if args.no_zoopipe:
        have_zoopipe, zoopipe_note = False, "zoopipe skipped (--no-zoopipe)"
    else:
        have_zoopipe, zoopipe_note = zoopipe_status(args.timeout)
    inputs = [("clean", clean, 0), (f"{100 / DIRTY_EVERY:g}% dirty", dirty, invalid)]
    work_dir = Path(tempfile.mkdtemp(prefix="run-", dir=data_dir))
    results: list[dict[str, Any]] = []
    try:
        cases: list[tuple[str, Case]] = [
            ("clean", Case(PYARROW, output, 1, rows, clean, zoned=zoned)) for output in OUTPUTS
        ]
        for name, source, bad in inputs:
            for output in OUTPUTS:
                cases.append((name, Case(HPC, output, 1, rows, source, bad, zoned=zoned)))
                cases.append(
                    (name, Case(HPC, output, 1, rows, source, bad, columnar=False, zoned=zoned))
                )
                if have_zoopipe:
                    cases.append((name, Case(ZOOPIPE, output, 1, rows, source, bad, zoned=zoned)))
        runs: dict[tuple[str, str, str, bool], list[dict[str, Any]]] = {}
        for _ in range(args.repeat):
            for name, case in cases:
                warm_file(case.source)
                what = case.label + ("" if case.columnar else " [row path]")
                progress(f"{name}: {what}, {case.rows:,} rows ...")
                result = measure(case, work_dir, args.timeout)
                progress(f"    {describe_result(result)}")
                result["input"] = name
                result["columnar"] = case.columnar
                key = (name, case.engine, case.output, case.columnar)
                runs.setdefault(key, []).append(result)
        results = [best_of(v) for v in runs.values()]
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    index = {(r["input"], r["engine"], r["output"], r["columnar"]): r for r in results}
    table = []
    for r in results:
        zoo = index.get((r["input"], ZOOPIPE, r["output"], True))
        limit = index.get(("clean", PYARROW, r["output"], True), {}).get("rows_per_s")
        r["pyarrow_over_this"] = ratio(limit, r["rows_per_s"]) if r["engine"] != PYARROW else None
        run = r["label"] + ("" if r["columnar"] or r["engine"] != HPC else " [row path]")
        table.append(
            [
                r["input"],
                run,
                f"{r['seconds']:.2f}" if r.get("seconds") is not None else "n/a",
                fmt_rate(r["rows_per_s"]),
                fmt_ratio(ratio(r["rows_per_s"], zoo["rows_per_s"] if zoo else None))
                if r["engine"] == HPC
                else "",
                fmt_ratio(r["pyarrow_over_this"]) if r["engine"] != PYARROW else "",
                fmt_mib(r["peak_rss_bytes"]),
                "" if r["ok"] else f"FAILED: {r['error']}",
            ]
        )
    env = environment()
    print()
    print(
        f"columnar fast path: {rows:,}-row CSV, "
        f"{'5-field model with a time-zoned timestamp' if zoned else '4-field model'}, one worker "
        f"(dirty: {invalid:,} invalid rows); pyarrow baselines: clean input, no validation, "
        "pyarrow/this against the baseline of the same output"
    )
    versions = ", ".join(f"{k} {v or 'not installed'}" for k, v in env["versions"].items())
    print(f"machine: {env['usable_cpus'] or env['cpu_count']} CPUs, {versions}")
    if zoopipe_note:
        print(f"NOTE: {zoopipe_note}")
    print()
    print(
        format_table(
            ["input", "run", "seconds", "rows/s", "hpc/zoopipe", "pyarrow/this", "peak MiB", ""],
            table,
            align="llrrrrrl",
        )
    )
    print(f"\ntotal benchmark time: {time.perf_counter() - began:.1f} s")
    if args.json:
        payload = {"benchmark": "columnar", "rows": rows, "invalid": invalid, "runs": results}
        write_results(args.json, payload)
    failed = [r for r in results if r["engine"] != ZOOPIPE and not r["ok"]]
    return 1 if failed else 0


# ==============================================================================================
# --hooks: a hook that adds a field, row hook vs Arrow hook, one worker
# ==============================================================================================


def hooks_main(args: argparse.Namespace, rows: int, data_dir: Path) -> int:
    """CSV -> Parquet, one worker: zoopipe_hpc without a hook, with a row hook and with an
    Arrow hook adding the same field, and ZooPipe with the same row hook; ratios against
    zoopipe_hpc without a hook and against ZooPipe's row hook, all from this run."""
    began = time.perf_counter()
    source = ensure_people_csv(rows, data_dir, seed=args.seed)
    if args.no_zoopipe:
        have_zoopipe, zoopipe_note = False, "zoopipe skipped (--no-zoopipe)"
    else:
        have_zoopipe, zoopipe_note = zoopipe_status(args.timeout)
    cases = [Case(HPC, "parquet", 1, rows, source, hook=h) for h in HOOK_LABEL]
    if have_zoopipe:
        cases.append(Case(ZOOPIPE, "parquet", 1, rows, source, hook=ROW_HOOK))
    work_dir = Path(tempfile.mkdtemp(prefix="run-", dir=data_dir))
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    try:
        for _ in range(args.repeat):
            for case in cases:
                warm_file(case.source)
                progress(f"{case.label}, {HOOK_LABEL[case.hook]}, {case.rows:,} rows ...")
                result = measure(case, work_dir, args.timeout)
                progress(f"    {describe_result(result)}")
                result["hook"] = case.hook
                runs.setdefault((case.engine, case.hook), []).append(result)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    results = [best_of(v) for v in runs.values()]
    index = {(r["engine"], r["hook"]): r for r in results}
    plain = index.get((HPC, NO_HOOK), {}).get("rows_per_s")
    zoo = index.get((ZOOPIPE, ROW_HOOK), {}).get("rows_per_s")
    table = []
    for r in results:
        r["vs_no_hook"] = ratio(r["rows_per_s"], plain)
        r["vs_zoopipe_row_hook"] = ratio(r["rows_per_s"], zoo) if r["engine"] == HPC else None
        table.append(
            [
                f"{r['engine']} {HOOK_LABEL[r['hook']]}",
                f"{r['seconds']:.2f}" if r.get("seconds") is not None else "n/a",
                fmt_rate(r["rows_per_s"]),
                fmt_ratio(r["vs_no_hook"]),
                fmt_ratio(r["vs_zoopipe_row_hook"]) if r["engine"] == HPC else "",
                fmt_mib(r["peak_rss_bytes"]),
                "" if r["ok"] else f"FAILED: {r['error']}",
            ]
        )
    print()
    print(f"hooks: {rows:,}-row CSV -> Parquet, one worker, a hook adding `tag` before validation")
    if zoopipe_note:
        print(f"NOTE: {zoopipe_note}")
    print()
    print(
        format_table(
            ["run", "seconds", "rows/s", "/no hook", "/zoopipe row hook", "peak MiB", ""],
            table,
            align="lrrrrrl",
        )
    )
    print(f"\ntotal benchmark time: {time.perf_counter() - began:.1f} s")
    if args.json:
        write_results(args.json, {"benchmark": "hooks", "rows": rows, "runs": results})
    failed = [r for r in results if r["engine"] != ZOOPIPE and not r["ok"]]
    return 1 if failed else 0


# ==============================================================================================
# --wide: a realistic 16-column table with missing markers, one worker, CSV -> Parquet
# ==============================================================================================


def wide_main(args: argparse.Namespace, rows: int, data_dir: Path) -> int:
    """The wide CSV (``_wide.py``) to Parquet, one worker: zoopipe_hpc on the fast path (with
    and without reading ahead) and on the row path, ZooPipe (its model maps ``NA`` to None)
    and plain pyarrow (no validation), with hpc/zoopipe and pyarrow/this ratios from this
    run."""
    began = time.perf_counter()
    source, invalid = ensure_wide_csv(rows, data_dir, args.seed)
    load_before = _loadavg()
    zoopipe_note: str | None
    if args.no_zoopipe:
        have_zoopipe, zoopipe_note = False, "zoopipe skipped (--no-zoopipe)"
    else:
        have_zoopipe, zoopipe_note = zoopipe_status(args.timeout)
    cases = [
        Case(PYARROW, "parquet", 1, rows, source, wide=True),
        Case(HPC, "parquet", 1, rows, source, invalid, wide=True),
        Case(HPC, "parquet", 1, rows, source, invalid, wide=True, read_ahead=False),
        Case(HPC, "parquet", 1, rows, source, invalid, columnar=False, wide=True),
    ]
    if have_zoopipe:
        cases.append(Case(ZOOPIPE, "parquet", 1, rows, source, invalid, wide=True))
    work_dir = Path(tempfile.mkdtemp(prefix="run-", dir=data_dir))
    runs: dict[tuple[str, bool, bool], list[dict[str, Any]]] = {}
    try:
        for _ in range(args.repeat):
            for case in cases:
                warm_file(case.source)
                what = case.label + _wide_variant(case.columnar, case.read_ahead)
                progress(f"wide: {what}, {case.rows:,} rows ...")
                result = measure(case, work_dir, args.timeout)
                progress(f"    {describe_result(result)}")
                result["columnar"] = case.columnar
                result["read_ahead"] = case.read_ahead
                runs.setdefault((case.engine, case.columnar, case.read_ahead), []).append(result)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    results = [best_of(v) for v in runs.values()]
    index = {(r["engine"], r["columnar"], r["read_ahead"]): r for r in results}
    zoo = index.get((ZOOPIPE, True, True), {}).get("rows_per_s")
    limit = index.get((PYARROW, True, True), {}).get("rows_per_s")
    table = []
    for r in results:
        hpc = r["engine"] == HPC
        r["vs_zoopipe"] = ratio(r["rows_per_s"], zoo) if hpc else None
        r["pyarrow_over_this"] = ratio(limit, r["rows_per_s"]) if r["engine"] != PYARROW else None
        run = r["label"] + (_wide_variant(r["columnar"], r["read_ahead"]) if hpc else "")
        table.append(
            [
                run,
                f"{r['seconds']:.2f}" if r.get("seconds") is not None else "n/a",
                f"{r['cpu_seconds']:.2f}" if r.get("cpu_seconds") is not None else "n/a",
                fmt_rate(r["rows_per_s"]),
                fmt_ratio(r["vs_zoopipe"]) if hpc else "",
                fmt_ratio(r["pyarrow_over_this"]) if r["engine"] != PYARROW else "",
                fmt_mib(r["peak_rss_bytes"]),
                "" if r["ok"] else f"FAILED: {r['error']}",
            ]
        )
    print()
    print(
        f"wide: {rows:,}-row CSV, {len(WideRecord.model_fields)} columns ({invalid:,} invalid "
        "rows), -> Parquet, one worker; zoopipe's model maps NA to None with before-validators "
        "(its CSV reader has no null markers); pyarrow: no validation"
    )
    if zoopipe_note:
        print(f"NOTE: {zoopipe_note}")
    print()
    print(
        format_table(
            ["run", "seconds", "CPU s", "rows/s", "hpc/zoopipe", "pyarrow/this", "peak MiB", ""],
            table,
            align="lrrrrrrl",
        )
    )
    load_after = _loadavg()
    if load_before and load_after:
        print(
            f"\nload average (1 min) before {load_before[0]:.2f}, after {load_after[0]:.2f}; "
            f"{len(os.sched_getaffinity(0))} CPUs usable"
        )
    print(f"total benchmark time: {time.perf_counter() - began:.1f} s")
    if args.json:
        payload = {
            "benchmark": "wide",
            "rows": rows,
            "invalid": invalid,
            "load_average_before": load_before,
            "load_average_after": load_after,
            "runs": results,
        }
        write_results(args.json, payload)
    failed = [r for r in results if r["engine"] != ZOOPIPE and not r["ok"]]
    return 1 if failed else 0


def _wide_variant(columnar: bool, read_ahead: bool) -> str:
    """The label of a zoopipe_hpc run of the wide table that is not the default one."""
    if not columnar:
        return " [row path]"
    return "" if read_ahead else " [no read-ahead]"


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _missing(engine: str, output: str, workers: int, rows: int, why: str | None) -> dict[str, Any]:
    case = Case(engine, output, workers, rows, Path())
    return {
        "engine": engine,
        "output": output,
        "conversion": f"csv->{output}",
        "label": case.label,
        "workers": workers,
        "rows": rows,
        "seconds": None,
        "cpu_seconds": None,
        "rows_per_s": None,
        "rows_per_cpu_s": None,
        "peak_rss_bytes": None,
        "startup_rss_bytes": None,
        "ok": False,
        "error": why,
        "error_kind": "NotAvailable",
        "note": None,
        "output_rows": None,
    }


def _add_ratios(throughput: list[dict[str, Any]]) -> None:
    index = {(r["engine"], r["output"], r["workers"]): r for r in throughput}
    limit = index.get((PYARROW, "parquet", 1), {}).get("rows_per_s")
    for r in throughput:
        r["vs_pyarrow"] = ratio(r["rows_per_s"], limit)
        r["vs_zoopipe"] = None
        r["vs_zoopipe_cpu"] = None
        if r["engine"] == HPC:
            other = index.get((ZOOPIPE, r["output"], r["workers"]))
            r["vs_zoopipe"] = ratio(r["rows_per_s"], other["rows_per_s"] if other else None)
            r["vs_zoopipe_cpu"] = ratio(
                r.get("rows_per_cpu_s"), other.get("rows_per_cpu_s") if other else None
            )


def _rss_ratios(rss: list[dict[str, Any]], rss_rows: tuple[int, ...]) -> list[dict[str, Any]]:
    small, large = rss_rows
    out = []
    seen = []
    for r in rss:
        key = (r["engine"], r["output"])
        if key not in seen:
            seen.append(key)
    for engine, output in seen:
        a = next(
            (r for r in rss if (r["engine"], r["output"], r["rows"]) == (engine, output, small)),
            None,
        )
        b = next(
            (r for r in rss if (r["engine"], r["output"], r["rows"]) == (engine, output, large)),
            None,
        )

        def growth(r: dict[str, Any] | None) -> int | None:
            if (
                not r
                or not r["ok"]
                or not r.get("peak_rss_bytes")
                or not r.get("startup_rss_bytes")
            ):
                return None
            return max(0, r["peak_rss_bytes"] - r["startup_rss_bytes"])

        def peak(r: dict[str, Any] | None) -> int | None:
            return r["peak_rss_bytes"] if r and r["ok"] else None

        out.append(
            {
                "engine": engine,
                "output": output,
                "small_rows": small,
                "large_rows": large,
                "small_peak_rss_bytes": peak(a),
                "large_peak_rss_bytes": peak(b),
                "peak_ratio": ratio(peak(b), peak(a)),
                "small_growth_bytes": growth(a),
                "large_growth_bytes": growth(b),
                "growth_ratio": ratio(growth(b), growth(a)),
                "rows_ratio": large / small,
            }
        )
    return out


def print_report(results: dict[str, Any]) -> None:
    env = results["environment"]
    versions = ", ".join(f"{k} {v or 'not installed'}" for k, v in env["versions"].items())
    rows = results["rows"]
    print()
    print(f"throughput: {rows:,}-row CSV, 4-field pydantic model (seed {results['seed']})")
    print(
        f"machine: {env['usable_cpus'] or env['cpu_count']} CPUs, Python {env['python']}, "
        f"{versions}"
    )
    before, after = results.get("load_average_before"), results.get("load_average_after")
    if before and after:
        cpus = env["usable_cpus"] or env["cpu_count"] or 1
        busy = max(before[0], after[0]) > 0.5 * cpus
        print(
            f"load average (1 min) before {before[0]:.2f}, after {after[0]:.2f}"
            + (
                " -- the machine was busy: wall-clock numbers are noisy, compare CPU s"
                if busy
                else ""
            )
        )
    if results["zoopipe_note"]:
        print(f"NOTE: {results['zoopipe_note']}")
    print()

    order = {PYARROW: 0, HPC: 1, ZOOPIPE: 2}
    table = []
    notes = []
    for r in sorted(
        results["throughput"],
        key=lambda r: (
            r["engine"] != PYARROW,
            OUTPUTS.index(r["output"]),
            r["workers"],
            order[r["engine"]],
        ),
    ):
        if r["ok"]:
            status = r.get("note") or ""
        else:
            status = ("n/a: " if r["engine"] == ZOOPIPE else "FAILED: ") + str(r["error"])
        if len(status) > 60:
            notes.append(f"{r['label']} ({r['workers']}w): {status}")
            status = status[:57] + "..."
        table.append(
            [
                r["label"],
                r["workers"],
                f"{r['seconds']:.2f}" if r["seconds"] is not None else "n/a",
                f"{r['cpu_seconds']:.2f}" if r.get("cpu_seconds") is not None else "n/a",
                fmt_rate(r["rows_per_s"]),
                fmt_ratio(r["vs_zoopipe"]) if r["engine"] == HPC else "",
                fmt_ratio(r["vs_zoopipe_cpu"]) if r["engine"] == HPC else "",
                fmt_ratio(r["vs_pyarrow"]),
                fmt_mib(r["peak_rss_bytes"]),
                status,
            ]
        )
    print(
        format_table(
            [
                "run",
                "workers",
                "seconds",
                "CPU s",
                "rows/s",
                "hpc/zoopipe",
                "hpc/zoopipe CPU",
                "vs pyarrow",
                "peak RSS MiB",
                "note",
            ],
            table,
            align="lrrrrrrrrl",
        )
    )
    for note in notes:
        print(f"  * {note}")

    small, large = results["rss_rows"]
    print()
    print(
        f"peak RSS of one worker (fresh process each), {small:,} vs {large:,} rows "
        f"({large / small:g}x the input)"
    )
    print()
    table = []
    for q in results["rss_ratios"]:
        table.append(
            [
                q["engine"],
                OUTPUT_LABEL[q["output"]],
                fmt_mib(q["small_peak_rss_bytes"]),
                fmt_mib(q["large_peak_rss_bytes"]),
                fmt_ratio(q["peak_ratio"]),
                fmt_mib(q["small_growth_bytes"]),
                fmt_mib(q["large_growth_bytes"]),
                fmt_ratio(q["growth_ratio"]),
            ]
        )
    s, g = short_rows(small), short_rows(large)
    print(
        format_table(
            [
                "engine",
                "output",
                f"peak MiB @{s}",
                f"peak MiB @{g}",
                f"{g}/{s}",
                f"growth MiB @{s}",
                f"growth MiB @{g}",
                f"growth {g}/{s}",
            ],
            table,
            align="llrrrrrr",
        )
    )
    for r in results["rss"]:
        if not r["ok"]:
            print(
                f"  * {r['label']} at {r['rows']:,} rows: "
                f"{'n/a' if r['engine'] == ZOOPIPE else 'FAILED'}: {r['error']}"
            )
    print()
    print(f"total benchmark time: {results['total_seconds']:.1f} s")


# ==============================================================================================


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Rows/s and peak RSS of zoopipe_hpc vs zoopipe vs plain pyarrow."
    )
    parser.add_argument(
        "--rows",
        type=int,
        default=None,
        help="rows of the throughput input (default 1,000,000; 50,000 with --quick)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"small sizes for a smoke test: {QUICK_ROWS:,} rows, RSS pair "
        f"{QUICK_RSS_ROWS[0]:,} / {QUICK_RSS_ROWS[1]:,}",
    )
    parser.add_argument(
        "--rss-rows",
        default=None,
        metavar="SMALL,LARGE",
        help="input sizes of the peak-RSS pair (default ROWS,4*ROWS)",
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="workers of the parallel rows (default 2)"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run every throughput case this many times, keep the fastest",
    )
    parser.add_argument("--json", default=None, metavar="OUT", help="also write results here")
    parser.add_argument(
        "--data-dir",
        default=str(DEFAULT_DATA_DIR),
        help="where inputs are generated and cached, and outputs written "
        "(default benchmarks/.data)",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="data generator seed")
    parser.add_argument(
        "--timeout",
        type=float,
        default=1800.0,
        help="seconds before one measurement is killed (default 1800)",
    )
    parser.add_argument("--no-zoopipe", action="store_true", help="skip the zoopipe rows")
    parser.add_argument(
        "--columnar-table",
        action="store_true",
        help="only the columnar table: clean and 2%% dirty input, one worker, zoopipe_hpc "
        "(fast path and row path) vs zoopipe vs plain pyarrow",
    )
    parser.add_argument(
        "--hooks",
        action="store_true",
        help="only the hooks table: a hook adding a field, CSV -> Parquet, one worker: "
        "zoopipe_hpc without hook, with a row hook, with an Arrow hook, and zoopipe's row hook",
    )
    parser.add_argument(
        "--zoned",
        action="store_true",
        help="with --columnar-table: add a time-zoned ISO-8601 timestamp column (ending in Z) "
        "to the input and the model",
    )
    parser.add_argument(
        "--wide",
        action="store_true",
        help="only the wide table: a 16-column CSV (NA markers, enums, timestamps, UUIDs, "
        "3%% invalid) -> Parquet, one worker: zoopipe_hpc (fast path and row path) vs zoopipe "
        "vs plain pyarrow",
    )
    parser.add_argument(
        "--rss-hpc-only",
        action="store_true",
        help="measure the RSS pair for zoopipe_hpc only (not for zoopipe)",
    )
    # Child mode (internal).
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--engine", choices=[HPC, ZOOPIPE, PYARROW], help=argparse.SUPPRESS)
    parser.add_argument("--output", choices=OUTPUTS, help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--out-dir", help=argparse.SUPPRESS)
    parser.add_argument(
        "--hook", choices=[NO_HOOK, ROW_HOOK, ARROW_HOOK], default=NO_HOOK, help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.workers < 1 or args.repeat < 1:
        parser.error("--workers and --repeat must be at least 1")
    if args.rows is not None and args.rows < 1:
        parser.error("--rows must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args)
    return parent_main(args)


if __name__ == "__main__":
    sys.exit(main())
