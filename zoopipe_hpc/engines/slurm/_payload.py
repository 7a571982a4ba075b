"""Signed payloads: what travels from the login node to the compute nodes.

A payload is a cloudpickle of one shard's Pipe, with the user's own modules by value
(:mod:`.._pickling`), after one line of JSON saying what the task needs before it unpickles:
the submitter's ``sys.path`` folders of user code (``sys_path``, put back by the task, which
runs with ``-P``) and, for messages, the modules sent by value and by reference. It is signed
with HMAC-SHA256 under a key kept in the job folder (mode 0600), over the payload format, the
job's id (the job folder's name), the payload's name (``shard-NNNNN``: its shard), the JSON line
and the pickle, so that a payload renamed to another shard's name, or copied into another job
folder, is refused like a modified one.

A task loads its payload only after checking (:mod:`zoopipe_hpc._private`, ``lstat`` and
``O_NOFOLLOW``: no link is followed) that the job folder, the payload folder, the key and the
payload belong to the user running the task and are not writable by group or others (the key not
readable by them either), and that the signature matches. Unpickling runs code, so a payload that
anyone else could have replaced is refused, with the reason.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

import cloudpickle

from ..._private import Use, check_private, ensure_private_dir, read_private_file
from ...commit._atomic import atomic_write
from ...errors import ConfigurationError, PayloadRefused
from .._pickling import pickle_for_nodes
from .._user_code import reproduce_sys_path, submitter_sys_path

__all__ = ["PAYLOAD_FORMAT", "PayloadRefused", "PayloadStore"]

#: The first word of a payload file; a payload of another format is refused unread.
PAYLOAD_FORMAT = b"zoopipe-hpc-payload/3"
_KEY_FILE = ".payload-key"
_KEY_BYTES = 32
_SUFFIX = ".pkl"

_LOAD = Use(
    action="load a payload",
    risk="anyone who can write there could run code as you",
    error=PayloadRefused,
)
_WRITE = Use(
    action="write payloads",
    risk="anyone who can write there could replace them and run code as you",
    error=PayloadRefused,
)


class PayloadStore:
    """The ``payloads/`` folder of a job: writes signed payloads, and checks them on load."""

    def __init__(self, job_folder: Path) -> None:
        self.job_folder = job_folder
        self.folder = job_folder / "payloads"
        #: The submitter's folders of user code, read once per store (the same for every shard).
        self._sys_path: tuple[str, ...] | None = None
        #: The modules the last payload sent by value: the next shard's starting point.
        self._by_value: tuple[str, ...] = ()

    @property
    def job_id(self) -> str:
        """What the signatures bind a payload to: the job folder's name (its run id)."""
        return Path(os.path.abspath(self.job_folder)).name

    @property
    def key_path(self) -> Path:
        return self.job_folder / _KEY_FILE

    def create(self) -> None:
        """Create the payload folder (0700) and the job's key (0600) in the job folder, which
        must be the user's own and private."""
        check_private(self.job_folder, "job folder", _WRITE)
        ensure_private_dir(self.folder, "payload folder", _WRITE, tighten=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(self.key_path, flags, 0o600)
        except FileExistsError:
            return  # checked whenever it is read
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(_KEY_BYTES))
            f.flush()
            os.fsync(f.fileno())

    def _key(self, use: Use) -> bytes:
        key = read_private_file(self.key_path, "payload key", use, secret=True)
        if len(key) < _KEY_BYTES:
            raise use.error(
                f"refusing to {use.action}: the payload key {self.key_path} holds {len(key)} "
                f"bytes, not {_KEY_BYTES} (truncated or replaced); submit the job again",
                path=str(self.key_path),
            )
        return key

    def _signature(self, key: bytes, name: str, data: bytes) -> bytes:
        mac = hmac.new(key, digestmod=hashlib.sha256)
        for part in (PAYLOAD_FORMAT, self.job_id.encode(), name.encode()):
            mac.update(len(part).to_bytes(8, "big"))
            mac.update(part)
        mac.update(data)
        return mac.hexdigest().encode()

    def path(self, name: str) -> Path:
        return self.folder / f"{name}{_SUFFIX}"

    def pack(self, name: str, obj: Any) -> bytes:
        """The unsigned body of payload ``name``: its JSON line and the pickle of ``obj``.

        Raises :class:`~zoopipe_hpc.errors.ConfigurationError` (before anything is written or
        submitted) when some of the user's code could not reach the nodes. Needs no job folder
        yet: a durable job packs its shards before it makes its directory.
        """
        if self._sys_path is None:
            self._sys_path = tuple(submitter_sys_path())
        what = f"job {self.job_id}, {name}"
        pickled = pickle_for_nodes(obj, what, self._sys_path, hint=self._by_value)
        self._by_value = pickled.by_value
        context = {
            "sys_path": list(pickled.sys_path),
            "by_value": list(pickled.by_value),
            "by_reference": list(pickled.by_reference),
        }
        return json.dumps(context).encode() + b"\n" + pickled.data

    def dump(self, name: str, obj: Any) -> Path:
        """Write ``obj`` as the payload ``name`` (mode 0600), signed for this job and name."""
        return self.write(name, self.pack(name, obj))

    def write(self, name: str, body: bytes) -> Path:
        """Write a body from :meth:`pack` as the payload ``name``, signed for this job and name."""
        check_private(self.job_folder, "job folder", _WRITE)
        check_private(self.folder, "payload folder", _WRITE)
        signature = self._signature(self._key(_WRITE), name, body)
        header = PAYLOAD_FORMAT + b" " + signature + b"\n"
        return atomic_write(self.path(name), header + body, mode=0o600)

    def load(self, name: str) -> Any:
        """Check ownership, permissions and signature, then unpickle; nothing of the payload is
        unpickled before every check passed."""
        check_private(self.job_folder, "job folder", _LOAD)
        check_private(self.folder, "payload folder", _LOAD)
        key = self._key(_LOAD)
        target = self.path(name)
        raw = read_private_file(target, "payload", _LOAD)
        header, _, data = raw.partition(b"\n")
        form, _, signature = header.partition(b" ")
        if form != PAYLOAD_FORMAT:
            raise PayloadRefused(
                f"refusing to load {target}: it is not a signed {PAYLOAD_FORMAT.decode()} "
                f"payload (not a payload, or written by an older zoopipe-hpc); submit the job "
                f"again",
                path=str(target),
            )
        expected = self._signature(key, name, data)
        if not hmac.compare_digest(signature, expected):
            raise PayloadRefused(
                f"refusing to load {target}: its signature does not match (modified after "
                f"submission, signed with another job's key, or another shard's or job's "
                f"payload put in its place)",
                path=str(target),
            )
        line, _, pickled = data.partition(b"\n")
        context = _context(line, target)
        reproduce_sys_path(context["sys_path"], str(target))
        importlib.invalidate_caches()
        try:
            return cloudpickle.loads(pickled)
        except ImportError as exc:
            raise ConfigurationError(
                f"{target}: the pipe needs module {exc.name!r}, which is not importable here "
                f"({type(exc).__name__}: {exc}); sent by value: {context['by_value'] or 'none'}, "
                f"folders put on sys.path: {context['sys_path'] or 'none'}. Install it into the "
                f"environment the nodes run, or import it at the top of your own module so that "
                f"it travels with the pipe",
                path=str(target),
                module=exc.name,
            ) from exc


def _context(line: bytes, target: Path) -> dict[str, list[str]]:
    """The payload's JSON line (signed, so written by the submission), checked for shape."""
    try:
        context = json.loads(line)
    except ValueError:
        context = None
    keys = ("sys_path", "by_value", "by_reference")
    if not isinstance(context, dict) or not all(
        isinstance(context.get(k), list) and all(isinstance(v, str) for v in context[k])
        for k in keys
    ):
        raise PayloadRefused(
            f"refusing to load {target}: its first line is not the expected JSON object with "
            f"{', '.join(keys)} (lists of text); submit the job again",
            path=str(target),
        )
    return {k: context[k] for k in keys}
