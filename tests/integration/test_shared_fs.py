"""The shared-filesystem promises on a real one: a GlusterFS volume seen through two independent
FUSE clients (``scripts/shared-fs``), on both cache profiles, writer on one client and reader on
the other (docs/progress.md "Shared filesystems", docs/commit.md).

Needs root on Debian (the ``shared_fs`` fixture runs ``scripts/shared-fs up``); skipped
elsewhere, a failure on CI.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from zoopipe_hpc.commit._atomic import atomic_write
from zoopipe_hpc.commit._locks import locked
from zoopipe_hpc.errors import CommitError
from zoopipe_hpc.jobs.manifest import JobDirectory, Manifest
from zoopipe_hpc.progress import ProgressReader, ProgressState, ProgressWriter, _direct_io
from zoopipe_hpc.progress._direct_io import read_fresh
from zoopipe_hpc.progress._freshness import freshness_problem, mount_of
from zoopipe_hpc.progress._reader import read_progress_checked

pytestmark = pytest.mark.shared_fs

REPO = Path(__file__).resolve().parents[2]
#: docs/progress.md: a final record written on one client reaches a reader polling on another
#: client within this many seconds (plus the reader's poll interval), on both profiles.
FRESHNESS_BOUND = 2.0
_FORK = multiprocessing.get_context("fork")


def _script(*args: str, timeout: float = 300, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """``scripts/shared-fs ARGS``, its output captured."""
    return subprocess.run(
        [str(REPO / "scripts" / "shared-fs"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **kwargs,
    )


# -- progress records --------------------------------------------------------------------------


def _write_progress(path: str, updates: int, ready: Any) -> None:
    """A worker: ``updates`` commits, every one with total == success == its number, then
    FINISHED (its end_time is when finish() was called)."""
    with ProgressWriter(path, "attempt-1", flush_interval=0.0) as writer:
        writer.start()
        ready.set()
        for n in range(1, updates + 1):
            writer.update(n, n, 0)
            time.sleep(0.002)
        writer.finish("done")


@pytest.mark.parametrize("read", ["direct", "buffered"])
def test_progress_record_crosses_clients(
    shared_fs: Any, read: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Never a garbled or older record; FINISHED seen within the bound, with O_DIRECT and with
    the buffered path a filesystem refusing O_DIRECT gets."""
    if read == "buffered":
        monkeypatch.setattr(_direct_io, "O_DIRECT", 0)
    host, other = shared_fs.folder("progress")
    ready = _FORK.Event()
    worker = _FORK.Process(target=_write_progress, args=(str(host / "0.progress"), 400, ready))
    worker.start()
    try:
        assert ready.wait(30), "the writer did not start"
        reader = ProgressReader(other / "0.progress", expected_attempt_id="attempt-1")
        seen = 0
        kept = 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            snapshot = reader.poll()
            now = time.time()
            if snapshot is None:
                continue
            seen += 1
            assert snapshot.sequence >= kept, "an older record replaced a newer one"
            kept = snapshot.sequence
            assert snapshot.attempt_id == "attempt-1"
            assert snapshot.total_processed == snapshot.success_count, snapshot
            assert snapshot.error_count == 0
            if snapshot.state is ProgressState.FINISHED:
                assert snapshot.total_processed == 400 and snapshot.message == "done"
                lag = now - snapshot.end_time
                assert lag <= FRESHNESS_BOUND, f"FINISHED seen {lag:.2f} s late ({read})"
                break
            assert snapshot.state is ProgressState.RUNNING
            time.sleep(0.005)
        else:
            pytest.fail(f"FINISHED never seen through the other client ({read}, {seen} reads)")
        # A raw read of every kind agrees once the writer is done: no read mixes two commits.
        final, problem = read_progress_checked(other / "0.progress")
        assert problem is None and final is not None and final.state is ProgressState.FINISHED
    finally:
        worker.join(30)
    assert worker.exitcode == 0


