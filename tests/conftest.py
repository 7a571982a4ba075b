from __future__ import annotations

import os
import sys
from pathlib import Path

# Worker processes (forked or on Slurm nodes) import the shared test models from here.
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent / "integration"))


import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402
from _cluster_fs import cluster_up_command, nodes_shared_fs  # noqa: E402

_REPO = Path(__file__).parents[1]


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> Iterator[None]:
    """Put the tests that must not run beside others, or must share a worker, in their xdist
    group (tests/_xdist_groups.py): the marks before xdist's own hook reads them, the node id
    suffix it schedules by after it, and the ``serial`` group first in the collection (which
    is the order ``--no-loadscope-reorder`` schedules in). Without ``--dist loadgroup`` the
    marks change nothing and the order stays pytest's."""
    from _xdist_groups import group_of, put_in_group, scheduled_first

    groups = {}
    for item in items:
        group = group_of(item)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))
            groups[item] = group
    yield
    if config.getoption("loadgroup", default=False):  # set in the xdist workers
        for item, group in groups.items():
            put_in_group(item, group)
        items[:] = scheduled_first(items, groups)


def _cluster_problem() -> str | None:
    """Why the local Slurm test cluster cannot be used, or None if it can."""
    if shutil.which("sbatch") is None:
        return "Slurm is not installed (run scripts/slurm-cluster up as root on Debian)"
    status = subprocess.run(
        [str(_REPO / "scripts" / "slurm-cluster"), "status"], capture_output=True, text=True
    )
    if status.returncode != 0:
        return f"the local Slurm cluster is not up: {status.stdout.strip().splitlines()[-1:]}"
    return None


@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    problem = _cluster_problem()
    if problem is not None:
        if os.environ.get("CI") and os.geteuid() == 0 and Path("/etc/debian_version").exists():
            pytest.fail(f"CI on a Debian machine as root must have the Slurm cluster: {problem}")
        pytest.skip(problem)


#: How many earlier sessions' folders of the Slurm tests stay on the shared volume (as pytest
#: keeps its last 3 base temporary folders).
_SHARED_SESSIONS_KEPT = 3


@pytest.fixture(scope="session")
def slurm_shared_root() -> Path | None:
    """This session's folder (0700) for the Slurm tests on the volume the nodes mount, when
    the cluster runs with ``--shared-fs gluster``; None when the nodes share the local
    filesystem. The folders of older sessions are removed, the last few kept."""
    shared = nodes_shared_fs()
    if shared is None:
        return None
    root = shared[1] / "slurm-tests"
    root.mkdir(mode=0o700, exist_ok=True)
    root.chmod(0o700)
    earlier = sorted(p for p in root.iterdir() if p.is_dir())
    for old in earlier[: max(0, len(earlier) - _SHARED_SESSIONS_KEPT + 1)]:
        shutil.rmtree(old, ignore_errors=True)
    session = root / f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    session.mkdir(mode=0o700)
    return session


def _all_slurm_tests_on_shared_fs() -> bool:
    """``ZOOPIPE_SLURM_SHARED_TESTS``: ``marked`` (default: the tests marked ``on_shared_fs``,
    the fault tests and a representative few) or ``all`` (every Slurm test)."""
    which = os.environ.get("ZOOPIPE_SLURM_SHARED_TESTS", "marked")
    if which not in ("marked", "all"):
        raise pytest.UsageError(f"ZOOPIPE_SLURM_SHARED_TESTS is marked or all, not {which!r}")
    return which == "all"


