"""How fresh another client's view of a progress record is, on a real shared filesystem.

A writer process publishes a progress record through one client of the shared volume (the host
mount of ``scripts/shared-fs``), updating it every 2 ms (``flush_interval=0``, so every update is
msynced), then calls ``finish()``. A reader polls it through a second, independent client and
records how old each accepted record is (its age: now minus the writer's heartbeat) and how long
FINISHED takes to arrive (now minus the writer's end time). The same reader on the writer's own
client is the baseline, measured in the same invocation; the results are printed as the other
client's figures and their ratio to the baseline. Both read paths are measured: O_DIRECT, and the
buffered path of a filesystem that refuses O_DIRECT (cached pages dropped before each read).

    sudo scripts/shared-fs up --profile default        # or --profile coherent
    sudo scripts/shared-fs client /mnt/zoopipe-shared-b
    python benchmarks/shared_fs_freshness.py           # --runs 5 --seconds 3 --poll 0.01

Nothing here asserts a time; tests/integration/test_shared_fs.py checks the documented bound.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zoopipe_hpc.progress import (  # noqa: E402
    ProgressReader,
    ProgressState,
    ProgressWriter,
    _direct_io,
)

_FORK = multiprocessing.get_context("fork")


def _writer(path: str, seconds: float, ready: Any) -> None:
    with ProgressWriter(path, "bench", flush_interval=0.0) as writer:
        writer.start()
        ready.set()
        end = time.monotonic() + seconds
        n = 0
        while time.monotonic() < end:
            n += 1
            writer.update(n, n, 0)
            time.sleep(0.002)
        writer.finish()


def _one_run(write: Path, read: Path, seconds: float, poll: float) -> dict[str, Any]:
    ready = _FORK.Event()
    process = _FORK.Process(target=_writer, args=(str(write), seconds, ready))
    process.start()
    if not ready.wait(60):
        raise RuntimeError("the writer did not start")
    reader = ProgressReader(read, expected_attempt_id="bench")
    ages: list[float] = []
    lag = float("inf")
    deadline = time.monotonic() + seconds + 30
    while time.monotonic() < deadline:
        snapshot = reader.poll()
        now = time.time()
        if snapshot is not None and snapshot.state is ProgressState.FINISHED:
            lag = now - snapshot.end_time
            break
        if snapshot is not None:
            ages.append(now - snapshot.heartbeat)
        time.sleep(poll)
    process.join(60)
    return {"ages": ages, "lag": lag}


def _measure(host: Path, other: Path, runs: int, seconds: float, poll: float) -> dict[str, Any]:
    folder = f"bench-freshness-{uuid.uuid4().hex[:8]}"
    (host / folder).mkdir(mode=0o700)
    results: dict[str, Any] = {}
    for mode in ("direct", "buffered"):
        saved = _direct_io.O_DIRECT
        if mode == "buffered":
            _direct_io.O_DIRECT = 0
        try:
            for side, root in (("same client", host), ("other client", other)):
                ages: list[float] = []
                lags: list[float] = []
                for k in range(runs):
                    name = f"{mode}-{side.split()[0]}-{k}.progress"
                    run = _one_run(host / folder / name, root / folder / name, seconds, poll)
                    ages.extend(run["ages"])
                    lags.append(run["lag"])
                ages.sort()
                results[f"{mode}/{side}"] = {
                    "age_p50": statistics.median(ages) if ages else float("nan"),
                    "age_max": ages[-1] if ages else float("nan"),
                    "finished_lag_max": max(lags),
                }
        finally:
            _direct_io.O_DIRECT = saved
    return results


def _ratio(value: float, base: float) -> str:
    return f"{value / base:.1f}x" if base > 0 and value != float("inf") else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", type=Path, default=Path("/mnt/zoopipe-shared"))
    parser.add_argument("--other", type=Path, default=Path("/mnt/zoopipe-shared-b"))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0, help="writer time per run")
    parser.add_argument("--poll", type=float, default=0.01, help="reader poll interval")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    if not os.path.ismount(args.host) or not os.path.ismount(args.other):
        print(
            f"{args.host} and {args.other} must be two clients of one volume: "
            "scripts/shared-fs up; scripts/shared-fs client /mnt/zoopipe-shared-b",
            file=sys.stderr,
        )
        return 2
    results = _measure(args.host, args.other, args.runs, args.seconds, args.poll)
    print(f"{'read path':<10} {'client':<13} {'age p50':>8} {'age max':>8} {'FINISHED lag':>13}")
    for key, row in results.items():
        mode, side = key.split("/")
        base = results[f"{mode}/same client"]
        ratio = (
            ""
            if side == "same client"
            else (
                f"   ({_ratio(row['age_max'], base['age_max'])} age max, "
                f"{_ratio(row['finished_lag_max'], base['finished_lag_max'])} lag of same client)"
            )
        )
        print(
            f"{mode:<10} {side:<13} {row['age_p50']:>7.3f}s {row['age_max']:>7.3f}s "
            f"{row['finished_lag_max']:>12.3f}s{ratio}"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
