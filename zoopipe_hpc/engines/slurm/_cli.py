"""The one door to Slurm's command-line tools: every sbatch, sacct, squeue, scancel and scontrol
call of the package goes through :class:`SlurmCLI`, which retries transient failures, raises
clear errors for the others, and counts the calls (so tests and benchmarks can check that the
control plane is spared)."""

from __future__ import annotations

import collections
import logging
import shutil
import subprocess
import time
from collections.abc import Sequence

from ...errors import ConfigurationError, SlurmCommandError

__all__ = ["SlurmCLI", "SlurmCommandError"]

log = logging.getLogger(__name__)

#: Messages that mean "the controller was busy or briefly unreachable, ask again".
TRANSIENT = (
    "socket timed out",
    "unable to contact slurm controller",
    "slurm_receive_msg",
    "connection refused",
    "resource temporarily unavailable",
    "slurmctld not responding",
    "communications connection failure",
    "zero bytes were transmitted or received",
)


class SlurmCLI:
    """Runs Slurm commands with retries on transient errors and a per-command call count."""

    TOOLS = ("sbatch", "sacct", "squeue", "scancel", "scontrol", "sinfo")

    def __init__(self, retries: int = 4, backoff: float = 1.0, timeout: float = 60.0) -> None:
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self.calls: collections.Counter[str] = collections.Counter()

    def available(self, tool: str = "sbatch") -> bool:
        return shutil.which(tool) is not None

    def run(self, args: Sequence[str], *, check: bool = True) -> str:
        """Run ``args`` (its first item one of :attr:`TOOLS`) and return its standard output."""
        tool = args[0]
        if tool not in self.TOOLS:
            raise ConfigurationError(f"not a Slurm command: {tool!r}")
        if shutil.which(tool) is None:
            raise SlurmCommandError(
                f"{tool} is not on PATH: is this a Slurm login node?", command=list(args)
            )
        delay = self.backoff
        attempt = 0
        while True:
            self.calls[tool] += 1
            try:
                done = subprocess.run(
                    list(args), capture_output=True, text=True, timeout=self.timeout, check=False
                )
            except subprocess.TimeoutExpired:
                stderr, returncode = f"timed out after {self.timeout:.0f} s", -1
            else:
                if done.returncode == 0 or not check:
                    return done.stdout
                stderr, returncode = done.stderr.strip(), done.returncode
            transient = returncode == -1 or any(t in stderr.lower() for t in TRANSIENT)
            if not transient or attempt >= self.retries:
                raise SlurmCommandError(
                    f"`{' '.join(args)}` failed (exit {returncode}): {stderr or 'no message'}",
                    command=list(args),
                    returncode=returncode,
                    stderr=stderr,
                )
            log.warning("%s: transient error (%s); retrying in %.1f s", tool, stderr, delay)
            time.sleep(delay)
            delay = min(delay * 2, 30.0)
            attempt += 1

    def total_calls(self) -> int:
        return sum(self.calls.values())
