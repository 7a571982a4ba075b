"""The manifest as a Slurm engine's submission ledger: every ``sbatch`` of a shard is counted.

A Slurm engine that drives a durable job asks this ledger before each submission and tells it
the array it got; the checks and the counts live in the manifest, under the job lock, so that
``max_retries`` is a limit on the job, whichever process submits.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid

from ..engines.slurm import SlurmCLI
from ..engines.slurm.engine import SubmissionKind
from ._ownership import JobLike, describe_owner, is_this_process
from .manifest import JobState, Manifest

__all__ = ["JobLedger"]

log = logging.getLogger(__name__)


class JobLedger:
    """The manifest as a Slurm engine's submission ledger (see ``SubmissionLedger``).

    Every ``sbatch`` of a shard is announced in the manifest first (``submitting``), under the
    job lock, together with the checks that decide whether it may happen at all: not once the
    job is over; an automatic retry only by the job's retry owner and only while the shard has
    submissions left in its round (``1 + max_retries``), whichever process made the others.
    """

    def __init__(self, handle: JobLike, max_retries: int) -> None:
        self.handle = handle
        self.max_retries = max_retries

    def reserve(self, indices: list[int], kind: SubmissionKind) -> tuple[str, list[int]]:
        token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        allowed: list[int] = []

        def change(m: Manifest) -> None:
            allowed[:] = _may_submit(m, indices, kind, self.max_retries)
            m.submitting[token] = list(allowed)
            for index in allowed:
                if kind == "resubmit":  # asked for by a person: a new round of submissions
                    m.shards[index].round_start = len(m.shards[index].submissions)

        directory = self.handle.directory
        try:
            directory.update(change, what=f"submitting shards {indices} ({kind})")
        except _Refused as exc:
            log.warning("%s: shards %s not submitted: %s", directory.path.name, indices, exc)
            return token, []
        return token, allowed

    def record(self, token: str, array: str, indices: list[int], *, packed: bool = False) -> None:
        """Confirm the reservation ``token``: shard ``indices[k]`` is task ``k`` of ``array``,
        or, ``packed``, one of the shards its tasks share (``"<array>_*"``: which task runs
        it is told by the shard's claim and records, see ``engines.slurm._claims``)."""
        unwanted: list[str] = []

        def change(m: Manifest) -> None:
            m.submitting.pop(token, None)
            m.arrays.append(array)
            over = m.state.is_final
            for task, index in enumerate(indices):
                m.shards[index].submissions.append(f"{array}_{'*' if packed else task}")
                m.shards[index].state = "cancelled" if over else "pending"
            if over:
                unwanted.append(m.state.value)
            else:
                m.state = JobState.RUNNING

        self.handle.directory.update(
            change, what=f"submitted array {array} ({len(indices)} shards)"
        )
        if unwanted:  # the job ended while sbatch ran (a cancel): the array must not run
            log.warning(
                "%s: array %s came after the job was %s; cancelling it", token, array, *unwanted
            )
            SlurmCLI().run(["scancel", array])

    def release(self, token: str) -> None:
        def change(m: Manifest) -> None:
            m.submitting.pop(token, None)

        self.handle.directory.update(change, what="sbatch refused; submission withdrawn")


class _Refused(Exception):
    """Internal: a submission the manifest does not allow (nothing is written)."""


def _may_submit(
    manifest: Manifest, indices: list[int], kind: SubmissionKind, max_retries: int
) -> list[int]:
    """The shards of ``indices`` that may be submitted now; :class:`_Refused` if none."""
    if manifest.state.is_final:
        raise _Refused(f"the job is {manifest.state.value}")
    if kind == "first":
        again = [i for i in indices if manifest.submissions_used(i)]
        if again:
            raise _Refused(f"shards {again} were submitted already")
        return list(indices)
    if kind == "resubmit":
        return list(indices)
    owner = manifest.retry_owner
    if not is_this_process(owner):
        raise _Refused(f"the retries of this job belong to {describe_owner(owner)}")
    limit = 1 + max_retries
    allowed = [i for i in indices if manifest.submissions_used(i) < limit]
    if not allowed:
        raise _Refused(f"each was submitted {limit} times already (1 + max_retries)")
    return allowed