def test_a_record_reused_on_another_client_continues_its_sequence(shared_fs: Any) -> None:
    """A second writer on another node reuses a record file whose early page that node's client
    cached, once that node has seen the first writer's end: it continues after the first
    writer's last sequence, never below it (its own read goes past the cached page)."""
    host, other = shared_fs.folder("reuse")
    first = ProgressWriter(host / "0.progress", "attempt-1", flush_interval=0.0)
    first.start()
    fd = os.open(other / "0.progress", os.O_RDONLY)  # the other client caches this early page
    try:
        assert len(os.pread(fd, 4096, 0)) == 4096
    finally:
        os.close(fd)
    for n in range(1, 51):
        first.update(n, n, 0)
    first.fail("node lost")
    first.close()
    last, _ = read_progress_checked(host / "0.progress")
    assert last is not None and last.state is ProgressState.FAILED
    # As a coordinator would: the new attempt starts once the other node has seen the end.
    deadline = time.monotonic() + FRESHNESS_BOUND
    while (seen := read_progress_checked(other / "0.progress")[0]) != last:
        assert time.monotonic() < deadline, f"the other client still sees {seen}"
        time.sleep(0.01)
    with ProgressWriter(other / "0.progress", "attempt-2") as second:
        second.start()
        reader = ProgressReader(host / "0.progress")
        snapshot = reader.poll()
        assert snapshot is not None and snapshot.attempt_id == "attempt-2"
        assert snapshot.sequence > last.sequence
        second.finish()


def _write_in_namespace(path: Path) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys\n"
        "from zoopipe_hpc.progress import ProgressWriter\n"
        "with ProgressWriter(sys.argv[1], 'ns-attempt') as w:\n"
        "    w.start(); w.update(7, 6, 1); w.finish('from the namespace')\n"
        "print(open('/proc/self/mountinfo').read())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return _script("exec", "--", sys.executable, "-c", code, str(path), timeout=120, env=env)


def test_a_node_in_its_own_mount_namespace(shared_fs: Any) -> None:
    """`shared-fs exec`: a process with its own client at the host's path (as each slurmd gets)
    writes a record the host's client reads; its client is gone when it exits."""
    host, _ = shared_fs.folder("namespace")
    before = _client_pids()
    done = _write_in_namespace(host / "0.progress")
    assert done.returncode == 0, done.stderr
    # Inside, exactly one client of the volume, at the host's mount path.
    mounts = [line for line in done.stdout.splitlines() if " fuse.glusterfs " in line]
    assert len(mounts) == 1 and f" {shared_fs.host} " in mounts[0], mounts
    snapshot = ProgressReader(host / "0.progress", expected_attempt_id="ns-attempt").poll()
    assert snapshot is not None and snapshot.state is ProgressState.FINISHED
    assert (snapshot.total_processed, snapshot.error_count) == (7, 1)
    assert snapshot.message == "from the namespace"
    assert _client_pids() == before, "the namespace's client outlived its command"


def test_the_engine_sees_no_cache_it_cannot_get_past(shared_fs: Any) -> None:
    """O_DIRECT works through both clients on both profiles: no freshness warning."""
    host, other = shared_fs.folder("fresh")
    for folder in (host, other):
        assert mount_of(folder).fstype == "fuse.glusterfs" and mount_of(folder).shared
        assert freshness_problem(folder) is None
        assert list(folder.iterdir()) == []  # the probe is gone


def _client_pids() -> set[str]:
    status = _script("status")
    return {line.split()[2] for line in status.stdout.splitlines() if line.startswith("client:")}


# -- the commit lock and state read under it -----------------------------------------------------


def _count_under_commit_lock(target: str, times: int, errors: Any) -> None:
    """Add 1 to the counter in ``target`` ``times`` times, each under the commit lock; a
    CommitError (the only error the lock may raise) means: try that increment again."""
    path = Path(target)
    done = 0
    while done < times:
        try:
            with locked(path, timeout=60):
                value = int(read_fresh(path))
                atomic_write(path, str(value + 1).encode())
        except CommitError as exc:
            errors.put(str(exc))
            continue
        done += 1


def _count_in_manifest(folder: str, times: int) -> None:
    job = JobDirectory(folder)
    for _ in range(times):
        job.update(lambda m: m.config.__setitem__("n", m.config["n"] + 1), what="count")


def test_no_lost_update_under_the_lock_across_clients(shared_fs: Any) -> None:
    """Two nodes increment one counter under the commit lock, and one manifest field under the
    job lock: every increment counts, and the lock raises nothing but CommitError."""
    host, other = shared_fs.folder("counter")
    atomic_write(host / "counter", b"0")
    JobDirectory(host / "job").create(
        Manifest(
            job_id="count", name="count", engine="local", run_id="r", config={"n": 0}, shards=[]
        )
    )
    times = 25
    errors = _FORK.Queue()
    workers = [
        _FORK.Process(target=_count_under_commit_lock, args=(str(root / "counter"), times, errors))
        for root in (host, other)
    ] + [
        _FORK.Process(target=_count_in_manifest, args=(str(root / "job"), times))
        for root in (host, other)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]
    lock_errors = []
    while not errors.empty():
        lock_errors.append(errors.get())
    assert int(read_fresh(other / "counter")) == 2 * times, lock_errors
    assert JobDirectory(other / "job").read().config["n"] == 2 * times
    assert all(str(host / "counter") in e or str(other / "counter") in e for e in lock_errors)


