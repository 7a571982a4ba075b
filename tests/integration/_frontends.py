"""Helpers of the tests that look at the progress displays where people see them: a kernel spec
for this interpreter, free ports, and programs started in their own session and killed, with
every process they started, at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import psutil
import pytest

__all__ = [
    "end_family",
    "free_port",
    "kernel_spec",
    "need_tools",
    "session",
    "wait_until",
]

T = TypeVar("T")


def kernel_spec(root: Path) -> Path:
    """A ``python3`` kernel spec that runs this interpreter (and so this zoopipe_hpc); returns the
    folder to put first in ``JUPYTER_PATH``."""
    spec = root / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Python 3 (zoopipe_hpc tests)",
                "language": "python",
            }
        )
    )
    return root / "jupyter"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def need_tools(*names: str, packages: str) -> None:
    """Skip (or fail, in CI on a root Debian machine, where ``scripts/test`` installs them)
    when a program is not on PATH."""
    missing = [name for name in names if shutil.which(name) is None]
    if not missing:
        return
    problem = f"{', '.join(missing)} not on PATH (scripts/test installs the Debian {packages})"
    if os.environ.get("CI") and os.geteuid() == 0 and Path("/etc/debian_version").exists():
        pytest.fail(f"CI on a Debian machine as root must have them: {problem}")
    pytest.skip(problem)


def wait_until(what: str, probe: Callable[[], T | None], timeout: float, every: float = 0.2) -> T:
    """Call ``probe`` until it returns something other than None (or False); fail after
    ``timeout`` seconds saying what was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def _family(root: int) -> list[psutil.Process]:
    """The processes of ``root``'s session, and its descendants (a tmux pane, a browser's
    renderer can be in sessions of their own)."""
    found = {}
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getsid(proc.pid) == root:
                found[proc.pid] = proc
        except (ProcessLookupError, PermissionError):
            continue
    try:
        found.update((p.pid, p) for p in psutil.Process(root).children(recursive=True))
    except psutil.NoSuchProcess:
        pass
    return list(found.values())


def end_family(root: int) -> list[str]:
    """SIGTERM, then SIGKILL, every process of ``root``'s family (see :func:`_family`); the
    ones still alive after that, as "pid name"."""
    members = _family(root)  # taken first: orphans leave the tree once their parent is gone
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = [p for p in members if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        if not alive:
            return []
        for proc in alive:
            try:
                proc.send_signal(sig)
            except psutil.NoSuchProcess:
                continue
        psutil.wait_procs(alive, timeout=5.0)
    left = []
    for proc in members:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                left.append(f"{proc.pid} {proc.name()}")
        except psutil.NoSuchProcess:
            continue
    return left


@contextmanager
def session(
    argv: Sequence[str], *, log: Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` in a session of its own (output to ``log``); at the end, kill it and every
    process it started (kernels, workers, browsers), and fail if one survives."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        left = end_family(proc.pid)
        proc.wait(timeout=10)
        if left:
            raise AssertionError(f"processes of {argv[0]} survived SIGKILL: {left}")
