"""What a worker hands to the commit: the files it staged, and its result file.

A worker never publishes anything. When its pipe has processed the whole input, it closes its
outputs into the run's staging folders and writes a *result file* (``result-NNNNN.<attempt>.json``
next to its progress record) atomically: the staged files with their row counts, sizes and
checksums, and the pipe's counters. Whether a shard succeeded is decided from that file (and the
task's end), never from the live progress record, so a corrupt or stale progress record cannot
fail, or pass, a run.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .._private import Use, check_private, check_private_stat
from ..errors import CommitError
from ..progress._direct_io import read_fresh
from ._atomic import atomic_write, file_digest
from ._locks import STAGING_DIR_NAME

__all__ = ["StagedFile", "WorkerOutcome", "result_path", "write_result", "read_result"]

FORMAT = "zoopipe-hpc-result/1"


@dataclass(frozen=True)
class StagedFile:
    """One file a worker staged for one target: ``role`` is ``"output"`` or ``"errors"``."""

    role: str
    path: str
    rows: int
    size: int
    checksum: str

    @classmethod
    def of(cls, role: str, path: Path, rows: int) -> StagedFile:
        size, checksum = file_digest(path)
        return cls(role, str(path), rows, size, checksum)

    def check(self, target: str, shard: int) -> None:
        """Raise :class:`CommitError` unless the file is there, as the worker left it: a
        regular file (``lstat``: not a link) of this user, with the size of the result file, in
        a run staging folder (and ``.zoopipe-staging``) that is private (:mod:`.._private`)."""
        path = Path(self.path)
        use = Use(
            action=f"commit shard {shard}'s staged file for {target}",
            risk=f"anyone who can write there could swap the files this run commits over {target}",
        )
        check_private(path.parent, "run staging folder", use)
        if path.parent.parent.name == STAGING_DIR_NAME:
            check_private(path.parent.parent, "staging folder", use)
        try:
            info = os.lstat(path)
        except OSError as exc:
            raise CommitError(
                f"shard {shard} staged {self.path} for {target} but it cannot be read: {exc}; "
                f"nothing was committed",
                path=target,
                shard=shard,
            ) from exc
        check_private_stat(info, path, "staged file", use, kind="file", modes=False)
        size = info.st_size
        if size != self.size:
            raise CommitError(
                f"shard {shard} staged {self.path} for {target} with {self.size} bytes, it has "
                f"{size} now (changed after the worker finished); nothing was committed",
                path=target,
                shard=shard,
            )


@dataclass(frozen=True)
class WorkerOutcome:
    """A worker's result file: which attempt of which pipe succeeded, and what it staged."""

    pipe_index: int
    attempt_id: str
    total_processed: int
    success_count: int
    error_count: int
    files: tuple[StagedFile, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["format"] = FORMAT
        data["files"] = [asdict(f) for f in self.files]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WorkerOutcome:
        if data.get("format") != FORMAT:
            raise CommitError(f"not a {FORMAT} document")
        files = tuple(
            StagedFile(
                str(f["role"]), str(f["path"]), int(f["rows"]), int(f["size"]), str(f["checksum"])
            )
            for f in data["files"]
        )
        return cls(
            int(data["pipe_index"]),
            str(data["attempt_id"]),
            int(data["total_processed"]),
            int(data["success_count"]),
            int(data["error_count"]),
            files,
        )


def result_path(progress_record: Path) -> Path:
    """The result file that goes with a progress record (``progress-…rec`` -> ``result-…json``)."""
    name = progress_record.name
    if name.startswith("progress-") and name.endswith(".rec"):
        name = "result-" + name[len("progress-") : -len(".rec")] + ".json"
    else:
        name = name + ".result.json"
    return progress_record.with_name(name)


def write_result(path: Path, outcome: WorkerOutcome) -> None:
    atomic_write(path, json.dumps(outcome.to_json(), sort_keys=True).encode())


def read_result(path: Path, attempt_id: str | None = None) -> WorkerOutcome | None:
    """The result in ``path``; None if there is none (yet) or it is not a valid result of
    ``attempt_id`` (a torn or foreign file is never taken for a success)."""
    try:
        outcome = WorkerOutcome.from_json(json.loads(read_fresh(path, may_be_missing=True)))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, CommitError):
        return None
    if attempt_id is not None and outcome.attempt_id != attempt_id:
        return None
    return outcome
