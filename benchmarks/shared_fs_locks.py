"""The commit lock taken from two clients of a real shared filesystem at once.

Two processes take and release the commit lock of one target (``zoopipe_hpc.commit._locks.
locked``) as fast as they can, through the two clients of the GlusterFS volume of
``scripts/shared-fs``; the baseline of the same invocation is both processes on the host's
client. Printed: the acquisitions, how many met a transient ENOENT/ESTALE inside the lock
protocol and were tried again, how many ended as a ``CommitError`` and how many as anything
else (must be 0), and the time per acquisition as a ratio to the baseline.

    sudo scripts/shared-fs up --profile default        # or --profile coherent
    sudo scripts/shared-fs client /mnt/zoopipe-shared-b
    python benchmarks/shared_fs_locks.py               # --acquisitions 150
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zoopipe_hpc.commit._locks import locked  # noqa: E402
from zoopipe_hpc.errors import CommitError  # noqa: E402

_FORK = multiprocessing.get_context("fork")


class _Retries(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "transient" in record.getMessage():
            self.count += 1


def _contend(target: str, times: int, results: Any) -> None:
    retries = _Retries()
    logger = logging.getLogger("zoopipe_hpc.commit._locks")
    logger.addHandler(retries)
    logger.setLevel(logging.DEBUG)
    commit_errors = others = 0
    started = time.monotonic()
    for _ in range(times):
        try:
            with locked(Path(target), timeout=120):
                pass
        except CommitError:
            commit_errors += 1
        except Exception as exc:  # noqa: BLE001 - counted: the lock must raise nothing else
            others += 1
            print(f"not a CommitError: {type(exc).__name__}: {exc}", file=sys.stderr)
    results.put((retries.count, commit_errors, others, time.monotonic() - started))


def _run(roots: tuple[Path, Path], folder: str, times: int) -> dict[str, float]:
    results = _FORK.Queue()
    workers = [
        _FORK.Process(target=_contend, args=(str(root / folder / "target"), times, results))
        for root in roots
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    rows = [results.get() for _ in workers]
    return {
        "acquisitions": 2 * times,
        "retried": sum(r[0] for r in rows),
        "commit_errors": sum(r[1] for r in rows),
        "other_errors": sum(r[2] for r in rows),
        "seconds_each": max(r[3] for r in rows) / times,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", type=Path, default=Path("/mnt/zoopipe-shared"))
    parser.add_argument("--other", type=Path, default=Path("/mnt/zoopipe-shared-b"))
    parser.add_argument("--acquisitions", type=int, default=150, help="per process")
    args = parser.parse_args(argv)
    if not os.path.ismount(args.host) or not os.path.ismount(args.other):
        print(
            f"{args.host} and {args.other} must be two clients of one volume: "
            "scripts/shared-fs up; scripts/shared-fs client /mnt/zoopipe-shared-b",
            file=sys.stderr,
        )
        return 2
    folder = f"bench-locks-{uuid.uuid4().hex[:8]}"
    (args.host / folder).mkdir(mode=0o700)
    base = _run((args.host, args.host), folder, args.acquisitions)
    cross = _run((args.host, args.other), folder, args.acquisitions)
    print(
        f"{'clients':<13} {'taken':>6} {'retried':>8} {'CommitError':>12} {'other':>6} {'each':>9}"
    )
    for name, row in (("same client", base), ("two clients", cross)):
        print(
            f"{name:<13} {row['acquisitions']:>6} {row['retried']:>8} {row['commit_errors']:>12} "
            f"{row['other_errors']:>6} {row['seconds_each'] * 1000:>7.1f}ms"
        )
    ratio = cross["seconds_each"] / base["seconds_each"] if base["seconds_each"] else float("nan")
    print(f"two clients take {ratio:.1f}x the time per acquisition of one")
    return 1 if base["other_errors"] or cross["other_errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
