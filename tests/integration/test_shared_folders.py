"""Shared folders are not trusted (issue 11): another user of the machine cannot make a run
commit their file, nor make a Slurm task unpickle their code.

The other user is made here (``useradd``) and acts through ``setpriv``; the tests need root for
that and are skipped otherwise. Each hijack must fail with a clear error, leave the target
byte-identical, and rename nothing of the other user's over it.
"""

from __future__ import annotations

import os
import pickle
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from _support import User, users, write_csv

from zoopipe_hpc import CSVInputAdapter, JSONOutputAdapter, Pipe, PipeManager
from zoopipe_hpc.commit import transaction
from zoopipe_hpc.engines.slurm import SlurmEngine
from zoopipe_hpc.engines.slurm._payload import PAYLOAD_FORMAT, PayloadStore
from zoopipe_hpc.engines.slurm.task import shard_payload_name
from zoopipe_hpc.errors import CommitError
from zoopipe_hpc.report import PipeStatus

INTRUDER = "zoopipe-intruder"
OLD = b'{"id": -1, "name": "the previous output"}\n'


@dataclass(frozen=True)
class Intruder:
    """Another user of the machine, who can write to the shared folder."""

    uid: int
    gid: int

    def run(self, script: str) -> None:
        """Run a shell script as this user (real and effective ids, no supplementary groups)."""
        subprocess.run(
            [
                "setpriv",
                f"--reuid={self.uid}",
                f"--regid={self.gid}",
                "--clear-groups",
                "sh",
                "-ec",
                script,
            ],
            check=True,
            capture_output=True,
        )


@pytest.fixture(scope="module")
def intruder() -> Iterator[Intruder]:
    if os.geteuid() != 0:
        pytest.skip("making another user (useradd) and acting as them (setpriv) needs root")
    if shutil.which("useradd") is None or shutil.which("setpriv") is None:
        pytest.skip("useradd and setpriv (util-linux) are needed to act as another user")
    created = False
    try:
        pwd.getpwnam(INTRUDER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", INTRUDER],
            check=True,
            capture_output=True,
        )
        created = True
    entry = pwd.getpwnam(INTRUDER)
    yield Intruder(entry.pw_uid, entry.pw_gid)
    if created:
        subprocess.run(["userdel", INTRUDER], check=False, capture_output=True)


def _shared_folder(mode: int) -> Iterator[Path]:
    # Not under pytest's tmp_path: that is private to root, and the intruder must reach this.
    folder = Path(tempfile.mkdtemp(prefix="zoopipe-shared-", dir="/tmp"))
    os.chmod(folder, mode)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def shared() -> Iterator[Path]:
    """A world-writable folder with the sticky bit, like /tmp."""
    yield from _shared_folder(0o1777)


@pytest.fixture
def group_share() -> Iterator[Path]:
    """A folder others can write to without the sticky bit (a careless project share): they can
    rename the entries of others in it."""
    yield from _shared_folder(0o777)


def _pipe(tmp_path: Path, target: Path) -> Pipe:
    source = write_csv(tmp_path / "in.csv", users(50))
    return Pipe(CSVInputAdapter(source), JSONOutputAdapter(target), User)


def _plant(intruder: Intruder, shared: Path, how: str) -> Path:
    """The intruder's ``.zoopipe-staging``: a link to a folder of theirs, or such a folder."""
    if how == "symlink":
        intruder.run(f"mkdir -m 777 {shared}/mine && ln -s {shared}/mine {shared}/.zoopipe-staging")
        return shared / "mine"
    intruder.run(f"mkdir -m 777 {shared}/.zoopipe-staging")
    return shared / ".zoopipe-staging"


