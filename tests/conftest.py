from __future__ import annotations

import os
import sys
from pathlib import Path

# Worker processes (forked or on Slurm nodes) import the shared test models from here.
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent / "integration"))


import shutil  # noqa: E402
import subprocess  # noqa: E402
from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402

_REPO = Path(__file__).parents[1]


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> Iterator[None]:
    """Put the tests that must not run beside others, or must share a worker, in their xdist
    group (tests/_xdist_groups.py): the marks before xdist's own hook reads them, the node id
    suffix it schedules by after it. Without ``--dist loadgroup`` the marks change nothing."""
    from _xdist_groups import group_of, put_in_group

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
        import uuid

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


@pytest.fixture(scope="session", params=["default", "coherent"])
def shared_fs(request: pytest.FixtureRequest) -> Iterator[SharedFS]:
    """The GlusterFS volume of ``scripts/shared-fs up --profile <param>``, with a second client;
    every test using it runs once per cache profile."""
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
