"""Tests for zoopipe_hpc.progress: record layout, writer protocol, lock-free reader."""

from __future__ import annotations

import dataclasses
import errno
import multiprocessing as mp
import os
import pathlib
import socket
import struct
import tempfile
import time
import zlib
from collections.abc import Iterator
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event as EventType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import zoopipe_hpc.progress as progress
from zoopipe_hpc.progress import (
    RECORD_SIZE,
    ProgressReader,
    ProgressSnapshot,
    ProgressState,
    ProgressWriter,
    _clock,
    _direct_io,
    _layout,
    _reader,
    _writer,
    read_progress,
)

SHM = pathlib.Path("/dev/shm")


# -- helpers ------------------------------------------------------------------


class FakeClock:
    """Replaces both the wall clock and the monotonic clock of the progress records."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(_clock, "now", fake)
    monkeypatch.setattr(_clock, "monotonic", fake)
    return fake


@pytest.fixture
def msync_count(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the writer's msync calls (ProgressWriter._msync wraps mmap.flush)."""
    calls = [0]
    original = ProgressWriter._msync

    def counting(self: ProgressWriter) -> None:
        calls[0] += 1
        original(self)

    monkeypatch.setattr(ProgressWriter, "_msync", counting)
    return calls


@pytest.fixture
def shm_dir() -> Iterator[pathlib.Path]:
    """A private directory on tmpfs (/dev/shm) if there is one."""
    if not SHM.is_dir() or not os.access(SHM, os.W_OK):
        pytest.skip("/dev/shm not available")
    with tempfile.TemporaryDirectory(dir=SHM, prefix="zp-progress-") as name:
        yield pathlib.Path(name)