@pytest.fixture
def tmp_path(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """pytest's ``tmp_path``, except for the tests on the Slurm cluster marked ``on_shared_fs``
    (every one that is marked ``slurm`` or uses ``slurm_cluster`` with
    ``ZOOPIPE_SLURM_SHARED_TESTS=all``) while its nodes run on the shared filesystem: theirs is
    a new private folder on the volume, seen by this process (the login node) through the
    host's client and by the jobs through their node's, so job folders, inputs and outputs
    cross clients. The other Slurm tests keep a local ``tmp_path``, which the nodes see too."""
    node = request.node
    on_cluster = "slurm_cluster" in request.fixturenames or node.get_closest_marker("slurm")
    if not on_cluster:
        return tmp_path
    if not (node.get_closest_marker("on_shared_fs") or _all_slurm_tests_on_shared_fs()):
        return tmp_path
    request.getfixturevalue("slurm_cluster")
    root: Path | None = request.getfixturevalue("slurm_shared_root")
    if root is None:
        return tmp_path
    name = re.sub(r"\W", "_", request.node.name)[:30]
    folder = root / f"{name}-{uuid.uuid4().hex[:6]}"
    folder.mkdir(mode=0o700)
    return folder


# -- the shared filesystem (scripts/shared-fs: GlusterFS, several FUSE clients) ------------------

_SHARED_FS = _REPO / "scripts" / "shared-fs"
#: Where the second, independent client of the shared volume is mounted for the tests.
SHARED_FS_OTHER_CLIENT = Path("/mnt/zoopipe-shared-b")


class SharedFS:
    """The shared volume as two nodes see it: ``host`` (the login node's client) and ``other``
    (a second, independent FUSE client of the same volume), on cache profile ``profile``."""

    def __init__(self, profile: str, host: Path, other: Path) -> None:
        self.profile = profile
        self.host = host
        self.other = other

    def folder(self, name: str) -> tuple[Path, Path]:
        """A new private folder (0700) on the volume: its path through ``host`` and ``other``."""
        leaf = f"{name}-{uuid.uuid4().hex[:8]}"
        root = self.host / "tests"
        root.mkdir(mode=0o700, exist_ok=True)
        (root / leaf).mkdir(mode=0o700)
        return root / leaf, self.other / "tests" / leaf


def _shared_fs_run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(_SHARED_FS), *args], capture_output=True, text=True, timeout=900, check=False
    )


def _shared_fs_unavailable(problem: str) -> None:
    """Fail on CI on a root Debian machine (which must have the shared filesystem), else skip."""
    if os.environ.get("CI") and os.geteuid() == 0 and Path("/etc/debian_version").exists():
        pytest.fail(f"CI on a Debian machine as root must have the shared filesystem: {problem}")
    pytest.skip(problem)


@pytest.fixture(scope="module", params=["default", "coherent"])
def shared_fs(request: pytest.FixtureRequest) -> Iterator[SharedFS]:
    """The GlusterFS volume of ``scripts/shared-fs up --profile <param>``, with a second client;
    every test using it runs once per cache profile. Module-scoped: when the Slurm cluster's
    nodes run on the volume with the other profile, it is put back at the module's end, before
    the Slurm tests of the modules after it."""
    profile = str(request.param)
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        _shared_fs_unavailable("the shared filesystem needs root on Linux (scripts/shared-fs up)")
    up = _shared_fs_run("up", "--profile", profile)
    if up.returncode != 0:
        tail = " | ".join(up.stderr.strip().splitlines()[-3:])
        _shared_fs_unavailable(f"scripts/shared-fs up --profile {profile} failed: {tail}")
    client = _shared_fs_run("client", str(SHARED_FS_OTHER_CLIENT))
    if client.returncode != 0:
        tail = " | ".join(client.stderr.strip().splitlines()[-3:])
        _shared_fs_unavailable(f"scripts/shared-fs client {SHARED_FS_OTHER_CLIENT} failed: {tail}")
    status = _shared_fs_run("status")
    mount = next(
        (
            line.split(": ", 1)[1]
            for line in status.stdout.splitlines()
            if line.startswith("mount:")
        ),
        "",
    )
    if status.returncode != 0 or not mount:
        _shared_fs_unavailable(f"scripts/shared-fs status: {status.stdout.strip()[-300:]}")
    yield SharedFS(profile, Path(mount), SHARED_FS_OTHER_CLIENT)
    subprocess.run(["umount", str(SHARED_FS_OTHER_CLIENT)], capture_output=True, check=False)
    cluster = nodes_shared_fs()
    if cluster is not None and cluster[0] != profile:
        # Another profile remounted every client, the nodes' ones too: put the cluster back.
        back = subprocess.run(
            cluster_up_command(), capture_output=True, text=True, timeout=900, check=False
        )
        if back.returncode != 0:
            tail = " | ".join(back.stderr.strip().splitlines()[-3:])
            pytest.fail(f"putting the Slurm cluster back on profile {cluster[0]} failed: {tail}")
