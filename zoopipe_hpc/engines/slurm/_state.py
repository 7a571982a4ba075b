"""Asking Slurm about array tasks: one call for all of them, through sacct or squeue."""

from __future__ import annotations

import logging
import re
import signal
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ._cli import SlurmCLI, SlurmCommandError

__all__ = ["TaskState", "StateSource", "SacctSource", "SqueueSource", "choose_state_source"]

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
            for task in expand_job_ids(job_id):
                states[task] = TaskState(task, state.split()[0], exit_code, node)
        return states


class SqueueSource:
    """The queue only: used where accounting is off. A task that left the queue is GONE."""

    name = "squeue"

    def __init__(self, cli: SlurmCLI) -> None:
        self.cli = cli

    def query(self, array_ids: Sequence[str]) -> dict[str, TaskState]:
        out = self.cli.run(
            ["squeue", "--noheader", "--array", "--jobs", ",".join(array_ids), "--format=%i|%T|%N"],
            check=False,
        )
        states: dict[str, TaskState] = {}
        for row in _rows(out):
            if len(row) < 3:
                continue
            job_id, state, node = row[:3]
            for task in expand_job_ids(job_id):
                states[task] = TaskState(task, state.split()[0], "", node)
        return states


def choose_state_source(cli: SlurmCLI) -> StateSource:
    """sacct where accounting works, squeue otherwise; the choice is logged."""
    try:
        cli.run(["sacct", "--noheader", "-X", "-j", "1", "--format=JobID"])
    except SlurmCommandError as exc:
        log.info("Slurm state from squeue: sacct is not usable here (%s)", exc)
        return SqueueSource(cli)
    log.info("Slurm state from sacct (one call per poll for all arrays)")
    return SacctSource(cli)