def flip_byte(path: pathlib.Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x5A
    path.write_bytes(bytes(data))


def raw(**overrides: object) -> _layout.RawRecord:
    fields: dict[str, object] = dict(
        state=1,
        attempt_id="job-7_3.a0",
        pid=4242,
        host="node017",
        sequence=10,
        total_processed=100,
        success_count=90,
        error_count=10,
        ram_bytes=123456789,
        start_time=1_700_000_000.25,
        heartbeat=1_700_000_100.5,
        end_time=0.0,
        message="",
    )
    fields.update(overrides)
    return _layout.RawRecord(**fields)  # type: ignore[arg-type]


def encoded(rec: _layout.RawRecord) -> bytearray:
    buf = bytearray(RECORD_SIZE)
    _layout.encode_into(buf, rec)
    return buf


def direct_io_supported(directory: pathlib.Path) -> bool:
    if not _direct_io.O_DIRECT:
        return False
    probe = directory / ".odirect-probe"
    probe.write_bytes(bytes(RECORD_SIZE))
    try:
        fd = os.open(probe, os.O_RDONLY | _direct_io.O_DIRECT)
    except OSError:
        return False
    finally:
        probe.unlink()
    os.close(fd)
    return True


# -- public surface -------------------------------------------------------------


def test_public_api() -> None:
    assert sorted(progress.__all__) == sorted(
        [
            "ProgressState",
            "ProgressSnapshot",
            "ProgressWriter",
            "ProgressReader",
            "read_progress",
            "RECORD_SIZE",
        ]
    )
    assert RECORD_SIZE == 4096
    assert [s.name for s in ProgressState] == [
        "PENDING",
        "RUNNING",
        "FINISHED",
        "FAILED",
        "CANCELLED",
    ]
    assert [int(s) for s in ProgressState] == [0, 1, 2, 3, 4]
    assert {s for s in ProgressState if s.is_final} == {
        ProgressState.FINISHED,
        ProgressState.FAILED,
        ProgressState.CANCELLED,
    }


# -- writer / reader round trip -----------------------------------------------------


def test_round_trip_every_field(tmp_path: pathlib.Path, clock: FakeClock) -> None:
    path = tmp_path / "w0.progress"
    w = ProgressWriter(path, "attempt-0001")
    assert w.path == path
    assert path.stat().st_size == RECORD_SIZE

    snap = read_progress(path)
    assert snap is not None
    assert snap.state is ProgressState.PENDING
    assert snap.attempt_id == "attempt-0001"
    assert snap.pid == os.getpid()
    assert snap.host == socket.gethostname()[:64]
    assert snap.heartbeat == clock.t
    assert snap.start_time == 0.0 and snap.end_time == 0.0
    assert snap.ram_bytes > 0
    pending_seq = snap.sequence

    clock.advance(1.0)
    w.start()
    started = clock.t
    clock.advance(2.5)
    w.update(1000, 990, 10)
    snap = read_progress(path, expected_attempt_id="attempt-0001")
    assert snap is not None
    assert snap.state is ProgressState.RUNNING
    assert (snap.total_processed, snap.success_count, snap.error_count) == (1000, 990, 10)
    assert snap.start_time == started
    assert snap.heartbeat == clock.t
    assert snap.end_time == 0.0
    assert snap.sequence > pending_seq and snap.sequence % 2 == 0

    clock.advance(3.0)
    w.fail("ValueError: bad row 17 — ünïcödé")
    snap = read_progress(path)
    assert snap is not None
    assert snap == ProgressSnapshot(
        state=ProgressState.FAILED,
        attempt_id="attempt-0001",
        pid=os.getpid(),
        host=socket.gethostname()[:64],
        sequence=snap.sequence,
        total_processed=1000,
        success_count=990,
        error_count=10,
        ram_bytes=snap.ram_bytes,
        start_time=started,
        heartbeat=clock.t,
        end_time=clock.t,
        message="ValueError: bad row 17 — ünïcödé",
    )
    assert snap.ram_bytes > 0
    w.close()
    w.close()  # idempotent
    assert read_progress(path) == snap  # the record outlives the writer


def test_layout_offsets_match_documentation(tmp_path: pathlib.Path, clock: FakeClock) -> None:
    path = tmp_path / "layout.progress"
    with ProgressWriter(path, "abc") as w:
        w.start()
        w.update(7, 5, 2)
        w.finish("ok")
    data = path.read_bytes()
    assert len(data) == RECORD_SIZE
    assert data[0:8] == b"ZPPROG01"
    assert struct.unpack_from("<II", data, 8) == (1, RECORD_SIZE)
    (seq_begin,) = struct.unpack_from("<Q", data, 16)
    (seq_end,) = struct.unpack_from("<Q", data, 4088)
    assert seq_begin == seq_end and seq_begin % 2 == 0
    assert struct.unpack_from("<II", data, 24) == (int(ProgressState.FINISHED), os.getpid())
    assert struct.unpack_from("<QQQ", data, 32) == (7, 5, 2)
    (ram,) = struct.unpack_from("<Q", data, 56)
    assert ram > 0
    assert struct.unpack_from("<ddd", data, 64) == (clock.t, clock.t, clock.t)
    host = socket.gethostname().encode()[:64]
    assert struct.unpack_from("<HHHH", data, 88) == (3, len(host), 2, 0)
    assert data[96:99] == b"abc" and not any(data[99:128])
    assert data[128 : 128 + len(host)] == host
    assert data[192:194] == b"ok" and not any(data[194:2240])
    assert not any(data[2240:4080])
    assert struct.unpack_from("<II", data, 4080) == (zlib.crc32(data[:4080]), 0)


def test_message_truncated_on_character_boundary(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "long.progress"
    message = "é" * 5000  # 2 bytes each
    with ProgressWriter(path, "a") as w:
        w.fail(message)
    snap = read_progress(path)
    assert snap is not None
    assert snap.message == "é" * 1024
    assert len(snap.message.encode()) == 2048

    odd = "x" + "€" * 1000  # 1 + 3000 bytes: cut must not split the euro sign
    assert _layout.truncate_utf8(odd, 2048).decode() == "x" + "€" * 682


def test_hostname_truncated(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_writer.socket, "gethostname", lambda: "n" * 100 + ".example")
    with ProgressWriter(tmp_path / "h.progress", "a") as w:
        w.finish()
    snap = read_progress(tmp_path / "h.progress")
    assert snap is not None and snap.host == "n" * 64


_u64 = st.integers(min_value=0, max_value=2**64 - 1)
_time = st.floats(allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=60, deadline=None)
@given(
    state=st.sampled_from(list(ProgressState)),
    attempt_id=st.text(alphabet=st.characters(max_codepoint=127), min_size=0, max_size=32),
    pid=st.integers(min_value=0, max_value=2**32 - 1),
    host=st.text(max_size=80),
    sequence=st.integers(min_value=1, max_value=2**63 - 1).map(lambda n: 2 * n),
    counters=st.tuples(_u64, _u64, _u64, _u64),
    times=st.tuples(_time, _time, _time),
    message=st.text(max_size=2100),
)
def test_codec_round_trip_property(
    state: ProgressState,
    attempt_id: str,
    pid: int,
    host: str,
    sequence: int,
    counters: tuple[int, int, int, int],
    times: tuple[float, float, float],
    message: str,
) -> None:
    rec = raw(
        state=int(state),
        attempt_id=attempt_id,
        pid=pid,
        host=host,
        sequence=sequence,
        total_processed=counters[0],
        success_count=counters[1],
        error_count=counters[2],
        ram_bytes=counters[3],
        start_time=times[0],
        heartbeat=times[1],
        end_time=times[2],
        message=message,
    )
    buf = encoded(rec)
    decoded = _layout.decode(bytes(buf))
    expected_host = _layout.truncate_utf8(host, 64).decode()
    expected_message = _layout.truncate_utf8(message, 2048).decode()
    assert expected_host == host[: len(expected_host)]
    assert expected_message == message[: len(expected_message)]
    assert decoded == dataclasses.replace(rec, host=expected_host, message=expected_message)
    # any single flipped bit in the checksummed region or the sequences is rejected
    flipped = bytearray(buf)
    position = (sequence // 2 + counters[0]) % RECORD_SIZE
    if 4084 <= position < 4088:  # reserved trailer word, not covered: move off it
        position = 4080
    flipped[position] ^= 1 << (pid % 8)
    with pytest.raises(_layout.RecordError):
        _layout.decode(bytes(flipped))


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    attempt_id=st.text(alphabet=st.characters(max_codepoint=127), min_size=1, max_size=32),
    updates=st.lists(st.tuples(_u64, _u64, _u64), min_size=1, max_size=5),
    final=st.sampled_from([ProgressState.FINISHED, ProgressState.FAILED, ProgressState.CANCELLED]),
    message=st.text(max_size=300),
)
def test_writer_round_trip_property(
    tmp_path: pathlib.Path,
    attempt_id: str,
    updates: list[tuple[int, int, int]],
    final: ProgressState,
    message: str,
) -> None:
    path = tmp_path / "prop.progress"
    with ProgressWriter(path, attempt_id, flush_interval=0.0) as w:
        w.start()
        previous = read_progress(path, expected_attempt_id=attempt_id)
        assert previous is not None
        for total, success, errors in updates:
            w.update(total, success, errors)
            snap = read_progress(path, expected_attempt_id=attempt_id)
            assert snap is not None
            assert (snap.total_processed, snap.success_count, snap.error_count) == (
                total,
                success,
                errors,
            )
            assert snap.state is ProgressState.RUNNING
            assert snap.sequence > previous.sequence
            previous = snap
        {
            ProgressState.FINISHED: w.finish,
            ProgressState.FAILED: w.fail,
            ProgressState.CANCELLED: w.cancel,
        }[final](message)
    snap = read_progress(path, expected_attempt_id=attempt_id)
    assert snap is not None
    assert snap.state is final and snap.message == message
    assert snap.attempt_id == attempt_id
    assert snap.total_processed == updates[-1][0]


# -- validation and rejection ---------------------------------------------------------


def test_missing_file(tmp_path: pathlib.Path) -> None:
    assert read_progress(tmp_path / "nope.progress") is None
    reader = ProgressReader(tmp_path / "nope.progress")
    assert reader.poll() is None and reader.last is None


@pytest.mark.parametrize("size", [0, 1, 100, RECORD_SIZE - 1])
def test_truncated_file(tmp_path: pathlib.Path, size: int) -> None:
    path = tmp_path / "t.progress"
    with ProgressWriter(path, "a") as w:
        w.finish()
    data = path.read_bytes()
    assert read_progress(path) is not None
    path.write_bytes(data[:size])
    assert read_progress(path) is None


def test_never_written_file(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "z.progress"
    path.write_bytes(bytes(RECORD_SIZE))
    assert read_progress(path) is None


@pytest.mark.parametrize(
    "offset",
    [
        0,  # magic
        9,  # version
        13,  # record size
        16,  # seq_begin
        24,  # state
        30,  # pid
        33,  # total_processed
        47,  # success_count
        55,  # error_count
        60,  # ram_bytes
        70,  # start_time
        75,  # heartbeat
        85,  # end_time
        89,  # attempt_id length
        100,  # attempt_id
        130,  # host
        200,  # message
        1500,  # message slot, beyond the message
        3000,  # reserved padding
        4081,  # crc
        4090,  # seq_end
    ],
)
def test_flipped_byte_rejected_and_reader_keeps_last_good(
    tmp_path: pathlib.Path, offset: int
) -> None:
    path = tmp_path / "c.progress"
    with ProgressWriter(path, "attempt-a") as w:
        w.start()
        w.update(50, 40, 10)
        w.fail("boom")
    reader = ProgressReader(path, expected_attempt_id="attempt-a")
    good = reader.poll()
    assert good is not None and good.message == "boom"

    flip_byte(path, offset)
    assert read_progress(path) is None
    assert read_progress(path, retries=0) is None
    assert reader.poll() is good
    assert reader.last is good


def test_uncommitted_sequence_states_rejected() -> None:
    good = encoded(raw(sequence=10))
    assert _layout.decode(bytes(good)).sequence == 10

    def with_seqs(begin: int, end: int) -> bytes:
        buf = bytearray(good)
        struct.pack_into("<Q", buf, 16, begin)
        struct.pack_into("<Q", buf, 4088, end)
        # re-seal the checksum so that only the sequence rule can reject it
        struct.pack_into("<I", buf, 4080, zlib.crc32(bytes(buf[:4080])))
        return bytes(buf)

    assert _layout.decode(with_seqs(10, 10)).sequence == 10
    for begin, end in [(11, 11), (11, 10), (10, 11), (12, 10), (10, 12), (0, 0), (9, 9)]:
        with pytest.raises(_layout.RecordError) as info:
            _layout.decode(with_seqs(begin, end))
        assert info.value.retry

    # both sequences updated but the payload is from the previous commit
    stale_payload = bytearray(encoded(raw(sequence=8, total_processed=99)))
    struct.pack_into("<Q", stale_payload, 16, 10)
    struct.pack_into("<Q", stale_payload, 4088, 10)
    with pytest.raises(_layout.RecordError, match="checksum"):
        _layout.decode(bytes(stale_payload))


def test_mid_update_image_rejected(tmp_path: pathlib.Path) -> None:
    """Freeze the writer between protocol steps: no intermediate image is accepted."""
    path = tmp_path / "mid.progress"
    w = ProgressWriter(path, "a", flush_interval=0.0)
    w.start()
    w.update(1, 1, 0)
    committed = read_progress(path)
    assert committed is not None

    images: list[bytes] = []

    class Spy:
        """Wraps the mmap to snapshot the file image after every write step."""

        def __init__(self, mm: object) -> None:
            self.mm = mm

        def __setitem__(self, key: slice, value: bytes) -> None:
            self.mm[key] = value  # type: ignore[index]
            images.append(path.read_bytes())

        def __len__(self) -> int:
            return RECORD_SIZE

        def __getattr__(self, name: str) -> object:
            return getattr(self.mm, name)

    real_pack = _layout.SEQ.pack_into

    class SpySeq:
        size = _layout.SEQ.size

        @staticmethod
        def pack_into(buf: object, offset: int, value: int) -> None:
            target = buf.mm if isinstance(buf, Spy) else buf
            real_pack(target, offset, value)  # type: ignore[arg-type]
            if isinstance(buf, Spy):
                images.append(path.read_bytes())

        @staticmethod
        def unpack_from(buf: bytes, offset: int = 0) -> tuple[int, ...]:
            return _layout.SEQ.unpack_from(buf, offset)

    real_mm = w._mm
    w._mm = Spy(real_mm)  # type: ignore[assignment]
    try:
        with pytest.MonkeyPatch.context() as mp_:
            mp_.setattr(_layout, "SEQ", SpySeq)
            w.update(2, 1, 1)
    finally:
        w._mm = real_mm
    # begin odd, end odd, header, body, end even, begin even
    assert len(images) == 6
    for image in images[:-1]:
        with pytest.raises(_layout.RecordError):
            _layout.decode(image)
    final = _layout.decode(images[-1])
    assert final.total_processed == 2 and final.sequence == committed.sequence + 2
    w.close()


def test_unexpected_attempt_is_ignored(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "shard-3.progress"
    with ProgressWriter(path, "attempt-1") as w:
        w.update(10, 10, 0)
        reader = ProgressReader(path, expected_attempt_id="attempt-1")
        first = reader.poll()
        assert first is not None and first.attempt_id == "attempt-1"
        assert read_progress(path, expected_attempt_id="attempt-2") is None
        assert ProgressReader(path, expected_attempt_id="attempt-2").poll() is None

    # a zombie of another attempt takes the file over: the reader must not count it
    with ProgressWriter(path, "attempt-2") as other:
        other.update(999, 999, 0)
        assert read_progress(path, expected_attempt_id="attempt-1") is None
        assert reader.poll() is first
        unfiltered = read_progress(path)
        assert unfiltered is not None and unfiltered.attempt_id == "attempt-2"


def test_reader_never_goes_backwards(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "b.progress"
    path.write_bytes(bytes(encoded(raw(sequence=40, total_processed=400))))
    reader = ProgressReader(path)
    newest = reader.poll()
    assert newest is not None and newest.sequence == 40
    path.write_bytes(bytes(encoded(raw(sequence=20, total_processed=200))))
    older = read_progress(path)
    assert older is not None and older.total_processed == 200
    assert reader.poll() is newest
    path.write_bytes(bytes(encoded(raw(sequence=42, total_processed=401))))
    latest = reader.poll()
    assert latest is not None and latest.sequence == 42 and reader.last is latest


def test_sequence_continues_across_writers(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "r.progress"
    with ProgressWriter(path, "a") as w:
        for i in range(10):
            w.update(i, i, 0)
    before = read_progress(path)
    assert before is not None
    with ProgressWriter(path, "a") as again:
        restarted = read_progress(path)
        assert restarted is not None
        assert restarted.state is ProgressState.PENDING
        assert restarted.sequence > before.sequence
        again.finish()


def test_garbage_sequence_restarts(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "g.progress"
    junk = bytearray(b"ZPPROG01" + bytes(RECORD_SIZE - 8))
    struct.pack_into("<Q", junk, 16, 2**64 - 1)
    path.write_bytes(bytes(junk))
    with ProgressWriter(path, "a") as w:
        w.finish()
    snap = read_progress(path)
    assert snap is not None and snap.sequence == 4


def test_existing_file_resized(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "big.progress"
    path.write_bytes(b"\xff" * 10_000)
    with ProgressWriter(path, "a") as w:
        assert path.stat().st_size == RECORD_SIZE
        w.finish()
    snap = read_progress(path)
    assert snap is not None and snap.state is ProgressState.FINISHED


def test_retries_on_torn_reads(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    good = bytes(encoded(raw(sequence=6)))
    torn = bytearray(good)
    struct.pack_into("<Q", torn, 16, 7)  # writer caught mid-update
    reads: list[int] = []
    sleeps: list[float] = []

    def fake_read(path: str, size: int) -> tuple[bytes, bool]:
        reads.append(1)
        return (bytes(torn) if len(reads) <= 2 else good), True

    monkeypatch.setattr(_reader, "read_block", fake_read)
    monkeypatch.setattr(_clock, "sleep", sleeps.append)
    snap = read_progress(tmp_path / "x", retries=3)
    assert snap is not None and snap.sequence == 6
    assert len(reads) == 3 and len(sleeps) == 2

    reads.clear()
    sleeps.clear()
    assert read_progress(tmp_path / "x", retries=1) is None
    assert len(reads) == 2 and len(sleeps) == 1
    with pytest.raises(ValueError):
        read_progress(tmp_path / "x", retries=-1)


# -- writer behaviour -------------------------------------------------------------------


@pytest.mark.parametrize("final", ["finish", "fail", "cancel"])
def test_final_states_flush_immediately(
    tmp_path: pathlib.Path, msync_count: list[int], final: str
) -> None:
    path = tmp_path / "f.progress"
    w = ProgressWriter(path, "a", flush_interval=1e9)
    assert msync_count[0] == 1  # the initial PENDING record
    w.start()
    assert msync_count[0] == 2  # start is forced
    for i in range(200):
        w.update(i + 1, i + 1, 0)
        w.heartbeat()
    assert msync_count[0] == 2  # rate limited: nothing yet
    getattr(w, final)("the end")
    assert msync_count[0] == 3
    snap = read_progress(path)
    assert snap is not None and snap.state.is_final and snap.message == "the end"
    assert snap.state.name.lower().startswith(final[:4])
    w.close()
    assert msync_count[0] == 3  # nothing dirty left


def test_flush_rate_bounded_fake_clock(
    tmp_path: pathlib.Path, msync_count: list[int], clock: FakeClock
) -> None:
    w = ProgressWriter(tmp_path / "r.progress", "a", flush_interval=0.5)
    w.start()
    base = msync_count[0]
    for i in range(1000):  # 10 simulated seconds, an update every 10 ms
        clock.advance(0.01)
        w.update(i, i, 0)
    flushes = msync_count[0] - base
    assert 19 <= flushes <= 21
    w.update(1000, 1000, 0, force=True)
    assert msync_count[0] - base == flushes + 1
    w.update(1001, 1001, 0)  # right after a flush: dirty, not flushed
    assert msync_count[0] - base == flushes + 1
    w.close()  # close flushes what is dirty
    assert msync_count[0] - base == flushes + 2


def test_flush_rate_bounded_real_clock(tmp_path: pathlib.Path, msync_count: list[int]) -> None:
    w = ProgressWriter(tmp_path / "r.progress", "a", flush_interval=0.1)
    w.start()
    base = msync_count[0]
    t0 = time.monotonic()
    for i in range(20_000):
        w.update(i, i, 0)
    elapsed = time.monotonic() - t0
    assert msync_count[0] - base <= elapsed / 0.1 + 1
    w.close()


def test_ram_sampling_rate_bounded(
    tmp_path: pathlib.Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    samples = [0]

    class FakeProcess:
        def memory_info(self) -> object:
            samples[0] += 1

            class Info:
                rss = 1000 + samples[0]

            return Info()

    monkeypatch.setattr(_writer.psutil, "Process", FakeProcess)
    w = ProgressWriter(tmp_path / "m.progress", "a", ram_interval=1.0)
    w.start()
    base = samples[0]
    for i in range(100):  # 5 simulated seconds
        clock.advance(0.05)
        w.update(i, i, 0)
    assert 4 <= samples[0] - base <= 6
    snap = read_progress(tmp_path / "m.progress")
    assert snap is not None and snap.ram_bytes == 1000 + samples[0]
    w.close()


def test_update_from_pending_implies_start(tmp_path: pathlib.Path, clock: FakeClock) -> None:
    path = tmp_path / "p.progress"
    with ProgressWriter(path, "a") as w:
        clock.advance(5)
        w.update(3, 3, 0)
        snap = read_progress(path)
        assert snap is not None
        assert snap.state is ProgressState.RUNNING and snap.start_time == clock.t


def test_heartbeat_and_staleness(tmp_path: pathlib.Path, clock: FakeClock) -> None:
    path = tmp_path / "s.progress"
    w = ProgressWriter(path, "a")
    w.start()
    w.update(1, 1, 0)
    snap = read_progress(path)
    assert snap is not None
    assert snap.age(now=clock.t + 4) == pytest.approx(4)
    assert snap.age() == 0.0  # module clock is the fake one
    assert not snap.is_stale(10, now=clock.t + 9)
    assert snap.is_stale(10, now=clock.t + 11)

    clock.advance(30)
    assert read_progress(path) == snap  # nothing written: the record ages
    stale = read_progress(path)
    assert stale is not None and stale.is_stale(10)
    w.heartbeat()  # a long batch keeps the record alive without new counters
    fresh = read_progress(path)
    assert fresh is not None
    assert not fresh.is_stale(10)
    assert fresh.total_processed == 1 and fresh.sequence > snap.sequence

    w.finish()
    clock.advance(10_000)
    done = read_progress(path)
    assert done is not None and done.age() >= 10_000
    assert not done.is_stale(10)  # final records are never stale
    w.close()


def test_context_manager_records_failure(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "e.progress"
    with pytest.raises(KeyError):
        with ProgressWriter(path, "a") as w:
            w.update(5, 4, 1)
            raise KeyError("shard-9")
    snap = read_progress(path)
    assert snap is not None
    assert snap.state is ProgressState.FAILED
    assert snap.message == "KeyError: 'shard-9'"
    assert snap.end_time > 0 and snap.total_processed == 5
    with pytest.raises(ValueError):
        w.update(6, 5, 1)

    # already final: the exception does not overwrite the outcome
    with pytest.raises(RuntimeError):
        with ProgressWriter(path, "b") as w2:
            w2.finish("done")
            raise RuntimeError("after finish")
    snap = read_progress(path)
    assert snap is not None and snap.state is ProgressState.FINISHED and snap.message == "done"

    # clean exit does not invent a final state
    with ProgressWriter(path, "c") as w3:
        w3.update(1, 1, 0)
    snap = read_progress(path)
    assert snap is not None and snap.state is ProgressState.RUNNING


def test_writer_rejects_invalid_use(tmp_path: pathlib.Path) -> None:
    for bad in ["", "é", "x" * 33]:
        with pytest.raises(ValueError):
            ProgressWriter(tmp_path / "v.progress", bad)
    with pytest.raises(ValueError):
        ProgressWriter(tmp_path / "v.progress", "a", flush_interval=-1)
    with pytest.raises(FileNotFoundError):
        ProgressWriter(tmp_path / "no-such-dir" / "v.progress", "a")
    w = ProgressWriter(tmp_path / "v.progress", "a")
    with pytest.raises(ValueError):
        w.update(-1, 0, 0)
    with pytest.raises(ValueError):
        w.update(2**64, 0, 0)
    with pytest.raises(TypeError):
        w.update(1.5, 0, 0)  # type: ignore[arg-type]
    w.start()
    with pytest.raises(RuntimeError):
        w.start()
    w.cancel()
    for call in (lambda: w.update(1, 1, 0), w.heartbeat, w.finish, lambda: w.fail("x")):
        with pytest.raises(RuntimeError):
            call()
    w.close()
    with pytest.raises(ValueError):
        w.heartbeat()


def _use_inherited_writer(writer: ProgressWriter, results: Queue[str]) -> None:
    try:
        writer.update(1, 1, 0)
    except RuntimeError:
        results.put("refused")
    else:
        results.put("accepted")
    writer.close()  # must not touch the parent's record
    results.put("closed")


def test_writer_refuses_use_after_fork(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "fork.progress"
    w = ProgressWriter(path, "parent")
    w.update(10, 10, 0)
    ctx = mp.get_context("fork")
    results: Queue[str] = ctx.Queue()
    child = ctx.Process(target=_use_inherited_writer, args=(w, results))
    child.start()
    child.join(10)
    assert child.exitcode == 0
    assert results.get(timeout=5) == "refused"
    assert results.get(timeout=5) == "closed"
    w.update(11, 11, 0)  # the parent's writer still works
    snap = read_progress(path)
    assert snap is not None and snap.total_processed == 11 and snap.pid == os.getpid()
    w.close()


# -- O_DIRECT ----------------------------------------------------------------------


@pytest.mark.parametrize("where", ["tmp_path", "shm"])
def test_direct_io_path(where: str, tmp_path: pathlib.Path, request: pytest.FixtureRequest) -> None:
    directory = tmp_path if where == "tmp_path" else request.getfixturevalue("shm_dir")
    if not direct_io_supported(directory):
        pytest.skip(f"O_DIRECT not supported on {directory}")
    path = directory / "d.progress"
    with ProgressWriter(path, "a") as w:
        w.update(3, 2, 1)  # dirty, not yet msync'ed
        data, direct = _direct_io.read_block(str(path), RECORD_SIZE)
        assert direct is True
        assert _layout.decode(data).total_processed == 3
        snap = read_progress(path)
        assert snap is not None and snap.total_processed == 3


def _refuse_direct_open(monkeypatch: pytest.MonkeyPatch, opened: list[int]) -> None:
    real_open = os.open

    def fake_open(path: str, flags: int, *args: int, **kwargs: object) -> int:
        opened.append(flags)
        if _direct_io.O_DIRECT and flags & _direct_io.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument (simulated tmpfs)")
        return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(_direct_io.os, "open", fake_open)


def test_fallback_when_direct_open_refused(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "fb.progress"
    with ProgressWriter(path, "a") as w:
        w.update(8, 8, 0)
    opened: list[int] = []
    _refuse_direct_open(monkeypatch, opened)
    data, direct = _direct_io.read_block(str(path), RECORD_SIZE)
    assert direct is False and len(data) == RECORD_SIZE
    snap = read_progress(path)
    assert snap is not None and snap.total_processed == 8
    if _direct_io.O_DIRECT:
        assert any(f & _direct_io.O_DIRECT for f in opened)
        assert any(not f & _direct_io.O_DIRECT for f in opened)


def test_fallback_when_direct_read_refused(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not _direct_io.O_DIRECT or not direct_io_supported(tmp_path):
        pytest.skip("O_DIRECT open not supported here")
    path = tmp_path / "fb2.progress"
    with ProgressWriter(path, "a") as w:
        w.update(9, 9, 0)

    def refuse(fd: int, buffers: list[object], offset: int) -> int:
        raise OSError(errno.EINVAL, "Invalid argument (simulated)")

    monkeypatch.setattr(_direct_io.os, "preadv", refuse)
    data, direct = _direct_io.read_block(str(path), RECORD_SIZE)
    assert direct is False and _layout.decode(data).total_processed == 9
    snap = read_progress(path)
    assert snap is not None and snap.total_processed == 9


def test_other_read_errors_return_none(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "eio.progress"
    with ProgressWriter(path, "a") as w:
        w.finish()

    def broken(path: str, size: int) -> tuple[bytes, bool]:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(_reader, "read_block", broken)
    monkeypatch.setattr(_clock, "sleep", lambda s: None)
    assert read_progress(path) is None


# -- concurrency: a reader never sees a torn record -----------------------------------


def _hammer(path: str, attempt_id: str, stop: EventType, max_seconds: float) -> None:
    """Child process: update as fast as possible; success + error == total always."""
    writer = ProgressWriter(path, attempt_id, flush_interval=0.05)
    writer.start()
    total = 0
    deadline = time.monotonic() + max_seconds
    while not stop.is_set() and time.monotonic() < deadline:
        for _ in range(64):
            total += 1
            errors = total // 7
            writer.update(total, total - errors, errors)
    writer.finish(f"done {total}")
    writer.close()


def _check_consistent(snap: ProgressSnapshot, attempt_id: str, pid: int) -> None:
    assert snap.attempt_id == attempt_id
    assert snap.pid == pid
    assert snap.sequence % 2 == 0
    assert snap.error_count == snap.total_processed // 7
    assert snap.success_count + snap.error_count == snap.total_processed
    # The writer commits exactly once per call, each commit adds 2 to the
    # sequence: PENDING (2), start (4), update n (4 + 2n), finish (+2).  A
    # payload from one commit paired with the sequence of another fails this.
    if snap.state is ProgressState.PENDING:  # the writer's constructor, before start()
        assert snap.sequence == 2 and snap.total_processed == 0
    elif snap.state is ProgressState.RUNNING:
        assert snap.total_processed == (snap.sequence - 4) // 2
        assert snap.end_time == 0.0 and snap.message == ""
    else:
        assert snap.state is ProgressState.FINISHED
        assert snap.total_processed == (snap.sequence - 6) // 2
        assert snap.message == f"done {snap.total_processed}"
        assert snap.end_time >= snap.start_time > 0


def _race(directory: pathlib.Path, polls: int) -> None:
    path = directory / "race.progress"
    attempt_id = f"race-{directory.name[-8:]}"
    ctx = mp.get_context("fork")
    stop = ctx.Event()
    child = ctx.Process(target=_hammer, args=(str(path), attempt_id, stop, 20.0))
    child.start()
    try:
        reader = ProgressReader(path, expected_attempt_id=attempt_id)
        deadline = time.monotonic() + 10
        while reader.poll() is None:
            assert time.monotonic() < deadline, "writer never produced a record"
            time.sleep(0.001)
        previous: ProgressSnapshot | None = None
        previous_kept: ProgressSnapshot | None = None
        seen_totals: set[int] = set()
        got = 0
        # At least ``polls`` reads, and on until the counters were seen moving 10 times,
        # within the 20 s the writer runs: on a busy machine the writer, a process of its own,
        # can get so little CPU that 600 quick reads see only a few of its updates (4 were
        # seen once, beside a second pytest process and the Slurm tests).
        live_until = time.monotonic() + 15
        i = -1
        while (i := i + 1) < polls or (len(seen_totals) < 10 and time.monotonic() < live_until):
            snap = read_progress(path, expected_attempt_id=attempt_id)
            if snap is not None:
                got += 1
                _check_consistent(snap, attempt_id, child.pid or -1)
                seen_totals.add(snap.total_processed)
                if previous is not None:  # fresh opens never go backwards
                    assert snap.sequence >= previous.sequence
                    assert snap.total_processed >= previous.total_processed
                    assert snap.heartbeat >= previous.heartbeat
                previous = snap
            if i % 4 == 0:
                kept = reader.poll()
                assert kept is not None
                _check_consistent(kept, attempt_id, child.pid or -1)
                if previous_kept is not None:
                    assert kept.sequence >= previous_kept.sequence
                    assert kept.total_processed >= previous_kept.total_processed
                previous_kept = kept
    finally:
        stop.set()
        child.join(30)
    assert child.exitcode == 0
    # the race was live: most reads succeeded and the counters moved under the reader
    assert got >= i // 2
    assert len(seen_totals) >= 10
    final = reader.poll()
    assert final is not None and final.state is ProgressState.FINISHED
    _check_consistent(final, attempt_id, child.pid or -1)
    assert previous is not None and final.total_processed >= previous.total_processed


def test_reader_never_returns_torn_record_tmpfs(shm_dir: pathlib.Path) -> None:
    _race(shm_dir, polls=3000)


def test_reader_never_returns_torn_record_disk(tmp_path: pathlib.Path) -> None:
    # On a block filesystem each O_DIRECT read forces writeback of the dirty
    # page, so polls are ~100x slower than on tmpfs: fewer of them.
    _race(tmp_path, polls=600)
