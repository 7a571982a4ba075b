"""The one door to Slurm's command-line tools: every sbatch, sacct, squeue, scancel and scontrol
call of the package goes through :class:`SlurmCLI`, which retries transient failures, raises
clear errors for the others, and counts the calls (so tests and benchmarks can check that the
control plane is spared)."""

from __future__ import annotations

import collections
import copy
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence

from ...errors import ConfigurationError, SlurmCommandError

__all__ = [
    "KEPT_SLURM_VARIABLES",
    "SlurmCLI",
    "SlurmCommandError",
    "is_transient",
    "submission_environment",
]

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


def is_transient(returncode: int, stderr: str) -> bool:
    """Whether a failed command is worth asking again (a timeout or a busy controller)."""
    return returncode == -1 or any(t in stderr.lower() for t in TRANSIENT)


#: Slurm variables kept in a submission from inside a job: they say where the cluster is, not
#: what the current allocation holds.
KEPT_SLURM_VARIABLES = frozenset({"SLURM_CONF", "SLURM_CONFIG_DIR"})


def submission_environment(environ: Mapping[str, str]) -> dict[str, str] | None:
    """The environment for ``sbatch``: inside a Slurm job, without the allocation's variables.

    A job's environment carries ``SLURM_*`` variables of its own allocation (e.g.
    ``SLURM_MEM_PER_NODE``) and the ``SBATCH_*`` ones it was submitted with; a job submitted
    from there inherits them next to the site's defaults (``SLURM_MEM_PER_CPU``), and its
    ``srun`` refuses to start. So every ``SLURM_*`` and ``SBATCH_*`` variable is dropped
    except :data:`KEPT_SLURM_VARIABLES`. The engine sets none of them itself: what a task needs
    is written into the job script. Outside a job (no ``SLURM_JOB_ID``) the environment is
    passed as it is (None), so ``SBATCH_*`` variables a user set deliberately still apply.
    """
    if "SLURM_JOB_ID" not in environ and "SLURM_JOBID" not in environ:
        return None
    return {
        key: value
        for key, value in environ.items()
        if key in KEPT_SLURM_VARIABLES or not key.startswith(("SLURM_", "SBATCH_"))
    }


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

    def single_attempt(self) -> SlurmCLI:
        """A view of this helper that never retries (nor sleeps), counting into the same
        :attr:`calls`: for the state queries of a poll, whose retries are spread over polls."""
        view = copy.copy(self)  # a subclass's view stays that subclass, sharing its state
        view.retries = 0
        return view

    def run(self, args: Sequence[str], *, check: bool = True) -> str:
        """Run ``args`` (its first item one of :attr:`TOOLS`) and return its standard output.

        ``sbatch`` runs in :func:`submission_environment` (no inherited allocation variables).
        """
        tool = args[0]
        if tool not in self.TOOLS:
            raise ConfigurationError(f"not a Slurm command: {tool!r}")
        if shutil.which(tool) is None:
            raise SlurmCommandError(
                f"{tool} is not on PATH: is this a Slurm login node?", command=list(args)
            )
        env = submission_environment(os.environ) if tool == "sbatch" else None
        delay = self.backoff
        attempt = 0
        while True:
            self.calls[tool] += 1
            try:
                done = subprocess.run(
                    list(args),
                    capture_output=True,
                    text=True,
                    timeout=self.timeout,
                    check=False,
                    env=env,
                )
            except subprocess.TimeoutExpired:
                stderr, returncode = f"timed out after {self.timeout:.0f} s", -1
            else:
                if done.returncode == 0 or not check:
                    return done.stdout
                stderr, returncode = done.stderr.strip(), done.returncode
            transient = is_transient(returncode, stderr)
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
