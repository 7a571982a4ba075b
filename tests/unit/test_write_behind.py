"""Background writes of a sink: in order, bounded, and a failure is never lost."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from zoopipe_hpc.adapters._write_behind import WriteBehind
from zoopipe_hpc.adapters.parquet import _ParquetSink
from zoopipe_hpc.errors import OutputError, StateError


def test_items_are_written_in_order_on_another_thread() -> None:
    written: list[tuple[int, str]] = []
    behind: WriteBehind[int] = WriteBehind(
        lambda item: written.append((item, threading.current_thread().name)), name="zp-test"
    )
    for item in range(50):
        behind.put(item)
    behind.drain()
    assert [item for item, _ in written] == list(range(50))
    assert {name for _, name in written} == {"zp-test"}
    with pytest.raises(StateError, match="drained already"):
        behind.put(50)


def test_at_most_depth_items_wait() -> None:
    release = threading.Event()
    started = threading.Event()

    def slow(item: int) -> None:
        started.set()
        release.wait(10)

    behind: WriteBehind[int] = WriteBehind(slow, name="zp-slow", depth=1)
    behind.put(0)  # taken by the thread, which blocks in it
    assert started.wait(10)
    behind.put(1)  # waits in the queue
    blocked = threading.Thread(target=behind.put, args=(2,))
    blocked.start()
    time.sleep(0.2)
    assert blocked.is_alive()  # the queue is full: the caller waits
    release.set()
    blocked.join(10)
    behind.drain()


def test_a_failed_write_is_raised_by_the_next_put_or_drain_and_nothing_after_it_is_written() -> (
    None
):
    written: list[int] = []

    def write(item: int) -> None:
        if item == 3:
            raise OutputError(f"cannot write item {item}")
        written.append(item)

    behind: WriteBehind[int] = WriteBehind(write, name="zp-fail")
    raised = None
    for item in range(10):
        try:
            behind.put(item)
        except OutputError as exc:
            raised = exc
            break
    with pytest.raises(OutputError, match="cannot write item 3"):
        behind.drain()
    assert raised is None or "item 3" in str(raised)
    assert written == [0, 1, 2]


def test_parquet_sink_writes_every_table_in_order(tmp_path: Path) -> None:
    good = tmp_path / "good.parquet"
    sink = _ParquetSink(good, None, "snappy")
    for start in range(0, 1000, 100):
        sink.write(pa.table({"a": list(range(start, start + 100))}))
    sink.close()
    assert pq.read_table(good).column("a").to_pylist() == list(range(1000))


def test_parquet_sink_raises_the_encoder_failure_and_closes_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fake failure of pyarrow's writer (a full disk, say), on the writer thread."""
    bad = tmp_path / "bad.parquet"
    sink = _ParquetSink(bad, None, "snappy")
    sink.write(pa.table({"a": [1, 2]}))
    assert sink._writer is not None

    def full(table: pa.Table) -> None:
        raise pa.ArrowIOError("[Errno 28] No space left on device")

    monkeypatch.setattr(sink._writer, "write_table", full)
    # Raised as pyarrow raised it, as when the sink wrote in the caller's thread (the staged
    # writer's commit turns an OSError of close into an OutputError naming the target).
    with pytest.raises(OSError, match="No space left"):
        for _ in range(5):
            sink.write(pa.table({"a": [3]}))
        sink.close()
    # The pipe then aborts the part (closes the sink, ignoring what it raises): the file is
    # closed.
    with contextlib.suppress(OSError):
        sink.close()
    assert sink._writer is None
