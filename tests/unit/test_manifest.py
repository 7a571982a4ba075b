"""Tests for zoopipe_hpc.jobs.manifest: format, checksum, optimistic locking, concurrency."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import multiprocessing as mp
import os
import pickle
import signal
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from multiprocessing.context import ForkProcess
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any

import pytest
from filelock import StrictSoftFileLock
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zoopipe_hpc.errors import ConfigurationError, ZoopipeHPCError
from zoopipe_hpc.jobs.manifest import (
    JobDirectory,
    JobState,
    Manifest,
    ManifestConflict,
    ManifestError,
    ShardRecord,
)

FORK = mp.get_context("fork")


# -- helpers ----------------------------------------------------------------------------------


def make_manifest(shards: int = 2) -> Manifest:
    return Manifest(
        job_id="users-20250101T000000-abcd1234",
        name="users",
        engine="slurm",
        run_id="20250101T000000-abcd1234",
        config={"input": "in/users.csv", "output": "out/users.parquet", "shards": shards},
        shards=[
            ShardRecord(
                index=i, source=f"in/users.csv bytes {i * 100}-{i * 100 + 99}", submissions=[]
            )
            for i in range(shards)
        ],
    )


@pytest.fixture
def job(tmp_path: Path) -> JobDirectory:
    directory = JobDirectory(tmp_path / "jobs" / "users")
    directory.create(make_manifest())
    return directory


def load_document(directory: JobDirectory) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(directory.manifest_path.read_text(encoding="utf-8"))
    return result


def expected_checksum(document: dict[str, Any]) -> str:
    body = {key: value for key, value in document.items() if key != "checksum"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def increment(manifest: Manifest) -> None:
    manifest.message = str(int(manifest.message or "0") + 1)
    shard = manifest.shards[0]
    shard.submissions.append(f"{os.getpid()}_{len(shard.submissions)}")


@contextlib.contextmanager
def reaped(*processes: ForkProcess) -> Iterator[None]:
    """Kill whatever is still running when the test leaves, so a failure leaves no stray process."""
    try:
        yield
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
            process.join(10)


# -- format and round trip --------------------------------------------------------------------


def test_create_read_round_trip(tmp_path: Path) -> None:
    original = make_manifest(shards=3)
    original.config["note"] = "Zürich ✓"  # non-ASCII survives (ensure_ascii=False)
    directory = JobDirectory(tmp_path / "a" / "b" / "job")
    before = original.to_json()

    created = directory.create(original)

    assert original.to_json() == before, "create() must not modify its argument"
    assert directory.exists()
    assert created.version == 1
    assert created.created > 0 and created.updated == created.created
    assert created.state is JobState.SUBMITTED
    assert [event["what"] for event in created.events] == ["created"]
    assert created.events[0]["version"] == 1
    assert created.events[0]["by"] == f"{socket.gethostname()}:{os.getpid()}"
    assert directory.read() == created
    assert created.shards == original.shards and created.config == original.config
    assert stat.S_IMODE(directory.path.stat().st_mode) == 0o700

    document = load_document(directory)
    assert set(document) == {"format", "checksum", "manifest"}
    assert document["format"] == "zoopipe-hpc-manifest/1"
    assert document["checksum"] == expected_checksum(document)
    assert document["manifest"] == created.to_json()
    assert "Zürich ✓" in directory.manifest_path.read_text(encoding="utf-8")


def test_to_json_from_json_round_trip() -> None:
    manifest = make_manifest()
    manifest.state = JobState.COMMITTING
    manifest.arrays = ["123", "130"]
    manifest.finish_jobs = {"commit": "124", "recover": "125"}
    manifest.shards[1] = ShardRecord(1, "part 1", ["123_1", "130_0"], "completed", "a1", "ok")
    data = manifest.to_json()
    assert data["state"] == "committing"
    assert json.loads(json.dumps(data)) == data
    assert Manifest.from_json(data) == manifest
    data["config"]["input"] = "changed"
    assert manifest.config["input"] == "in/users.csv", "to_json() must return a copy"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda d: d.pop("job_id"), "'job_id' is missing"),
        (lambda d: d.update(state="exploded"), "unknown job state 'exploded'"),
        (lambda d: d.update(version="3"), "version must be int"),
        (lambda d: d.update(version=True), "version must be int"),
        (lambda d: d.update(colour="red"), "unknown field(s) 'colour'"),
        (lambda d: d["shards"][0].pop("index"), "shards[0] lacks the field 'index'"),
        (lambda d: d["shards"][0].update(submissions=[1]), "shards[0].submissions[0] must be str"),
        (lambda d: d.update(finish_jobs={"commit": 1}), "finish_jobs['commit'] must be str"),
    ],
)
def test_from_json_rejects_invalid_data(change: Any, reason: str) -> None:
    data = make_manifest().to_json()
    change(data)
    with pytest.raises(ManifestError, match="invalid manifest") as info:
        Manifest.from_json(data)
    assert reason in str(info.value)


def test_job_state() -> None:
    assert {state for state in JobState if state.is_final} == {
        JobState.COMMITTED,
        JobState.ROLLED_BACK,
        JobState.CANCELLED,
    }
    assert not JobState.FAILED.is_final, "a failed job can be retried"
    assert JobState("rolled_back") is JobState.ROLLED_BACK
    running: str = JobState.RUNNING
    assert running == "running" and f"{running}" == "running"
    assert json.dumps({"state": JobState.RUNNING}) == '{"state": "running"}'


_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
_json_values = st.recursive(
    _json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=st.dictionaries(st.text(max_size=8), _json_values, max_size=4), message=st.text())
def test_any_json_config_round_trips_and_verifies(config: dict[str, Any], message: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        directory = JobDirectory(Path(folder) / "job")
        manifest = make_manifest()
        manifest.config = config
        manifest.message = message
        created = directory.create(manifest)
        assert created.config == config
        assert directory.read() == created
        updated = directory.update(lambda m: setattr(m, "message", m.message + "!"))
        assert directory.read() == updated and updated.message == message + "!"


# -- refusing bad manifests -------------------------------------------------------------------


def test_hand_edited_shard_state_is_refused(job: JobDirectory) -> None:
    document = load_document(job)
    document["manifest"]["shards"][0]["state"] = "completed"
    job.manifest_path.write_text(json.dumps(document, indent=1), encoding="utf-8")
    tampered = job.manifest_path.read_bytes()

    with pytest.raises(ManifestError, match="checksum mismatch") as info:
        job.read()
    assert str(job.manifest_path) in str(info.value)
    assert info.value.path == str(job.manifest_path)
    assert "modified outside zoopipe-hpc" in info.value.reason

    # An update refuses too, and writes nothing.
    with pytest.raises(ManifestError, match="checksum mismatch"):
        job.update(increment)
    assert job.manifest_path.read_bytes() == tampered


def test_reformatting_alone_is_accepted(job: JobDirectory) -> None:
    """The checksum covers the content, not the layout: re-indenting the file is harmless."""
    before = job.read()
    job.manifest_path.write_text(json.dumps(load_document(job)), encoding="utf-8")
    assert job.read() == before


@pytest.mark.parametrize("keep", [0, 1, 100, -2])
def test_truncated_manifest_is_refused(job: JobDirectory, keep: int) -> None:
    data = job.manifest_path.read_bytes()
    job.manifest_path.write_bytes(data[:keep])
    with pytest.raises(ManifestError, match="unreadable") as info:
        job.read()
    assert str(job.manifest_path) in str(info.value)


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda d: d.pop("checksum"), "checksum is missing"),
        (lambda d: d.update(checksum="md5:00"), "checksum is missing or malformed"),
        (lambda d: d.update(format="zoopipe-hpc-manifest/9"), "unsupported manifest format"),
        (lambda d: d.pop("format"), "not a zoopipe-hpc manifest"),
        (lambda d: d.update(extra=1), "checksum mismatch"),
    ],
)
def test_malformed_envelope_is_refused(job: JobDirectory, edit: Any, reason: str) -> None:
    document = load_document(job)
    edit(document)
    job.manifest_path.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(ManifestError) as info:
        job.read()
    assert reason in str(info.value)


def test_valid_checksum_over_invalid_content_is_refused(job: JobDirectory) -> None:
    document = load_document(job)
    document["manifest"]["state"] = "exploded"
    document["checksum"] = expected_checksum(document)
    job.manifest_path.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(ManifestError, match="invalid manifest: unknown job state 'exploded'"):
        job.read()


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="no such job directory") as info:
        JobDirectory(tmp_path / "nowhere").read()
    assert info.value.path == str(tmp_path / "nowhere" / "manifest.json")
    with pytest.raises(ManifestError, match="no such job directory"):
        JobDirectory(tmp_path / "nowhere").update(increment)
    assert not (tmp_path / "nowhere").exists()
    with pytest.raises(ManifestError, match="no manifest"):
        JobDirectory(tmp_path).read()
    assert not JobDirectory(tmp_path).exists()


def test_create_on_existing_manifest_is_refused(job: JobDirectory) -> None:
    job.update(increment)
    before = job.manifest_path.read_bytes()
    with pytest.raises(ManifestError, match="already holds a manifest") as info:
        JobDirectory(job.path).create(make_manifest(shards=5))
    assert info.value.path == str(job.manifest_path)
    assert job.manifest_path.read_bytes() == before

    # A tampered manifest is not overwritten by create() either.
    job.manifest_path.write_text("{}", encoding="utf-8")
    with pytest.raises(ManifestError, match="already holds a manifest"):
        job.create(make_manifest())


def test_create_in_an_existing_empty_directory(tmp_path: Path) -> None:
    created = JobDirectory(tmp_path).create(make_manifest())
    assert JobDirectory(tmp_path).read() == created


def test_create_refuses_data_that_is_not_json(tmp_path: Path) -> None:
    manifest = make_manifest()
    manifest.config["when"] = object()
    directory = JobDirectory(tmp_path / "job")
    with pytest.raises(ConfigurationError, match="not plain JSON"):
        directory.create(manifest)
    assert not directory.exists()


# -- update and optimistic locking ------------------------------------------------------------


def test_update_bumps_version_and_records_event(job: JobDirectory) -> None:
    first = job.read()
    time.sleep(0.01)

    def start(manifest: Manifest) -> None:
        manifest.state = JobState.RUNNING
        manifest.arrays.append("4711")
        manifest.shards[1].submissions.append("4711_1")
        manifest.shards[1].state = "running"

    second = job.update(start, expected_version=first.version, what="submitted array 4711")

    assert second.version == first.version + 1 == 2
    assert second.updated > first.updated and second.created == first.created
    assert second.state is JobState.RUNNING and second.arrays == ["4711"]
    assert second.shards[1].submissions == ["4711_1"] and second.shards[1].state == "running"
    assert second.events[:-1] == first.events
    event = second.events[-1]
    assert set(event) == {"time", "version", "what", "by"}
    assert event["version"] == 2 and event["what"] == "submitted array 4711"
    assert event["by"] == f"{socket.gethostname()}:{os.getpid()}"
    assert first.updated <= event["time"] <= time.time()
    assert job.read() == second

    third = job.update(lambda m: None)
    assert third.version == 3 and third.events[-1]["what"] == "update"
    assert [path.name for path in job.path.iterdir() if path.name.endswith(".tmp")] == []


def test_update_gives_change_a_copy(job: JobDirectory) -> None:
    seen: list[Manifest] = []

    def change(manifest: Manifest) -> None:
        seen.append(manifest)
        manifest.message = "changed"

    result = job.update(change)
    seen[0].message = "mutated after update"
    assert result.message == "changed" and job.read().message == "changed"


def test_expected_version_conflict_writes_nothing(job: JobDirectory) -> None:
    stale = job.read()
    job.update(increment, what="someone else")
    before = job.manifest_path.read_bytes()
    called: list[Manifest] = []

    with pytest.raises(ManifestConflict) as info:
        job.update(called.append, expected_version=stale.version)

    conflict = info.value
    assert called == [], "the change must not run on a conflict"
    assert job.manifest_path.read_bytes() == before
    assert (conflict.path, conflict.expected_version, conflict.actual_version) == (
        str(job.manifest_path),
        1,
        2,
    )
    assert "expected manifest version 1, found 2" in str(conflict)
    assert isinstance(conflict, ZoopipeHPCError)

    # A caller that re-reads can go on.
    fresh = job.read()
    assert job.update(increment, expected_version=fresh.version).version == 3


def test_errors_survive_pickling(job: JobDirectory) -> None:
    conflict = ManifestConflict(path="/j/manifest.json", expected_version=4, actual_version=7)
    copy = pickle.loads(pickle.dumps(conflict))
    assert type(copy) is ManifestConflict and str(copy) == str(conflict)
    assert (copy.path, copy.expected_version, copy.actual_version) == ("/j/manifest.json", 4, 7)
    error = ManifestError("checksum mismatch: x", path="/j/manifest.json")
    copy_error = pickle.loads(pickle.dumps(error))
    assert str(copy_error) == "/j/manifest.json: checksum mismatch: x"
    assert copy_error.path == "/j/manifest.json" and copy_error.reason == "checksum mismatch: x"


def test_failing_change_writes_nothing(job: JobDirectory) -> None:
    before = job.manifest_path.read_bytes()

    def fail(manifest: Manifest) -> None:
        manifest.message = "half done"
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        job.update(fail)
    assert job.manifest_path.read_bytes() == before
    assert job.update(increment).version == 2, "the lock was released"


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda m: setattr(m, "version", 99), "may not modify 'version'"),
        (lambda m: setattr(m, "job_id", "other"), "may not modify 'job_id'"),
        (lambda m: m.events.clear(), "may not modify 'events'"),
        (lambda m: setattr(m, "state", "exploded"), "left the manifest invalid"),
        (lambda m: m.config.update(when=object()), "left the manifest invalid"),
    ],
)
def test_invalid_change_is_refused(job: JobDirectory, change: Any, match: str) -> None:
    before = job.manifest_path.read_bytes()
    with pytest.raises(ConfigurationError, match=match):
        job.update(change)
    assert job.manifest_path.read_bytes() == before


def test_change_may_set_state_as_plain_string(job: JobDirectory) -> None:
    result = job.update(lambda m: setattr(m, "state", "failed"))
    assert result.state is JobState.FAILED and job.read().state is JobState.FAILED


# -- concurrency ------------------------------------------------------------------------------


def _writer(path: str, increments: int, start: EventType) -> None:
    start.wait(10)
    directory = JobDirectory(path)
    for _ in range(increments):
        directory.update(increment, what="increment")


def _reader(path: str, stop: EventType, results: Queue[tuple[int, int, str]]) -> None:
    directory = JobDirectory(path)
    reads, last, problem = 0, 0, ""
    while not stop.is_set() or reads == 0:
        try:
            manifest = directory.read()
        except Exception as exc:  # report every failure, not only ManifestError
            problem = f"{type(exc).__name__}: {exc}"
            break
        if manifest.version < last:
            problem = f"version went back from {last} to {manifest.version}"
            break
        if int(manifest.message or "0") != manifest.version - 1:
            problem = f"inconsistent manifest: version {manifest.version}, count {manifest.message}"
            break
        last = manifest.version
        reads += 1
    results.put((reads, last, problem))


def test_concurrent_updates_lose_nothing_and_readers_never_see_partial_state(
    job: JobDirectory,
) -> None:
    writers, increments = 4, 15
    start, stop = FORK.Event(), FORK.Event()
    results: Queue[tuple[int, int, str]] = FORK.Queue()
    reader = FORK.Process(target=_reader, args=(str(job.path), stop, results))
    processes = [
        FORK.Process(target=_writer, args=(str(job.path), increments, start))
        for _ in range(writers)
    ]
    with reaped(reader, *processes):
        reader.start()
        for process in processes:
            process.start()
        start.set()
        for process in processes:
            process.join(60)
            assert process.exitcode == 0
        stop.set()
        reads, last_seen, problem = results.get(timeout=30)
        reader.join(10)

    assert problem == ""
    assert reads > 0 and 1 <= last_seen <= writers * increments + 1

    final = job.read()
    total = writers * increments
    assert final.message == str(total)
    assert final.version == total + 1
    assert len(final.shards[0].submissions) == total
    assert [event["version"] for event in final.events] == list(range(1, total + 2))
    times = [event["time"] for event in final.events]
    assert times == sorted(times)
    by = [event["by"] for event in final.events[1:]]
    assert sorted({by.count(who) for who in by}) == [increments]
    assert len(set(by)) == writers
    assert not [path for path in job.path.iterdir() if path.name.endswith(".tmp")]


def test_concurrent_updates_from_threads(job: JobDirectory) -> None:
    def work() -> None:
        for _ in range(10):
            job.update(increment)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    final = job.read()
    assert final.message == "30" and final.version == 31


def test_update_inside_a_change_is_refused_at_once(job: JobDirectory) -> None:
    before = job.manifest_path.read_bytes()

    def nested(manifest: Manifest) -> None:
        JobDirectory(job.path).update(increment)

    started = time.monotonic()
    with pytest.raises(ConfigurationError, match="already locked by this thread"):
        job.update(nested)
    assert time.monotonic() - started < 2.0, "no waiting for the lock timeout"
    assert job.manifest_path.read_bytes() == before
    assert job.update(increment).version == 2, "the lock was released"


def _die_holding_the_lock(path: str, holding: EventType) -> None:
    def hang(manifest: Manifest) -> None:
        manifest.message = "never written"
        holding.set()
        time.sleep(120)

    JobDirectory(path).update(hang)


def test_lock_of_a_killed_process_is_reclaimed(
    job: JobDirectory, caplog: pytest.LogCaptureFixture
) -> None:
    holding = FORK.Event()
    victim = FORK.Process(target=_die_holding_the_lock, args=(str(job.path), holding))
    with reaped(victim):
        victim.start()
        assert holding.wait(10), "the child never got the lock"
        lock = StrictSoftFileLock(str(job.lock_path))
        assert victim.pid is not None
        assert {claim.pid for claim in lock.claims} == {victim.pid}
        os.kill(victim.pid, signal.SIGKILL)
        victim.join(10)
    assert victim.exitcode == -signal.SIGKILL
    assert lock.claims, "the killed process left its claim behind"

    job.lock_timeout = 5.0
    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        result = job.update(increment, expected_version=1, what="after the crash")
    assert time.monotonic() - started < 3.0
    assert result.version == 2 and result.message == "1"
    assert [event["what"] for event in result.events] == ["created", "after the crash"]
    assert not lock.claims
    assert f"process {victim.pid}" in caplog.text


def test_lock_held_by_a_live_process_times_out_with_a_clear_error(job: JobDirectory) -> None:
    holding = FORK.Event()
    holder = FORK.Process(target=_die_holding_the_lock, args=(str(job.path), holding))
    with reaped(holder):
        holder.start()
        assert holding.wait(10)
        job.lock_timeout = 0.3
        with pytest.raises(ManifestError, match="could not lock the job") as info:
            job.update(increment)
        assert f"pid {holder.pid}" in str(info.value)
        assert ".manifest.lock.filelock/claims" in str(info.value)
        holder.kill()
    assert job.read().version == 1
