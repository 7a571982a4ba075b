"""Where the nodes of the local Slurm test cluster see their files: this machine's filesystem
(``scripts/slurm-cluster up``), or the GlusterFS volume of ``scripts/shared-fs`` through a client
of their own (``up --shared-fs gluster``), read from the state file ``up`` writes."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLUSTER_SCRIPT = REPO / "scripts" / "slurm-cluster"


def _state_file() -> Path:
    return Path(os.environ.get("ZOOPIPE_SLURM_STATE", "/var/lib/zoopipe-slurm")) / "shared-fs"


def nodes_shared_fs() -> tuple[str, Path] | None:
    """``(profile, mount)`` when the nodes run on the shared filesystem, else None."""
    try:
        fields = _state_file().read_text().split()
    except (FileNotFoundError, PermissionError):
        return None
    if len(fields) != 3 or fields[0] != "gluster":
        return None
    return fields[1], Path(fields[2])


def cluster_up_command() -> list[str]:
    """``scripts/slurm-cluster up`` the way the cluster runs now (a plain ``up`` would move the
    nodes off the shared filesystem)."""
    shared = nodes_shared_fs()
    if shared is None:
        return [str(CLUSTER_SCRIPT), "up"]
    return [str(CLUSTER_SCRIPT), "up", "--shared-fs", "gluster", "--profile", shared[0]]
