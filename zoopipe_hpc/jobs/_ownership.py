"""Who owns a durable job's retries: the manifest's ``retry_owner``, and whether it is us.

The retries of a job have one owner, recorded in the manifest: the attached process that runs
it (``run``, ``resume``, ``retry``: ``{"kind": "attached", "host", "pid", "started"}``) or the
detached recover job (``{"kind": "detached", "token", "job"}``), which proves it is the owner
by the token in its environment. A command that only looks (``status``, ``list``, ``watch``)
never owns them.
"""

from __future__ import annotations

import os
import socket
from typing import Protocol

import psutil

from .manifest import JobDirectory

__all__ = [
    "RECOVER_TOKEN",
    "JobLike",
    "describe_owner",
    "is_this_process",
    "nobody_drives",
    "this_process",
]

#: The environment variable that tells a detached job's recover job that it owns the retries:
#: its value is the ``retry_owner.token`` recorded in the manifest before it was submitted.
RECOVER_TOKEN = "ZOOPIPE_HPC_RECOVER_TOKEN"


class JobLike(Protocol):
    """What the helpers below a :class:`JobHandle` need of it: its job directory."""

    directory: JobDirectory


def this_process() -> dict[str, str]:
    """This process as a retry owner (``kind: attached``)."""
    return {
        "kind": "attached",
        "host": socket.gethostname(),
        "pid": str(os.getpid()),
        "started": f"{psutil.Process().create_time():.2f}",
    }


def is_this_process(owner: dict[str, str]) -> bool:
    """Whether ``owner`` (a manifest's ``retry_owner``) is the calling process."""
    if owner.get("kind") == "attached":
        return owner.get("host") == socket.gethostname() and owner.get("pid") == str(os.getpid())
    if owner.get("kind") == "detached":
        token = os.environ.get(RECOVER_TOKEN, "")
        return bool(token) and owner.get("token") == token
    return False


def nobody_drives(owner: dict[str, str]) -> bool:
    """True when no process owns the retries: none recorded, or an attached owner on this host
    that is provably gone (its pid is dead or belongs to a later process)."""
    kind = owner.get("kind")
    if kind == "detached":
        return False
    if kind != "attached":
        return True
    if owner.get("host") != socket.gethostname():
        return False  # cannot be seen from here
    try:
        started = psutil.Process(int(owner.get("pid", ""))).create_time()
    except psutil.NoSuchProcess:
        return True
    except (ValueError, psutil.Error):
        return False
    recorded = owner.get("started")
    return recorded is not None and abs(started - float(recorded)) > 1.0


def describe_owner(owner: dict[str, str]) -> str:
    if owner.get("kind") == "attached":
        return f"pid {owner.get('pid', '?')} on host {owner.get('host', '?')}"
    if owner.get("kind") == "detached":
        return f"the detached recover job {owner.get('job') or '(not submitted yet)'}"
    return "nobody"