# -- os.replace of a committed file seen from the other client ----------------------------------


def _version(n: int) -> bytes:
    payload = hashlib.sha256(str(n).encode()).digest() * 4096  # 128 KiB
    return b"%d\n%s\n" % (n, hashlib.sha256(payload).hexdigest().encode()) + payload


def _replace_versions(target: str, count: int) -> None:
    for n in range(1, count + 1):
        atomic_write(target, _version(n))
        time.sleep(0.003)


def test_replace_seen_from_the_other_client_is_never_partial(shared_fs: Any) -> None:
    """A file replaced (atomic_write: os.replace) again and again on one client, read on the
    other: every read is one whole version (ESTALE retried inside read_fresh), and the last
    version is seen once the writer is done."""
    host, other = shared_fs.folder("replace")
    count = 150
    atomic_write(host / "target", _version(0))
    writer = _FORK.Process(target=_replace_versions, args=(str(host / "target"), count))
    writer.start()
    reads = 0
    try:
        while writer.is_alive() or reads == 0:
            data = read_fresh(other / "target")
            head, digest, payload = data.split(b"\n", 2)
            assert data == _version(int(head)), f"a partial or mixed file: version {head!r}"
            assert hashlib.sha256(payload).hexdigest().encode() == digest
            reads += 1
    finally:
        writer.join(60)
    assert writer.exitcode == 0
    deadline = time.monotonic() + FRESHNESS_BOUND
    while read_fresh(other / "target") != _version(count):
        assert time.monotonic() < deadline, "the last version did not reach the other client"
        time.sleep(0.05)


def test_the_freshness_benchmark_runs(shared_fs: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """benchmarks/shared_fs_freshness.py end to end (one short run per read path)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import shared_fs_freshness
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    argv = ["--host", str(shared_fs.host), "--other", str(shared_fs.other)]
    assert shared_fs_freshness.main([*argv, "--runs", "1", "--seconds", "0.3"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:2] == ["read", "path"] and len(table) == 5
    assert all("inf" not in line for line in table), table


def test_the_lock_benchmark_runs(shared_fs: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """benchmarks/shared_fs_locks.py end to end (a few acquisitions): nothing but CommitError."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import shared_fs_locks
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    argv = ["--host", str(shared_fs.host), "--other", str(shared_fs.other)]
    assert shared_fs_locks.main([*argv, "--acquisitions", "4"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in table[1:3]] == [["same", "client"], ["two", "clients"]]


def _client_pid(mount: Path) -> int | None:
    """The pid of the FUSE client process serving ``mount`` (host namespace), if any."""
    for line in _script("status").stdout.splitlines():
        if line.startswith("client: pid ") and f" at {mount} " in f"{line} ":
            return int(line.split()[2])
    return None


def test_a_client_whose_process_died_is_mounted_again(shared_fs: Any) -> None:
    """A client process killed (OOM killer, an admin) leaves a dead mount behind: ``status``
    names it, ``client`` (and ``up``) mount a live client there again, which sees the volume."""
    mount = Path("/mnt/zoopipe-shared-dead")
    host, _ = shared_fs.folder("dead-client")
    (host / "marker").write_text("still here")
    assert _script("client", str(mount)).returncode == 0
    try:
        pid = _client_pid(mount)
        assert pid is not None, _script("status").stdout
        os.kill(pid, 9)
        deadline = time.monotonic() + 30
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        with pytest.raises(OSError):
            os.statvfs(mount)
        status = _script("status")
        assert f"dead mount: {mount} " in status.stdout, status.stdout

        again = _script("client", str(mount))
        assert again.returncode == 0, again.stderr
        assert "does not answer" in again.stderr
        leaf = host.relative_to(shared_fs.host)
        assert (mount / leaf / "marker").read_text() == "still here"
        assert "dead mount:" not in _script("status").stdout
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, check=False)
