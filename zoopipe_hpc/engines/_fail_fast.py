"""Fail fast: the same error at the start of two attempts is not worth a third (private).

An import error on the compute nodes, a payload refused, a missing input: such a failure comes
before the attempt has read a record, and every retry meets it again. Retrying it blindly
costs ``shards * (1 + max_retries)`` tasks (12 shards, ``max_retries=2``: 36 tasks, all
failing). :class:`FailFast` watches the failures of a run; once two of them (two shards, or two
attempts of one shard) ended with the same error before reading any record, it trips, and the
engine stops resubmitting and cancels what is still queued.

Failures of the node or the scheduler (a node failure, a preemption, a time limit, a cancel,
a kill from outside with SIGKILL or SIGTERM, a shard no packed task got to claim) say nothing
of the pipe and never count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["FailFast", "failure_signature"]

#: Slurm states (as they appear in a task's description) that are not the pipe's own failure.
_NOT_THE_PIPES = (
    "NODE_FAIL",
    "PREEMPTED",
    "CANCELLED",
    "TIMEOUT",
    "BOOT_FAIL",
    "DEADLINE",
    "UNCLAIMED",
    "SIGKILL",
    "SIGTERM",
    "SIGINT",
    # Slurm's warning before the time limit (a packed task's shard stopped by it).
    "SIGUSR2",
)

_SLURM_SUFFIX = re.compile(r"\s*\[Slurm task [^\]]*\]\s*$")
_TASK = re.compile(r"Slurm task \S+( on \S+)?")
_LOG = re.compile(r";?\s*log: \S+")


def failure_signature(message: str, records_read: int) -> str | None:
    """What identifies a failure as "the same error" as another, or None if it cannot be one.

    Only a failure before the first record was read, and not one of the node or the
    scheduler, has a signature: the message without the task's id, node and log path.
    """
    if records_read > 0 or not message or any(s in message for s in _NOT_THE_PIPES):
        return None
    text = _SLURM_SUFFIX.sub("", message)
    text = _LOG.sub("", _TASK.sub("Slurm task", text))
    return text.strip() or None


@dataclass
class FailFast:
    """The failures of one run, and whether two of them were the same error at the start."""

    #: Failures with the same signature that trip it.
    threshold: int = 2
    _seen: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    #: (signature, first shard, its message) once tripped.
    tripped: tuple[str, int, str] | None = None

    def observe(self, shard: int, message: str, records_read: int) -> bool:
        """Note a failed attempt of ``shard``; True if the run should stop retrying now."""
        signature = failure_signature(message, records_read)
        if signature is not None and self.tripped is None:
            seen = self._seen.setdefault(signature, [])
            seen.append((shard, message))
            if len(seen) >= self.threshold:
                first, first_message = seen[0]
                self.tripped = (signature, first, first_message)
        return self.tripped is not None

    def describe(self) -> str:
        """The one report of a tripped run: the error, how often, and the first shard's log."""
        if self.tripped is None:
            return ""
        signature, first, message = self.tripped
        count = len(self._seen[signature])
        return (
            f"{count} attempts failed with the same error before reading any record, so the "
            f"run stopped retrying and cancelled what was still queued (fail fast); shard "
            f"{first}: {message}"
        )