def _contents(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("how", ["symlink", "folder"])
@pytest.mark.parametrize("runner", ["pipe", "manager"])
def test_a_planted_staging_folder_is_refused_and_the_target_is_untouched(
    tmp_path: Path, shared: Path, intruder: Intruder, how: str, runner: str
) -> None:
    target = shared / "out.jsonl"
    target.write_bytes(OLD)
    theirs = _plant(intruder, shared, how)
    intruder.run(f"echo evil > {theirs}/out.jsonl.run-x")
    before = _contents(theirs)
    pipe = _pipe(tmp_path, target)
    problem = "is a symbolic link to" if how == "symlink" else "belongs to another user"
    with pytest.raises(CommitError) as caught:
        if runner == "pipe":
            pipe.run()
        else:
            PipeManager.parallelize_pipe(pipe, workers=2).run(timeout=60)
    message = str(caught.value)
    assert f"the staging folder {shared}/.zoopipe-staging {problem}" in message, message
    assert f"owner uid {intruder.uid}, mode " in message, message
    assert "It was not created by you: have it removed" in message, message
    assert target.read_bytes() == OLD
    assert target.stat().st_uid == os.geteuid()
    assert _contents(theirs) == before  # nothing of ours went in, nothing of theirs went out
    assert (theirs / "out.jsonl.run-x").read_bytes() == b"evil\n"


@pytest.mark.parametrize("when", ["prepared", "recorded"])
def test_a_staging_folder_swapped_during_the_commit_is_refused_before_the_rename(
    tmp_path: Path,
    group_share: Path,
    intruder: Intruder,
    when: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In a share without the sticky bit the intruder renames our staging folder away once the
    parts are checked and puts one of theirs in its place, with the same names and sizes: the
    lock (``prepared``) or the final rename (``recorded``, after the decision) refuses it."""
    target = group_share / "out.jsonl"
    target.write_bytes(OLD)
    root = group_share / ".zoopipe-staging"
    planted: list[Path] = []

    def swap(name: str) -> None:
        if name != when:
            return
        lines = []
        for run in root.glob("out.jsonl.run-*"):
            lines.append(f"mkdir -p {run}")
            for path in run.iterdir():
                size = path.stat().st_size
                lines.append(f"head -c {size} /dev/zero | tr '\\0' E > {path}")
                planted.append(path)
        intruder.run(f"mv {root} {group_share}/.stolen\n" + "\n".join(lines))

    monkeypatch.setattr(transaction, "_step", swap)
    with pytest.raises(CommitError) as caught:
        _pipe(tmp_path, target).run()
    message = str(caught.value)
    assert f"{root} belongs to another user (owner uid {intruder.uid}" in message, message
    assert target.read_bytes() == OLD
    assert target.stat().st_uid == os.geteuid()
    assert planted and all(p.read_bytes().strip(b"E") == b"" for p in planted)  # not renamed


def test_a_private_staging_folder_in_a_shared_folder_commits(tmp_path: Path, shared: Path) -> None:
    """The OK case: the run's own folders in a 1777 folder, mode 0700."""
    target = shared / "out.jsonl"
    target.write_bytes(OLD)
    _pipe(tmp_path, target).run()
    assert target.read_bytes() != OLD and target.stat().st_uid == os.geteuid()
    assert os.stat(shared / ".zoopipe-staging").st_mode & 0o777 == 0o700


# -- the payloads of Slurm tasks -----------------------------------------------------------------


class _Marker:
    """What a forged payload would do when unpickled: create a marker folder."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.mkdir, (str(self.path),))


@pytest.mark.slurm
@pytest.mark.on_shared_fs
@pytest.mark.usefixtures("slurm_cluster")
def test_forged_payloads_are_refused_by_the_tasks_before_anything_is_unpickled(
    tmp_path: Path,
) -> None:
    """The array is held while its payloads are replaced after submission: shard 1 gets shard
    0's signed payload (replayed under another shard's name), shard 2 a pickle that would make
    a marker behind a made-up signature, shard 3 a bare pickle (as submitit's per-task pickles
    were), and shard 4 keeps its payload but it is chowned to another uid. Only shard 0 runs."""
    marker = tmp_path / "marker"
    engine = SlurmEngine(
        folder=tmp_path / "jobs",
        time="00:05:00",
        mem="300M",
        poll_interval=0.3,
        stale_after=6.0,
        extra={"hold": True},
    )
    target = tmp_path / "out.jsonl"
    manager = PipeManager.parallelize_pipe(_pipe(tmp_path, target), workers=5, engine=engine)
    manager.start()
    try:
        assert engine.job_folder is not None
        store = PayloadStore(engine.job_folder)
        path = [store.path(shard_payload_name(i)) for i in range(5)]
        shutil.copyfile(path[0], path[1])
        path[2].write_bytes(
            PAYLOAD_FORMAT + b" " + b"0" * 64 + b"\n" + pickle.dumps(_Marker(marker))
        )
        path[3].write_bytes(pickle.dumps(_Marker(marker)))
        os.chown(path[4], 54321, -1)
        script = next((engine.job_folder / "logs").glob("*_submission.sh")).read_text()
        assert f"-P -u -m zoopipe_hpc.engines.slurm {engine.job_folder} --shards 0-4" in script
        for array in engine.live_arrays():
            subprocess.run(["scontrol", "release", array], check=True, capture_output=True)
        assert manager.wait(timeout=180)
    finally:
        manager.shutdown()
    reports = manager.pipe_reports
    assert not marker.exists(), "a forged payload was unpickled"
    assert not target.exists()  # shards failed: nothing committed
    assert reports[0].status is PipeStatus.COMPLETED, reports[0].message
    expected = {
        1: "signature does not match",
        2: "signature does not match",
        3: "is not a signed zoopipe-hpc-payload/3 payload",
        4: "belongs to another user (owner uid 54321",
    }
    for index, text in expected.items():
        report = reports[index]
        assert report.status is PipeStatus.FAILED, (index, report.status, report.message)
        assert "refusing to load" in report.message and text in report.message, report.message
    log = Path(reports[4].extra["log"]).read_text()
    assert "refusing to load a payload: the payload" in log, log
