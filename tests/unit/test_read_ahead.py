"""Reading an input one batch ahead of the pipe: in order, bounded, errors raised where the
batch would have been, the reader stopped and the input closed when the pipe ends early."""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from pydantic import BaseModel

from zoopipe_hpc import (
    CSVInputAdapter,
    JSONInputAdapter,
    JSONOutputAdapter,
    ParquetOutputAdapter,
    Pipe,
)
from zoopipe_hpc.adapters import _read_ahead
from zoopipe_hpc.adapters._read_ahead import ReadAhead, reading
from zoopipe_hpc.errors import InputError

NAME = "zoopipe-read-ahead"


def _readers_alive() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name in (NAME, "zp-test") and t.is_alive()]


def test_items_come_in_order_and_are_produced_on_the_reader_thread() -> None:
    threads: set[str] = set()

    def produce() -> Iterator[int]:
        threads.add(threading.current_thread().name)
        for item in range(200):
            threads.add(threading.current_thread().name)
            yield item

    with ReadAhead(produce, name="zp-test") as ahead:
        assert list(ahead) == list(range(200))
        assert list(ahead) == []
    assert threads == {"zp-test"}
    assert not _readers_alive()


def test_the_reader_is_at_most_depth_items_ahead() -> None:
    produced: list[int] = []

    def produce() -> Iterator[int]:
        for item in range(100):
            produced.append(item)
            yield item

    with ReadAhead(produce, name="zp-test", depth=2) as ahead:
        assert next(ahead) == 0
        time.sleep(0.3)
        # 0 taken, 1 and 2 queued, 3 made and waiting for room.
        assert len(produced) <= 4


def test_an_error_is_raised_after_the_items_read_before_it() -> None:
    def produce() -> Iterator[int]:
        yield 1
        yield 2
        raise InputError("broken at line 3", path="in.csv", line=3)

    ahead = ReadAhead(produce, name="zp-test")
    assert next(ahead) == 1
    assert next(ahead) == 2
    with pytest.raises(InputError, match="broken at line 3") as caught:
        next(ahead)
    assert caught.value.line == 3
    with pytest.raises(StopIteration):
        next(ahead)
    ahead.close()
    assert not _readers_alive()


def test_close_stops_the_reader_and_closes_the_input_on_its_thread() -> None:
    closed_on: list[str] = []

    def produce() -> Iterator[int]:
        try:
            yield from range(10_000)
        finally:
            closed_on.append(threading.current_thread().name)

    ahead = ReadAhead(produce, name="zp-test")
    assert next(ahead) == 0
    ahead.close()
    assert closed_on == ["zp-test"]
    assert not _readers_alive()


class _Row(BaseModel):
    id: int
    name: str


def _csv(path: Path, rows: int) -> Path:
    lines = ["id,name", *(f"{i},n{i}" if i % 97 else f"x{i},n{i}" for i in range(rows))]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_reading_ahead_only_where_the_adapter_allows_it_and_it_can_pay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    csv_in = CSVInputAdapter(_csv(tmp_path / "in.csv", 10))
    json_path = tmp_path / "in.jsonl"
    json_path.write_text('{"id": 1, "name": "a"}\n')
    monkeypatch.setattr(_read_ahead, "_usable_cpus", lambda: 2)
    with reading(csv_in) as batches:
        assert isinstance(batches, ReadAhead)
    with reading(JSONInputAdapter(json_path)) as batches:  # Python parsing: no gain
        assert not isinstance(batches, ReadAhead)
    monkeypatch.setenv("ZOOPIPE_HPC_READ_AHEAD", "0")
    with reading(csv_in) as batches:
        assert not isinstance(batches, ReadAhead)
    monkeypatch.delenv("ZOOPIPE_HPC_READ_AHEAD")
    monkeypatch.setattr(_read_ahead, "_usable_cpus", lambda: 1)
    with reading(csv_in) as batches:
        assert not isinstance(batches, ReadAhead)


def _run(source: Path, target: Path, block_size: int) -> tuple[int, int]:
    pipe = Pipe(
        input_adapter=CSVInputAdapter(source, block_size=block_size),
        output_adapter=ParquetOutputAdapter(target),
        schema_model=_Row,
    )
    report = pipe.run()
    return report.success_count, report.error_count


