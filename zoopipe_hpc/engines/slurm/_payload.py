"""Signed payloads: what travels from the login node to the compute nodes.

A payload is a cloudpickle of one shard's Pipe. It is signed with HMAC-SHA256 under a key kept in
the job folder (mode 0600), and a task loads it only if the job folder, the key and the payload
belong to the user running the task and are not writable by group or others. Unpickling runs
code, so a payload anyone else could have replaced is refused, with the reason.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
import os
import secrets
import stat
from pathlib import Path
from typing import Any

import cloudpickle

from ...commit._atomic import atomic_write
from ...errors import PayloadRefused
from .._pickling import dumps_with_user_code

__all__ = ["PayloadRefused", "PayloadStore"]

_KEY_FILE = ".payload-key"
_SUFFIX = ".pkl"


def _check_private(path: Path, *, what: str) -> None:
    try:
        info = path.stat()
    except FileNotFoundError as exc:
        raise PayloadRefused(
            f"refusing to run: {what} {path} does not exist", path=str(path)
        ) from exc
    if info.st_uid != os.getuid():
        raise PayloadRefused(
            f"refusing to load a payload: {what} {path} belongs to uid {info.st_uid}, "
            f"not to the user running this task (uid {os.getuid()})",
            path=str(path),
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise PayloadRefused(
            f"refusing to load a payload: {what} {path} is writable by "
            f"{'group' if info.st_mode & stat.S_IWGRP else 'others'} "
            f"(mode {stat.S_IMODE(info.st_mode):04o}); anyone who can write there could run "
            f"code as you. Fix with: chmod go-w {path}",
            path=str(path),
        )


class PayloadStore:
    """The ``payloads/`` folder of a job: writes signed payloads, and checks them on load."""

    def __init__(self, job_folder: Path) -> None:
        self.job_folder = job_folder
        self.folder = job_folder / "payloads"

    def create(self) -> None:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)
        key = self.job_folder / _KEY_FILE
        if not key.exists():
            fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(32))

    def _key(self) -> bytes:
        key = self.job_folder / _KEY_FILE
        _check_private(key, what="payload key")
        if stat.S_IMODE(key.stat().st_mode) & 0o077:
            raise PayloadRefused(
                f"refusing to load a payload: the key {key} is readable by others "
                f"(mode {stat.S_IMODE(key.stat().st_mode):04o}); fix with: chmod 600 {key}",
                path=str(key),
            )
        return key.read_bytes()

    def path(self, name: str) -> Path:
        return self.folder / f"{name}{_SUFFIX}"

    def dump(self, name: str, obj: Any) -> Path:
        data = dumps_with_user_code(obj)
        signature = hmac.new(self._key(), data, hashlib.sha256).hexdigest().encode()
        return atomic_write(self.path(name), signature + b"\n" + data, mode=0o600)

    def load(self, name: str) -> Any:
        """Check ownership, permissions and signature, then unpickle."""
        _check_private(self.job_folder, what="job folder")
        _check_private(self.folder, what="payload folder")
        target = self.path(name)
        _check_private(target, what="payload")
        raw = target.read_bytes()
        signature, _, data = raw.partition(b"\n")
        expected = hmac.new(self._key(), data, hashlib.sha256).hexdigest().encode()
        if not hmac.compare_digest(signature, expected):
            raise PayloadRefused(
                f"refusing to load {target}: its signature does not match (modified after "
                f"submission, or signed with another job's key)",
                path=str(target),
            )
        importlib.invalidate_caches()
        return cloudpickle.loads(data)
