"""The one private-path check (``zoopipe_hpc._private``) and what is built on it: staged files,
the verified rename, payload signatures bound to their job and shard, the task entry point."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from zoopipe_hpc._private import (
    Use,
    check_private,
    ensure_private_dir,
    open_private_dir,
    read_private_file,
)
from zoopipe_hpc.commit._staging import StagingArea, publish_staged
from zoopipe_hpc.commit.staged import StagedFile
from zoopipe_hpc.engines.slurm import task
from zoopipe_hpc.engines.slurm._payload import PayloadRefused, PayloadStore
from zoopipe_hpc.errors import CommitError, ConfigurationError

USE = Use(action="use it in a test", risk="anyone could change it")
OTHER_UID = 54321
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")


def _folder(tmp_path: Path, mode: int = 0o700) -> Path:
    path = tmp_path / "f"
    path.mkdir()
    os.chmod(path, mode)
    return path


def test_a_private_folder_and_file_pass(tmp_path: Path) -> None:
    folder = tmp_path / "made"
    info = ensure_private_dir(folder, "folder", USE)
    assert stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == os.geteuid()
    assert check_private(folder, "folder", USE).st_ino == info.st_ino
    os.close(open_private_dir(folder, "folder", USE))
    secret = folder / "key"
    secret.write_bytes(b"k" * 32)
    os.chmod(secret, 0o600)
    assert read_private_file(secret, "key", USE, secret=True) == b"k" * 32
    os.chmod(folder, 0o755)  # readable by others is fine for a folder: nobody else can write
    check_private(folder, "folder", USE)


def test_a_symlink_is_refused_never_followed(tmp_path: Path) -> None:
    real = _folder(tmp_path)
    link = tmp_path / "link"
    link.symlink_to(real)
    for call in (
        lambda: check_private(link, "staging folder", USE),
        lambda: ensure_private_dir(link, "staging folder", USE),
        lambda: open_private_dir(link, "staging folder", USE),
    ):
        with pytest.raises(CommitError, match=f"the staging folder {link} is a symbolic link to"):
            call()
    (real / "key").write_bytes(b"k" * 32)
    (tmp_path / "key").symlink_to(real / "key")
    with pytest.raises(CommitError, match="key .* is a symbolic link") as caught:
        read_private_file(tmp_path / "key", "key", USE)
    assert "It was not created by you: have it removed" in str(caught.value)


@needs_root
def test_a_folder_of_another_user_is_refused_with_its_owner_and_mode(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    os.chown(folder, OTHER_UID, OTHER_UID)
    with pytest.raises(CommitError) as caught:
        ensure_private_dir(folder, "staging folder", USE)
    message = str(caught.value)
    assert message.startswith(f"refusing to use it in a test: the staging folder {folder} ")
    assert f"belongs to another user (owner uid {OTHER_UID}, mode 0700; you are uid 0)" in message
    assert "Anyone could change it." in message and "rm -r" in message
    assert caught.value.details == {"path": str(folder), "owner_uid": OTHER_UID, "mode": 0o700}


@pytest.mark.parametrize(
    ("mode", "who"), [(0o770, "group"), (0o707, "others"), (0o777, "group and others")]
)
def test_a_folder_others_can_write_to_is_refused(tmp_path: Path, mode: int, who: str) -> None:
    folder = _folder(tmp_path, mode)
    with pytest.raises(PayloadRefused, match=f"is writable by {who} .*chmod go-w"):
        check_private(folder, "job folder", Use("load a payload", "risk", PayloadRefused))


def test_tighten_makes_an_own_folder_0700(tmp_path: Path) -> None:
    folder = _folder(tmp_path, 0o775)
    ensure_private_dir(folder, "folder", USE, tighten=True)
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700


def test_a_secret_readable_by_others_is_refused(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_bytes(b"k")
    os.chmod(key, 0o644)
    with pytest.raises(CommitError, match="is readable by group and others .*chmod 600"):
        read_private_file(key, "key", USE, secret=True)
    with pytest.raises(CommitError, match="is not a regular file"):
        read_private_file(tmp_path, "key", USE)


# -- staged files and the rename -------------------------------------------------------------


def _staged(tmp_path: Path) -> tuple[StagingArea, StagedFile]:
    staging = StagingArea(tmp_path / "out.jsonl")
    staging.create()
    part = staging.part_path(0, ".jsonl")
    part.write_bytes(b'{"id": 1}\n')
    return staging, StagedFile.of("output", part, 1)


def test_a_staged_file_replaced_by_a_link_or_in_an_open_folder_is_refused(tmp_path: Path) -> None:
    staging, staged = _staged(tmp_path)
    staged.check("out.jsonl", 0)
    part = Path(staged.path)
    elsewhere = tmp_path / "elsewhere.jsonl"
    part.rename(elsewhere)
    part.symlink_to(elsewhere)
    with pytest.raises(CommitError, match="the staged file .* is a symbolic link"):
        staged.check("out.jsonl", 0)
    part.unlink()
    elsewhere.rename(part)
    os.chmod(staging.path, 0o777)
    with pytest.raises(CommitError, match="run staging folder .* is writable by group and others"):
        staged.check("out.jsonl", 0)


@needs_root
def test_a_staged_file_of_another_user_is_refused(tmp_path: Path) -> None:
    _, staged = _staged(tmp_path)
    os.chown(staged.path, OTHER_UID, -1)
    with pytest.raises(CommitError, match=f"staged file .* belongs to another user .*{OTHER_UID}"):
        staged.check("out.jsonl", 0)


def test_publish_staged_renames_only_a_checked_file_of_the_targets_staging(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    target.write_bytes(b"old\n")
    staging, staged = _staged(tmp_path)
    stray = tmp_path / "stray.jsonl"
    stray.write_bytes(b"stray\n")
    with pytest.raises(CommitError, match="it is not in a staging folder of"):
        publish_staged(stray, target)
    with pytest.raises(CommitError, match="has 10 bytes, 99 were staged"):
        publish_staged(Path(staged.path), target, 99)
    os.chmod(staging.path.parent, 0o777)
    with pytest.raises(CommitError, match=r"\.zoopipe-staging is writable by group and others"):
        publish_staged(Path(staged.path), target, staged.size)
    os.chmod(staging.path.parent, 0o700)
    assert target.read_bytes() == b"old\n"
    assert publish_staged(Path(staged.path), target, staged.size)
    assert target.read_bytes() == b'{"id": 1}\n'
    assert not publish_staged(Path(staged.path), target, staged.size)  # done already


# -- payloads and the task ---------------------------------------------------------------------


def _store(tmp_path: Path, name: str = "job-a") -> PayloadStore:
    folder = tmp_path / name
    folder.mkdir(mode=0o700)
    store = PayloadStore(folder)
    store.create()
    return store


def test_a_payload_is_bound_to_its_shard_and_job(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.dump("shard-00000", {"shard": 0})
    store.dump("shard-00001", {"shard": 1})
    assert store.load("shard-00001") == {"shard": 1}
    shutil.copyfile(store.path("shard-00000"), store.path("shard-00001"))
    with pytest.raises(PayloadRefused, match="signature does not match"):
        store.load("shard-00001")
    other = _store(tmp_path, "job-b")
    shutil.copyfile(store.key_path, other.key_path)  # even with the same key
    shutil.copyfile(store.path("shard-00000"), other.path("shard-00000"))
    with pytest.raises(PayloadRefused, match="signature does not match"):
        other.load("shard-00000")
    store.path("shard-00002").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(PayloadRefused, match="is not a signed zoopipe-hpc-payload/3 payload"):
        store.load("shard-00002")


def test_the_payload_key_and_payload_are_opened_without_following_links(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.dump("p", 1)
    copy = tmp_path / "key-copy"
    shutil.copyfile(store.key_path, copy)
    os.chmod(copy, 0o600)
    store.key_path.unlink()
    store.key_path.symlink_to(copy)
    with pytest.raises(PayloadRefused, match="the payload key .* is a symbolic link"):
        store.load("p")
    store.key_path.unlink()
    shutil.copyfile(copy, store.key_path)
    os.chmod(store.key_path, 0o600)
    assert store.load("p") == 1
    os.chmod(store.key_path, 0o640)
    with pytest.raises(PayloadRefused, match="payload key .* is readable by group .*chmod 600"):
        store.load("p")


@pytest.mark.parametrize(
    ("shards", "text"), [([0, 1, 2, 3], "0-3"), ([4], "4"), ([1, 2, 5, 7, 8, 3], "1-2,5,7-8,3")]
)
def test_shard_lists_round_trip_in_task_order(shards: list[int], text: str) -> None:
    assert task.format_shards(shards) == text
    assert task.parse_shards(text) == shards


@pytest.mark.parametrize("text", ["", "1;rm -rf /", "3-1", "a", "1,,2"])
def test_a_malformed_shard_list_is_refused(text: str) -> None:
    with pytest.raises(ConfigurationError, match="not a list of shards"):
        task.parse_shards(text)


def test_the_task_runs_the_shard_at_its_array_position(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ran: list[tuple[str, int]] = []
    monkeypatch.setattr(task, "run_shard", lambda folder, index: ran.append((folder, index)))
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "2")
    assert task.main(["/jobs/run", "--shards", "3,7-9"]) == 0
    assert ran == [("/jobs/run", 8)]
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "4")
    with pytest.raises(SystemExit):
        task.main(["/jobs/run", "--shards", "3,7-9"])
    assert "not a task of this array of 4" in capsys.readouterr().err


def test_a_refused_payload_makes_the_task_fail_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store = _store(tmp_path)
    (store.job_folder / "progress").mkdir(mode=0o700)
    store.dump(task.shard_payload_name(0), 1)
    os.chmod(store.path(task.shard_payload_name(0)), 0o666)
    monkeypatch.setattr(task, "install_stop_handlers", lambda reasons: None)  # not in pytest
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "5")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "0")
    assert task.main([str(store.job_folder), "--shards", "0"]) == 1
    assert "refusing to load a payload: the payload" in capsys.readouterr().err


def test_staging_check_refuses_a_planted_staging_folder_and_creates_nothing(tmp_path: Path) -> None:
    staging = StagingArea(tmp_path / "out.jsonl")
    staging.check()  # nothing there yet: nothing to refuse
    assert not staging.path.parent.exists()
    planted = _folder(tmp_path)
    staging.path.parent.symlink_to(planted)
    with pytest.raises(CommitError, match=r"refusing to stage .*\.zoopipe-staging is a symbolic"):
        staging.check()
    with pytest.raises(CommitError, match=r"\.zoopipe-staging is a symbolic link"):
        staging.create()
    assert list(planted.iterdir()) == []
