"""The warning about a cache of this node that other nodes' progress records cannot get past
(real folders; the mount table and the O_DIRECT probe faked only where a test names a
filesystem this machine does not have). GlusterFS: tests/integration/test_shared_fs.py."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from zoopipe_hpc.progress import _direct_io, _freshness
from zoopipe_hpc.progress._freshness import MountInfo, freshness_problem, mount_of


def test_mount_of_takes_the_longest_mount_point_and_unescapes(tmp_path: Path) -> None:
    table = tmp_path / "mountinfo"
    table.write_text(
        "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
        "45 27 0:45 / /mnt/shared\\040data rw,relatime - nfs4 srv:/x rw,nocto,vers=4.2\n"
        "46 27 0:46 / /mnt/sharedx rw - fuse.glusterfs h:/v rw\n"
    )
    nfs = mount_of("/mnt/shared data/job/progress", str(table))
    assert nfs == MountInfo("/mnt/shared data", "nfs4", nfs.options)
    assert {"nocto", "vers=4.2", "relatime"} <= nfs.options and nfs.shared
    assert mount_of("/mnt/sharedx/a", str(table)).fstype == "fuse.glusterfs"
    assert mount_of("/var/tmp", str(table)) == MountInfo("/", "ext4", frozenset({"rw", "relatime"}))
    assert not mount_of("/var/tmp", str(table)).shared


def test_a_local_folder_has_no_problem_and_the_probe_is_removed(tmp_path: Path) -> None:
    assert freshness_problem(tmp_path) is None
    assert list(tmp_path.iterdir()) == []


def _pretend(monkeypatch: pytest.MonkeyPatch, mount: MountInfo, direct: bool) -> None:
    monkeypatch.setattr(_freshness, "mount_of", lambda path: mount)
    monkeypatch.setattr(_freshness, "_direct_io_works", lambda folder: direct)


def test_nfs_nocto_without_o_direct_is_named_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _pretend(monkeypatch, MountInfo("/mnt/nfs", "nfs", frozenset({"rw", "nocto"})), direct=False)
    problem = freshness_problem(tmp_path)
    assert problem is not None and str(tmp_path) in problem and "nocto" in problem
    _pretend(monkeypatch, MountInfo("/mnt/nfs", "nfs", frozenset({"rw", "nocto"})), direct=True)
    assert freshness_problem(tmp_path) is None


def test_no_fadvise_and_no_o_direct_may_never_refresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _pretend(monkeypatch, MountInfo("/mnt/b", "beegfs", frozenset({"rw"})), direct=False)
    monkeypatch.setattr(_direct_io, "DONTNEED", None)
    problem = freshness_problem(tmp_path)
    assert problem is not None and "never" in problem and "beegfs" in problem


def test_the_warning_is_logged_once_per_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _pretend(monkeypatch, MountInfo("/mnt/nfs", "nfs4", frozenset({"nocto"})), direct=False)
    monkeypatch.setattr(_freshness, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="zoopipe_hpc.progress.record"):
        _freshness.warn_if_stale_cache(tmp_path)
        _freshness.warn_if_stale_cache(tmp_path)
    assert [r.message.count(str(tmp_path)) for r in caplog.records] == [1]
