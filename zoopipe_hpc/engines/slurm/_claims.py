"""Claims: which task of a packed array runs which shard, decided on the shared filesystem.

The tasks of a packed array (``SlurmEngine(max_tasks=...)``) share its list of shards; each
task takes the next shard nobody has taken yet. Taking a shard is one atomic filesystem call:
the claim ``claims/<array>/<shard>.<generation>`` is written in full to a private temporary
file, then ``link``-ed to its name, which fails if the name exists (``link`` is atomic on local
filesystems, NFS, Lustre and GPFS alike, and the claim is never seen half written; on NFS an
EEXIST is checked against the temporary file's link count, as open(2) advises). So each
shard is claimed by exactly one task, fast tasks simply take more shards, and nothing is run
twice.

A claim holds the attempt id of the claiming task run (``<array>-<task>-r<restart>``). It is
fenced by that id: a claim is taken over (as generation ``g + 1``, by the same atomic link)
only by a *later run of the same task* (Slurm requeued it, so the earlier run is dead for sure:
its restart count is lower) and only while the earlier run had not ended the shard (its record
says neither FINISHED nor FAILED). Any other task, or the same run, never takes a claim over: a
shard whose claimant died otherwise is the engine's to retry, in a new array, on its own.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from pathlib import Path

from ..._private import Use, ensure_private_dir
from ...commit.staged import result_path
from ...errors import ConfigurationError, PayloadRefused, StateError
from ...progress import ProgressState, read_progress
from .._attempts import SlurmAttempt, parse_attempt_id
from .._worker import progress_path

__all__ = ["ClaimBoard", "claim_folder", "claim_owner", "claim_path", "may_take_over"]

_USE = Use(
    action="claim shards in this folder",
    risk="anyone who can write there could take shards away or make a task run them twice",
    error=PayloadRefused,
)

#: Claim generations of one shard: one per requeue of its task; more means a broken folder.
_MAX_GENERATIONS = 1000


def claim_folder(job_folder: Path, array: str) -> Path:
    """Where the claims of the packed array ``array`` of the job in ``job_folder`` are."""
    return job_folder / "claims" / array


def may_take_over(owner: SlurmAttempt, me: SlurmAttempt) -> bool:
    """The fencing rule: only a later run (requeue) of the same task replaces a claim."""
    return owner.job == me.job and owner.task == me.task and owner.restart < me.restart


def claim_path(folder: Path, index: int, generation: int) -> Path:
    return folder / f"{index:05d}.{generation}"


def claim_owner(job_folder: Path, array: str, index: int) -> str | None:
    """The attempt id whose claim on shard ``index`` of packed array ``array`` stands (the
    newest generation), None if nobody claimed it."""
    folder = claim_folder(job_folder, array)
    generation = 0
    owner: str | None = None
    while os.path.lexists(claim_path(folder, index, generation)):
        owner = _read_claim(claim_path(folder, index, generation))
        generation += 1
    return owner


def _read_claim(path: Path) -> str:
    """A claim's attempt id; a claim another user wrote, or a link, is refused."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise PayloadRefused(
            f"{path}: cannot read this claim ({exc.strerror}; a claim is never a link)",
            path=str(path),
        ) from exc
    try:
        if os.fstat(fd).st_uid != os.geteuid():
            raise PayloadRefused(f"{path}: a claim not written by this user", path=str(path))
        return os.read(fd, 256).decode("ascii", errors="replace").strip()
    finally:
        os.close(fd)


class ClaimBoard:
    """The claims of one packed array, seen by one task run (attempt ``attempt_id``).

    ``shards`` are the array's shards, in the order they are handed out. :meth:`claim_next`
    walks them once with a cursor (a claim, once made, is never withdrawn), so a task opens
    each claim at most once or twice over the whole run, whatever the number of tasks.
    """

    def __init__(self, job_folder: Path, attempt_id: str, shards: Sequence[int]) -> None:
        me = parse_attempt_id(attempt_id)
        if not isinstance(me, SlurmAttempt):
            raise StateError(f"{attempt_id!r} is not the attempt id of a Slurm array task")
        self.job_folder = job_folder
        self.attempt_id = attempt_id
        self.me = me
        self.folder = claim_folder(job_folder, me.job)
        self.shards = list(shards)
        self._cursor = 0

    def open(self) -> ClaimBoard:
        """Create (0700) or check the claims folder; every task of the array may do it."""
        ensure_private_dir(self.folder.parent, "claims folder", _USE)
        ensure_private_dir(self.folder, "claims folder", _USE)
        return self

    def claim_next(self) -> int | None:
        """The next shard this task run now owns, or None when every shard is taken."""
        while self._cursor < len(self.shards):
            index = self.shards[self._cursor]
            self._cursor += 1
            if self.claim(index):
                return index
        return None

    def claim(self, index: int) -> bool:
        """Claim shard ``index`` for this task run; False if another claim stands."""
        generation = 0
        while generation < _MAX_GENERATIONS:
            if self._link(index, generation):
                return True
            owner = self.owner_at(index, generation)
            if os.path.lexists(self._path(index, generation + 1)):
                generation += 1  # taken over already: look at the newer claim
                continue
            if not may_take_over(owner, self.me) or self._ended(index, owner):
                return False
            generation += 1
        raise StateError(f"{self.folder}: shard {index} has {_MAX_GENERATIONS} claims or more")

    def owner(self, index: int) -> str | None:
        """The attempt id that owns shard ``index`` now, None if it is unclaimed."""
        return claim_owner(self.job_folder, self.me.job, index)

    def owner_at(self, index: int, generation: int) -> SlurmAttempt:
        text = self._read(index, generation)
        try:
            owner = parse_attempt_id(text)
        except ConfigurationError:
            owner = None
        if not isinstance(owner, SlurmAttempt):
            raise StateError(f"{self._path(index, generation)}: not a Slurm attempt id: {text!r}")
        return owner

    # -- files ----------------------------------------------------------------------------

    def _path(self, index: int, generation: int) -> Path:
        return claim_path(self.folder, index, generation)

    def _link(self, index: int, generation: int) -> bool:
        """Atomically create claim ``generation`` of shard ``index``; False if it exists."""
        temporary = self.folder / f".{self.attempt_id}.{index}.{generation}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, f"{self.attempt_id}\n".encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(temporary, self._path(index, generation))
        except OSError as exc:
            # On NFS a link whose reply was lost is retried and answers EEXIST although it
            # was made: the temporary file's link count tells (open(2), O_EXCL on NFS).
            linked = exc.errno == errno.EEXIST and os.stat(temporary).st_nlink == 2
            if exc.errno != errno.EEXIST:
                raise StateError(
                    f"could not claim shard {index} in {self.folder}: {exc}",
                    folder=str(self.folder),
                ) from exc
            return linked
        finally:
            os.unlink(temporary)
        return True

    def _read(self, index: int, generation: int) -> str:
        return _read_claim(self._path(index, generation))

    def _ended(self, index: int, owner: SlurmAttempt) -> bool:
        """Whether the owner's run ended shard ``index`` itself (finished or failed it)."""
        attempt = f"{owner.job}-{owner.task}-r{owner.restart}"
        record = progress_path(self.job_folder / "progress", index, attempt)
        if result_path(record).exists():
            return True
        snapshot = read_progress(record, expected_attempt_id=attempt)
        return snapshot is not None and snapshot.state in (
            ProgressState.FINISHED,
            ProgressState.FAILED,
        )
