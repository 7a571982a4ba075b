"""Asking Slurm about array tasks: one call for all of them, through sacct or squeue."""

from __future__ import annotations

import logging
import re
import signal
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from ._cli import SlurmCLI, SlurmCommandError, is_transient

__all__ = [
    "TaskState",
    "StateSource",
    "SacctSource",
    "SqueueSource",
    "PyslurmSource",
    "choose_state_source",
    "StateSourceChoice",
]

log = logging.getLogger(__name__)

#: States in which a task is queued, running or about to run again.
ACTIVE = frozenset(
    {
        "PENDING",
        "CONFIGURING",
        "RUNNING",
        "COMPLETING",
        "REQUEUED",
        "REQUEUE_HOLD",
        "REQUEUE_FED",
        "RESIZING",
        "SUSPENDED",
        "STAGE_OUT",
        "SIGNALING",
        "RESV_DEL_HOLD",
    }
)

#: What a terminal state (other than COMPLETED) means, in words for the user.
FAILURES = {
    "TIMEOUT": "reached its time limit (--time)",
    "OUT_OF_MEMORY": "ran out of memory (--mem)",
    "NODE_FAIL": "lost its node (NODE_FAIL)",
    "CANCELLED": "was cancelled (scancel by a user or an administrator)",
    "PREEMPTED": "was preempted",
    "BOOT_FAIL": "its node failed to boot",
    "DEADLINE": "missed its deadline",
    "FAILED": "failed",
    "REVOKED": "was revoked",
    "GONE": "is no longer known to Slurm",
    # Packed arrays (see _packing): one shard of a task that runs several.
    "SHARD_FAILED": "failed this shard (the task goes on with its other shards)",
    "UNCLAIMED": "ended, every task of it, before one claimed this shard",
}


@dataclass(frozen=True)
class TaskState:
    """One array task as Slurm sees it. ``job_id`` is ``<array job id>_<task id>``."""

    job_id: str
    state: str
    exit_code: str = ""
    node: str = ""

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def completed(self) -> bool:
        return self.state == "COMPLETED"

    def describe(self) -> str:
        words = FAILURES.get(self.state, self.state.lower())
        where = f" on {self.node}" if self.node and self.node != "None assigned" else ""
        return f"Slurm task {self.job_id}{where} {words} ({self.state}{_exit(self.exit_code)})"


def _exit(exit_code: str) -> str:
    """sacct's ``code:signal`` in words: a signal by name, and 128+N exit codes as signals."""
    code, _, sig = exit_code.partition(":")
    if not code.isdigit():
        return ""
    number = int(sig) if sig.isdigit() else 0
    if number == 0 and int(code) > 128:
        number = int(code) - 128
    if number:
        try:
            return f", killed by {signal.Signals(number).name}"
        except ValueError:
            return f", killed by signal {number}"
    return f", exit code {code}" if int(code) else ""


#: Exit codes of the task program (``python -m zoopipe_hpc.engines.slurm``): done, failed,
#: bad arguments. The signal numbers srun reports are never among them.
_TASK_EXIT_CODES = frozenset({0, 1, 2})


def _srun_signal(exit_code: str) -> str:
    """An array task's ``N:0`` as the signal it is when N is not one of the task's own codes.

    An array task's batch script ends with the ``srun`` step of the task program, and srun exits
    with the number of the signal that killed its task (9 for SIGKILL). Until slurmdbd has the
    step's record, DerivedExitCode is ``0:0`` and the batch's ``9:0`` is all there is to go on.
    """
    code, _, sig = exit_code.partition(":")
    if code.isdigit() and sig in ("", "0"):
        number = int(code)
        if number not in _TASK_EXIT_CODES and 0 < number < 64:
            return f"0:{number}"
    return exit_code


class StateSource(Protocol):
    name: str

    def query(self, array_ids: Sequence[str]) -> dict[str, TaskState]:
        """States of every task of the given arrays, keyed ``<array>_<task>``."""
        ...


_BRACKET = re.compile(r"^(?P<job>\d+)_\[(?P<spec>[^\]]+)\]$")


def expand_job_ids(job_id: str) -> list[str]:
    """``12_[0-3,7%2]`` → ``12_0 12_1 12_2 12_3 12_7``; other ids are returned as they are."""
    match = _BRACKET.match(job_id)
    if not match:
        return [job_id]
    spec = match.group("spec").split("%")[0]
    out = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        for task in range(int(lo), int(hi or lo) + 1):
            out.append(f"{match.group('job')}_{task}")
    return out


def _rows(text: str) -> Iterable[list[str]]:
    for line in text.splitlines():
        if line.strip():
            yield line.split("|")


class SacctSource:
    """Accounting: sees finished tasks too. One ``sacct`` call covers every array."""

    name = "sacct"

    def __init__(self, cli: SlurmCLI) -> None:
        self.cli = cli

    def query(self, array_ids: Sequence[str]) -> dict[str, TaskState]:
        out = self.cli.run(
            [
                "sacct",
                "-j",
                ",".join(array_ids),
                "-X",
                "--noheader",
                "--parsable2",
                "--format=JobID,State,ExitCode,NodeList,DerivedExitCode",
            ]
        )
        states: dict[str, TaskState] = {}
        for row in _rows(out):
            if len(row) < 4:
                continue
            job_id, state, exit_code, node = row[:4]
            derived = row[4] if len(row) > 4 else ""
            if derived.partition(":")[2] not in ("", "0"):
                # The step's signal (e.g. 0:9) says more than the batch script's exit code.
                exit_code = derived
            elif "_" in job_id:
                exit_code = _srun_signal(exit_code)
            for task in expand_job_ids(job_id):
                states[task] = TaskState(task, state.split()[0], exit_code, node)
        return states


