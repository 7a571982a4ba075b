"""The manifest as a file: its checksummed envelope, its lock, its atomic replacement.

What :class:`~zoopipe_hpc.jobs.manifest.JobDirectory` does to ``manifest.json`` on disk, and
nothing about what the manifest says:

- :func:`encode` / :func:`decode`: the envelope ``{"format", "manifest", "checksum"}``, the
  checksum being ``sha256:<hex>`` over the canonical JSON of the envelope without it;
- :func:`read_bytes`: the file's bytes, read past this node's caches (another node may have
  replaced it), retrying a reader's ``ESTALE`` while a writer replaces the file;
- :func:`write`: temporary file in the same folder, fsync, ``os.replace``, fsync of the folder;
- :func:`locked`: the exclusive :class:`filelock.StrictSoftFileLock` on ``.manifest.lock``
  (hard-link claims, so it excludes across NFS clients; claims of dead processes on this host
  are reclaimed), not re-entrant within a thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..commit._atomic import atomic_write
from ..commit._locks import hold
from ..errors import ConfigurationError, ManifestError, ZoopipeHPCError
from ..progress._direct_io import read_fresh

__all__ = [
    "CHECKSUM_PREFIX",
    "FORMAT",
    "checksum",
    "decode",
    "encode",
    "locked",
    "read_bytes",
    "write",
]

FORMAT = "zoopipe-hpc-manifest/1"
CHECKSUM_PREFIX = "sha256:"
_held = threading.local()  # lock paths the current thread holds: the job lock is not re-entrant


def _canonical(document: Any) -> bytes:
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def checksum(document: Mapping[str, Any]) -> str:
    """``sha256:<hex>`` over the canonical JSON of the stored document without its checksum."""
    body = {key: value for key, value in document.items() if key != "checksum"}
    return CHECKSUM_PREFIX + hashlib.sha256(_canonical(body)).hexdigest()


def encode(body: dict[str, Any]) -> bytes:
    """The file content for a manifest's JSON ``body``: ``TypeError`` or ``ValueError`` if it
    is not plain JSON data."""
    document: dict[str, Any] = {"format": FORMAT, "manifest": body}
    document["checksum"] = checksum(document)
    text = json.dumps(document, sort_keys=True, indent=1, ensure_ascii=False, allow_nan=False)
    return (text + "\n").encode("utf-8")


def decode(raw: bytes, where: str) -> Any:
    """The manifest body of a file's content, once its envelope and checksum are verified;
    :class:`ManifestError` naming ``where`` and the reason otherwise."""
    try:
        document = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ManifestError("unreadable: not UTF-8 text (corrupted?)", path=where) from None
    except json.JSONDecodeError as exc:
        raise ManifestError(
            f"unreadable: not valid JSON, the file is truncated or corrupted "
            f"({exc.msg} at line {exc.lineno} column {exc.colno})",
            path=where,
        ) from None
    if not isinstance(document, dict) or "format" not in document:
        raise ManifestError("unreadable: not a zoopipe-hpc manifest", path=where)
    if document["format"] != FORMAT:
        raise ManifestError(
            f"unsupported manifest format {document['format']!r} (this version of "
            f"zoopipe-hpc reads {FORMAT!r})",
            path=where,
        )
    stored = document.get("checksum")
    if not isinstance(stored, str) or not stored.startswith(CHECKSUM_PREFIX):
        raise ManifestError(
            "the checksum is missing or malformed: the manifest was modified outside zoopipe-hpc",
            path=where,
        )
    try:
        actual = checksum(document)
    except (TypeError, ValueError):
        raise ManifestError("unreadable: not plain JSON text (corrupted?)", path=where) from None
    if not hmac.compare_digest(stored, actual):
        raise ManifestError(
            "checksum mismatch: the manifest was modified outside zoopipe-hpc (or corrupted); "
            "refusing to use it",
            path=where,
        )
    return document.get("manifest")


def read_bytes(folder: Path, manifest: Path) -> bytes:
    """The content of ``manifest`` (in the job directory ``folder``) as the filesystem has it
    now (read past this node's caches, ``ESTALE`` retried: another node may have just replaced
    it); :class:`ManifestError` if there is none or it cannot be read."""
    where = str(manifest)
    try:
        return read_fresh(manifest)
    except FileNotFoundError:
        if not folder.is_dir():
            reason = "no such job directory"
        else:
            reason = "no manifest: this is not a job directory, or the job was removed"
        raise ManifestError(reason, path=where) from None
    except OSError as exc:
        raise ManifestError(
            f"unreadable: {exc.strerror or type(exc).__name__}", path=where
        ) from exc


def write(folder: Path, manifest: Path, data: bytes) -> None:
    """Atomically replace ``manifest`` (in ``folder``) with ``data``; the caller holds the lock."""
    if manifest.parent != folder:
        raise ConfigurationError(f"{manifest} is not in its job folder {folder}")
    atomic_write(manifest, data, mode=0o600)


@contextlib.contextmanager
def locked(lock_path: Path, timeout: float, manifest: Path) -> Iterator[None]:
    """Hold the job lock ``lock_path``, waiting at most ``timeout`` seconds for it."""
    held: set[str] = _held.__dict__.setdefault("paths", set())
    key = str(lock_path)
    if key in held:
        raise ConfigurationError(
            f"{manifest}: the job is already locked by this thread; a change "
            f"passed to JobDirectory.update() must not create or update the same job"
        )

    def error(message: str) -> ZoopipeHPCError:
        return ManifestError(message, path=str(manifest))

    with hold(lock_path, timeout, what="the job", error=error):
        held.add(key)
        try:
            yield
        finally:
            held.discard(key)
