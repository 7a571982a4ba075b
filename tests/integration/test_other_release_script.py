"""``scripts/other-release`` refuses unsafe or wrong set-ups before it touches anything.

The full run (a chroot of the other Debian release, its own cluster, the whole suite) is what
``.ci/run`` does; these checks only run the script up to its refusals, in a second or so.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "other-release"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not Path("/etc/debian_version").exists(),
    reason="scripts/other-release needs root on Debian",
)


def _run(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **env},
    )


def test_a_cache_folder_others_can_write_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "srv"
    shared.mkdir()
    shared.chmod(0o777)
    result = _run(["prepare"], ZOOPIPE_CHROOT_DIR=str(shared))
    assert result.returncode == 1, result
    assert f"{shared} must be a directory owned by root and writable by root only" in result.stderr
    assert list(shared.iterdir()) == []  # no chroot, no lock file made there


def test_a_symlinked_cache_folder_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "srv"
    link.symlink_to(real)
    result = _run(["prepare"], ZOOPIPE_CHROOT_DIR=str(link))
    assert result.returncode == 1, result
    assert "must be a directory owned by root" in result.stderr
    assert list(real.iterdir()) == []


def test_a_log_folder_others_could_read_is_refused(tmp_path: Path) -> None:
    cache = tmp_path / "srv"
    cache.mkdir(mode=0o755)
    logs = tmp_path / "logs"
    logs.mkdir()
    logs.chmod(0o755)
    result = _run(
        ["prepare"], ZOOPIPE_CHROOT_DIR=str(cache), ZOOPIPE_OTHER_RELEASE_LOG_DIR=str(logs)
    )
    assert result.returncode == 1, result
    assert f"ZOOPIPE_OTHER_RELEASE_LOG_DIR={logs} must be a directory owned by root, mode 0700" in (
        result.stderr
    )
    assert list(cache.iterdir()) == [] and list(logs.iterdir()) == []


@pytest.mark.parametrize("args", [["bogus"], ["prepare", "-k", "x"]])
def test_usage_errors_exit_64(args: list[str]) -> None:
    result = _run(args)
    assert result.returncode == 64, result
    assert "scripts/other-release" in result.stderr