def test_a_pipe_reading_ahead_writes_what_it_writes_without(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _csv(tmp_path / "in.csv", 20_000)
    monkeypatch.setattr(_read_ahead, "_usable_cpus", lambda: 2)
    monkeypatch.setenv("ZOOPIPE_HPC_READ_AHEAD", "0")
    without = _run(source, tmp_path / "without.parquet", 4096)
    monkeypatch.setenv("ZOOPIPE_HPC_READ_AHEAD", "1")
    seen: list[str] = []
    batches = CSVInputAdapter.batches

    def spy(self: CSVInputAdapter) -> Iterator[object]:
        seen.append(threading.current_thread().name)
        yield from batches(self)

    monkeypatch.setattr(CSVInputAdapter, "batches", spy)
    ahead = _run(source, tmp_path / "ahead.parquet", 4096)
    assert seen == [NAME]
    assert ahead == without and without[1] > 0
    assert pq.read_table(tmp_path / "ahead.parquet").equals(
        pq.read_table(tmp_path / "without.parquet")
    )
    assert not _readers_alive()


def test_a_pipe_that_fails_stops_its_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _csv(tmp_path / "in.csv", 20_000)
    monkeypatch.setattr(_read_ahead, "_usable_cpus", lambda: 2)
    calls = 0
    original = Pipe._process_columnar

    def fail_on_third(self: Pipe, *args: object, **kwargs: object) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("the third batch fails")
        original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Pipe, "_process_columnar", fail_on_third)
    with pytest.raises(RuntimeError, match="the third batch fails"):
        _run(source, tmp_path / "out.parquet", 4096)
    assert not _readers_alive()
    assert not (tmp_path / "out.parquet").exists()


def test_an_input_error_met_while_reading_ahead_fails_the_pipe_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "in.csv"
    good = "".join(f"{i},n{i}\n" for i in range(5000)).encode()
    source.write_bytes(b"id,name\n" + good + b"1,\x81\n" + good)  # 0x81: not cp1252
    monkeypatch.setattr(_read_ahead, "_usable_cpus", lambda: 2)
    raised = []
    for flag in ("0", "1"):
        monkeypatch.setenv("ZOOPIPE_HPC_READ_AHEAD", flag)
        pipe = Pipe(
            input_adapter=CSVInputAdapter(source, encoding="cp1252", block_size=4096),
            output_adapter=ParquetOutputAdapter(tmp_path / f"out{flag}.parquet"),
            schema_model=_Row,
        )
        with pytest.raises(InputError, match="cannot decode") as caught:
            pipe.run()
        raised.append((str(caught.value), caught.value.line))
        assert not (tmp_path / f"out{flag}.parquet").exists()
    assert raised[0] == raised[1] and raised[0][1] == 5002
    assert not _readers_alive()


def test_inputs_read_from_a_temporary_copy_are_not_read_ahead(tmp_path: Path) -> None:
    # The copy is removed once its last batch is read, while the pipe may still look up the
    # lines of that batch's error records in it.
    plain = _csv(tmp_path / "plain.csv", 10)
    packed = tmp_path / "packed.csv.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert CSVInputAdapter(plain).read_ahead
    assert not CSVInputAdapter(packed).read_ahead
    assert not CSVInputAdapter([plain, packed]).read_ahead
    assert not CSVInputAdapter(plain, encoding="latin-1").read_ahead
    assert CSVInputAdapter(tmp_path).read_ahead is False  # holds packed.csv.gz


def test_error_lines_of_a_compressed_input_survive_the_end_of_its_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_read_ahead, "_usable_cpus", lambda: 2)
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.csv.gz").write_bytes(gzip.compress(b"id,name\n1,a\nx,b\n"))
    (folder / "b.csv").write_bytes(b"id,name\n2,c\nzz,d\n")
    errors = tmp_path / "err.jsonl"
    Pipe(
        CSVInputAdapter(folder),
        JSONOutputAdapter(tmp_path / "out.jsonl"),
        _Row,
        error_output_adapter=JSONOutputAdapter(errors),
    ).run()
    lines = [json.loads(t) for t in errors.read_text().splitlines()]
    assert [(Path(r["source"]).name, r["line"]) for r in lines] == [("a.csv.gz", 3), ("b.csv", 3)]
