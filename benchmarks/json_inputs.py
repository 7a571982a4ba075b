"""JSON inputs: what reading a ``.json`` array costs, and that its memory does not grow.

    python benchmarks/json_inputs.py                 # 250,000 and 1,000,000 rows
    python benchmarks/json_inputs.py --quick         # 20,000 and 80,000 rows (the smoke test)
    python benchmarks/json_inputs.py --json out.json

The same people (the 4-field ``Person`` rows of ``_common.py``) as a JSON array (one object a
line inside ``[`` ... ``]``) and as JSON Lines, at a small and a 4x larger size. Every case
runs in a fresh child process (``_common.run_child``), which reports the seconds of its work
and its own peak RSS (``VmHWM``):

* ``json.load``: the standard library parsing the whole array: the speed to compare with, and
  the memory a reader that holds the document needs;
* ``array reader``: ``JSONInputAdapter(...).batches()`` over the array, records counted and
  dropped (the streaming reader alone);
* ``array -> Parquet`` and ``JSON Lines -> Parquet``: a whole ``Pipe`` validating against
  ``Person``, one worker.

* ``folder -> Parquet``, ``.gz -> Parquet`` and ``.zst -> Parquet``: the same JSON Lines as
  a folder of files of ``--file-rows`` rows each (so 4x the rows is 4x the files), and
  compressed whole with gzip and with zstd (read as one stream, decompressed by the worker),
  through the same ``Pipe``: their ``peak growth`` shows that many inputs and compressed
  inputs are streamed like one plain file (``.zst`` needs the ``zstandard`` module).

Ratios: ``vs json.load`` is the case's seconds over ``json.load``'s at the same size;
``peak growth`` is the case's peak RSS at the larger size over its peak at the smaller one
(1.00x: memory does not grow with the input; ``json.load`` grows with it). Nothing here asserts
a time.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import shutil
import sys
import time
from itertools import islice
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402 - needs the path above when run as a script
    DEFAULT_DATA_DIR,
    DEFAULT_SEED,
    ensure_people_csv,
    environment,
    fmt_int,
    fmt_mib,
    fmt_rate,
    fmt_ratio,
    format_table,
    progress,
    ratio,
    run_child,
    warm_file,
    write_child_report,
    write_results,
)

DEFAULT_ROWS = (250_000, 1_000_000)
QUICK_ROWS = (20_000, 80_000)
QUICK_FILE_ROWS = 1_000
DEFAULT_FILE_ROWS = 10_000
#: The cases reading JSON Lines, each from its own form of the file.
LINE_CASES = ("JSON Lines -> Parquet", "folder -> Parquet", ".gz -> Parquet", ".zst -> Parquet")
CASES = ("json.load", "array reader", "array -> Parquet", *LINE_CASES)


def ensure_line_forms(lines: Path, file_rows: int) -> dict[str, Path]:
    """The JSON Lines file ``lines`` as each case of ``LINE_CASES`` reads it (made once): as it
    is, split into a folder of ``file_rows``-row files, gzip- and zstd-compressed."""
    forms = {"JSON Lines -> Parquet": lines}
    folder = lines.with_name(f"{lines.stem}-files-{file_rows}")
    if not folder.is_dir():
        progress(f"splitting {lines.name} into files of {file_rows:,} rows ...")
        building = Path(f"{folder}.tmp")
        shutil.rmtree(building, ignore_errors=True)
        building.mkdir()
        with open(lines, "rb") as f:
            for n, chunk in enumerate(iter(lambda: list(islice(f, file_rows)), [])):
                (building / f"part-{n:05d}.jsonl").write_bytes(b"".join(chunk))
        building.replace(folder)
    forms["folder -> Parquet"] = folder
    codecs: dict[str, tuple[str, Any]] = {".gz": (".gz", gzip.open)}
    if importlib.util.find_spec("zstandard") is not None:
        import zstandard

        codecs[".zst"] = (".zst", zstandard.open)
    for suffix, (ext, opener) in codecs.items():
        target = lines.with_name(lines.name + ext)
        if not target.exists():
            progress(f"compressing {lines.name} to {target.name} ...")
            with open(lines, "rb") as src, opener(f"{target}.tmp", "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            Path(f"{target}.tmp").replace(target)
        forms[f"{suffix} -> Parquet"] = target
    return forms


def ensure_json_files(rows: int, data_dir: Path, seed: int) -> tuple[Path, Path]:
    """The people of ``ensure_people_csv`` as a JSON array and as JSON Lines (made once)."""
    import pyarrow.csv as pacsv

    array = data_dir / f"people-{rows}-s{seed}.json"
    lines = data_dir / f"people-{rows}-s{seed}.jsonl"
    if array.exists() and lines.exists():
        return array, lines
    source = ensure_people_csv(rows, data_dir, seed)
    progress(f"writing {array.name} and {lines.name} ...")
    reader = pacsv.open_csv(source)
    first = True
    with (
        open(f"{array}.tmp", "w", encoding="utf-8") as a,
        open(f"{lines}.tmp", "w", encoding="utf-8") as j,
    ):
        a.write("[\n")
        for batch in reader:
            for row in batch.to_pylist():
                text = json.dumps(row, ensure_ascii=False)
                a.write(("  " if first else ", ") + text + "\n")
                j.write(text + "\n")
                first = False
        a.write("]\n")
    Path(f"{array}.tmp").replace(array)
    Path(f"{lines}.tmp").replace(lines)
    return array, lines


# -- the child ----------------------------------------------------------------------------------


def child_main(args: argparse.Namespace) -> int:
    source, out = Path(args.input), Path(args.out_dir)
    case = args.case
    if case == "json.load":
        started = time.perf_counter()
        with open(source, "rb") as f:
            rows = len(json.load(f))
        seconds = time.perf_counter() - started
    else:
        from _common import Person

        from zoopipe_hpc import JSONInputAdapter, ParquetOutputAdapter, Pipe

        started = time.perf_counter()
        if case == "array reader":
            rows = sum(len(b.records) for b in JSONInputAdapter(source).batches())
        else:
            name = case.split()[0].strip(".").lower()
            target = out / f"{source.name.split('.')[0]}-{name}.parquet"
            report = Pipe(JSONInputAdapter(source), ParquetOutputAdapter(target), Person).run()
            rows = report.success_count
        seconds = time.perf_counter() - started
    write_child_report({"case": case, "rows": rows, "seconds": seconds})
    return 0


# -- the parent ---------------------------------------------------------------------------------


def measure(case: str, source: Path, out_dir: Path, timeout: float) -> dict[str, Any]:
    argv = [sys.executable, __file__, "--child", "--case", case]
    argv += ["--input", str(source), "--out-dir", str(out_dir)]
    child = run_child(argv, timeout=timeout)
    result: dict[str, Any] = {"case": case, "input": source.name, "ok": child.ok}
    if child.ok and child.report is not None:
        result.update(rows=child.report["rows"], seconds=child.report["seconds"])
        result["peak_rss_bytes"] = child.peak_rss_bytes
    else:
        result["error"] = child.describe_failure()
    return result


def parent_main(args: argparse.Namespace) -> int:
    sizes = QUICK_ROWS if args.quick else DEFAULT_ROWS
    if args.rows:
        sizes = tuple(int(x) for x in args.rows.split(","))  # type: ignore[assignment]
    data_dir = Path(args.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    out_dir = data_dir / "json-inputs-out"
    out_dir.mkdir(exist_ok=True)
    results: list[dict[str, Any]] = []
    file_rows = args.file_rows or (QUICK_FILE_ROWS if args.quick else DEFAULT_FILE_ROWS)
    for rows in sizes:
        array, lines = ensure_json_files(rows, data_dir, args.seed)
        forms = ensure_line_forms(lines, file_rows)
        for case in CASES:
            if case in LINE_CASES and case not in forms:
                progress(f"{rows:,} rows: {case}: skipped (zstandard is not installed)")
                continue
            source = forms.get(case, array)
            for path in sorted(source.iterdir()) if source.is_dir() else [source]:
                warm_file(path)
            progress(f"{rows:,} rows: {case} ...")
            result = measure(case, source, out_dir, args.timeout)
            result["size"] = rows
            results.append(result)
    _add_ratios(results, sizes)
    print_table(results)
    if args.json:
        write_results(args.json, {"results": results, "environment": environment()})
    wrong = [r for r in results if not r["ok"] or r.get("rows") != r["size"]]
    for r in wrong:
        print(f"FAILED: {r['case']} at {r['size']:,} rows: {r.get('error', r.get('rows'))}")
    return 1 if wrong else 0


def _add_ratios(results: list[dict[str, Any]], sizes: tuple[int, ...]) -> None:
    by = {(r["case"], r["size"]): r for r in results}
    for r in results:
        base = by.get(("json.load", r["size"]), {})
        r["vs_json_load"] = ratio(r.get("seconds"), base.get("seconds"))
        plain = by.get(("JSON Lines -> Parquet", r["size"]), {})
        r["vs_jsonl"] = (
            ratio(r.get("seconds"), plain.get("seconds")) if r["case"] in LINE_CASES else None
        )
        small = by.get((r["case"], min(sizes)), {})
        r["peak_growth"] = ratio(r.get("peak_rss_bytes"), small.get("peak_rss_bytes"))


def print_table(results: list[dict[str, Any]]) -> None:
    headers = ["rows", "case", "seconds", "rows/s", "vs json.load", "vs JSONL", "peak MiB"]
    headers.append("peak growth")
    rows = [
        [
            fmt_int(r["size"]),
            r["case"],
            f"{r['seconds']:.2f}" if r.get("seconds") is not None else "n/a",
            fmt_rate(r["rows"] / r["seconds"] if r.get("seconds") else None),
            fmt_ratio(r["vs_json_load"]),
            fmt_ratio(r["vs_jsonl"]),
            fmt_mib(r.get("peak_rss_bytes")),
            fmt_ratio(r["peak_growth"]),
        ]
        for r in results
    ]
    print(format_table(headers, rows, align="rlrrrrrr"))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="JSON array input: speed and peak memory.")
    parser.add_argument("--quick", action="store_true", help="small sizes, for the smoke test")
    parser.add_argument("--rows", default=None, metavar="SMALL,LARGE", help="the two sizes")
    parser.add_argument("--json", default=None, metavar="OUT", help="also write results here")
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR), help="inputs and outputs")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="data generator seed")
    parser.add_argument(
        "--file-rows", type=int, default=None, help="rows a file of the folder case (10,000)"
    )
    parser.add_argument("--timeout", type=float, default=900, help="seconds per measurement")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--out-dir", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args)
    return parent_main(args)


if __name__ == "__main__":
    sys.exit(main())