#: The first Slurm release whose squeue has ``--only-job-state`` (a light RPC: states only).
ONLY_JOB_STATE_SINCE = (24, 5)


class SqueueSource:
    """The queue only: used where accounting is off. A task that left the queue is GONE.

    Finished tasks leave the queue after the site's ``MinJobAge``, so the progress records and
    result files are the source of truth; squeue only says which tasks are still queued or
    running. Where squeue has ``--only-job-state`` (Slurm 24.05+), the query asks the
    controller for states alone (no node names then).
    """

    name = "squeue"

    def __init__(self, cli: SlurmCLI, version: tuple[int, int] | None = None) -> None:
        self.cli = cli
        self.only_job_state = version is not None and version >= ONLY_JOB_STATE_SINCE

    def query(self, array_ids: Sequence[str]) -> dict[str, TaskState]:
        command = ["squeue", "--noheader", "--array", "--jobs", ",".join(array_ids)]
        if self.only_job_state:
            command += ["--only-job-state", "--format=%i|%T"]
        else:
            command.append("--format=%i|%T|%N")
        out = self.cli.run(command, check=False)
        states: dict[str, TaskState] = {}
        for row in _rows(out):
            if len(row) < 2:
                continue
            job_id, state = row[:2]
            node = row[2] if len(row) > 2 else ""
            for task in expand_job_ids(job_id):
                states[task] = TaskState(task, state.split()[0], "", node)
        return states


class PyslurmSource:
    """Accounting through pyslurm's slurmdbd API: no process spawned per poll."""

    name = "pyslurm"

    def __init__(self, pyslurm: Any) -> None:
        self._pyslurm = pyslurm

    def query(self, array_ids: Sequence[str]) -> dict[str, TaskState]:
        db = self._pyslurm.db
        try:
            jobs = db.Jobs.load(db.JobFilter(ids=[int(a) for a in array_ids]))
        except Exception as exc:  # pyslurm raises its own RPCError family
            raise SlurmCommandError(
                f"pyslurm could not load jobs {list(array_ids)}: {type(exc).__name__}: {exc}",
                command=["pyslurm.db.Jobs.load"],
                returncode=-1,
                stderr=str(exc),
            ) from exc
        states: dict[str, TaskState] = {}
        for job in jobs:
            if job.array_task_id is None:
                continue
            task = f"{job.array_id}_{job.array_task_id}"
            signal_number = job.derived_exit_code_signal or job.exit_code_signal or 0
            exit_code = _srun_signal(f"{job.exit_code or 0}:{signal_number}")
            state = str(job.state or "UNKNOWN").split()[0]
            states[task] = TaskState(task, state, exit_code, job.nodelist or "")
        return states


def _major_minor(version: str) -> tuple[int, int] | None:
    match = re.search(r"(\d+)\.(\d+)", version)
    return (int(match.group(1)), int(match.group(2))) if match else None


def _matching_pyslurm(cli: SlurmCLI) -> Any | None:
    """pyslurm, if it is importable and built for the cluster's Slurm version."""
    try:
        import pyslurm  # type: ignore[import-not-found]
    except ImportError:
        log.info("pyslurm is not importable: Slurm state comes from the command-line tools")
        return None
    version = str(getattr(pyslurm, "version", lambda: "")())
    cluster = cli.run(["sinfo", "--version"]).strip()
    if _major_minor(version) is None or _major_minor(version) != _major_minor(cluster):
        log.info(
            "pyslurm %s does not match the cluster's %s: Slurm state comes from the "
            "command-line tools",
            version or "(unknown version)",
            cluster,
        )
        return None
    return pyslurm


#: What ``SlurmEngine(state_source=...)`` may ask for.
StateSourceChoice = Literal["auto", "sacct", "squeue"]


def choose_state_source(cli: SlurmCLI, prefer: StateSourceChoice = "auto") -> StateSource:
    """pyslurm if it matches the cluster, else sacct where accounting works, else squeue.

    ``prefer="sacct"`` or ``"squeue"`` takes that one without probing (a site whose
    accounting is slow, or off). The choice is logged. A transient failure of the ``sacct``
    probe (the controller busy, slurmdbd briefly down) is raised, so that the caller asks again
    later rather than settling for squeue for the whole run.
    """
    if prefer == "squeue":
        log.info("Slurm state from squeue, as asked")
        return SqueueSource(cli, _major_minor(cli.run(["squeue", "--version"])))
    if prefer == "sacct":
        log.info("Slurm state from sacct, as asked")
        return SacctSource(cli)
    pyslurm = _matching_pyslurm(cli)
    if pyslurm is not None:
        log.info("Slurm state from pyslurm %s (no process per poll)", pyslurm.version())
        return PyslurmSource(pyslurm)
    try:
        cli.run(["sacct", "--noheader", "-X", "-j", "1", "--format=JobID"])
    except SlurmCommandError as exc:
        if is_transient(int(exc.details.get("returncode") or 0), str(exc.details.get("stderr"))):
            raise
        version = _major_minor(cli.run(["squeue", "--version"]))
        log.info("Slurm state from squeue: sacct is not usable here (%s)", exc)
        return SqueueSource(cli, version)
    log.info("Slurm state from sacct (one call per poll for all arrays)")
    return SacctSource(cli)
