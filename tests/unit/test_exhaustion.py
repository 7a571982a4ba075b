"""Exhaustion (issue 11): shard counts the input cannot fill, run timeouts with many shards,
job files that expand or weigh too much."""

from __future__ import annotations

import json
import logging
import multiprocessing
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _support import read_jsonl

from zoopipe_hpc import (
    CSVInputAdapter,
    CSVOutputAdapter,
    JSONInputAdapter,
    JSONOutputAdapter,
    ParquetInputAdapter,
    Pipe,
    PipeManager,
)
from zoopipe_hpc.adapters import BaseInputAdapter
from zoopipe_hpc.adapters.base import InputBatch
from zoopipe_hpc.coordinators.base import BaseCoordinator
from zoopipe_hpc.engines import MultiProcessEngine
from zoopipe_hpc.errors import ConfigurationError, JobConfigError
from zoopipe_hpc.jobs import _yaml
from zoopipe_hpc.jobs.config import load_job_file
from zoopipe_hpc.manager import SHARD_LIMIT


def small_csv(path: Path, rows: int = 10) -> Path:
    path.write_text("id,name\n" + "".join(f"{i},n{i}\n" for i in range(rows)))
    return path


def csv_pipe(tmp_path: Path, rows: int = 10) -> Pipe:
    source = small_csv(tmp_path / "in.csv", rows)
    return Pipe(CSVInputAdapter(source), JSONOutputAdapter(tmp_path / "out.jsonl"))


# -- shard counts ---------------------------------------------------------------------------------


def test_an_absurd_worker_count_is_refused_at_once_naming_the_number_and_the_input(
    tmp_path: Path,
) -> None:
    pipe = csv_pipe(tmp_path)
    started = time.monotonic()
    with pytest.raises(ConfigurationError) as caught:
        PipeManager.parallelize_pipe(pipe, workers=10**6)
    assert time.monotonic() - started < 1.0
    message = str(caught.value)
    assert "workers=1,000,000" in message
    assert str(tmp_path / "in.csv") in message
    assert f"at most {SHARD_LIMIT:,} shards" in message


def test_a_small_file_is_cut_into_no_more_shards_than_it_has_bytes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pipe = csv_pipe(tmp_path, rows=30)
    size = (tmp_path / "in.csv").stat().st_size
    assert 64 < size < 1000
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="zoopipe_hpc.manager"):
        manager = PipeManager.parallelize_pipe(pipe, workers=SHARD_LIMIT)
    assert time.monotonic() - started < 2.0
    assert manager.pipe_count == size
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert warning == (
        f"CSVInputAdapter({str(tmp_path / 'in.csv')!r}) can fill at most {size} shards: making "
        f"{size} shards, not the 100,000 asked for (the others would have nothing to read)"
    )


def test_up_to_64_shards_are_made_as_asked_and_never_fewer(tmp_path: Path) -> None:
    pipe = csv_pipe(tmp_path, rows=1)  # 13 bytes
    assert len(PipeManager.shard_layout(pipe, 64).pipes) == 64
    assert len(PipeManager.shard_layout(pipe, 65).pipes) == 64
    assert len(PipeManager.shard_layout(pipe, 5000).pipes) == 64


def test_a_capped_json_lines_run_reads_every_record_once(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": i}) + "\n" for i in range(8)))
    assert source.stat().st_size == 80
    target = tmp_path / "out.jsonl"
    pipe = Pipe(JSONInputAdapter(source), JSONOutputAdapter(target))
    manager = PipeManager.parallelize_pipe(pipe, workers=500)
    assert manager.pipe_count == 80
    assert manager.run(timeout=120) is True
    assert read_jsonl(target) == [{"id": i} for i in range(8)]


def test_a_json_array_is_capped_by_its_bytes(tmp_path: Path) -> None:
    source = tmp_path / "in.json"
    source.write_text("[1, 2]")
    assert JSONInputAdapter(source).max_shards(50) == 6
    assert len(JSONInputAdapter(source).split(6)) == 6


def write_parquet(path: Path, groups: int) -> Path:
    table = pa.table({"id": list(range(groups * 2))})
    pq.write_table(table, path, row_group_size=2)
    return path


def test_parquet_is_cut_into_no_more_shards_than_row_groups(tmp_path: Path) -> None:
    source = write_parquet(tmp_path / "in.parquet", groups=3)
    adapter = ParquetInputAdapter(source)
    assert [adapter.max_shards(n) for n in (1, 2, 3, 4, 1000)] == [1, 2, 3, 3, 3]
    shard = ParquetInputAdapter(source, row_groups=[1, 2])
    assert shard.max_shards(10) == 2
    assert ParquetInputAdapter(source, row_groups=[]).max_shards(10) == 1
    big = write_parquet(tmp_path / "big.parquet", groups=100)
    pipe = Pipe(ParquetInputAdapter(big), CSVOutputAdapter(tmp_path / "out.csv"))
    layout = PipeManager.shard_layout(pipe, 1000)
    groups = [p.input_adapter.row_groups for p in layout.pipes]  # type: ignore[attr-defined]
    assert groups == [[g] for g in range(100)]


class _Unbounded(BaseInputAdapter):
    """An input that is not a file: the default max_shards does not bound it."""

    def batches(self) -> Iterator[InputBatch]:
        yield InputBatch(records=[{"id": 1}], source=self.source)

    def split(self, workers: int) -> list[BaseInputAdapter]:
        return [_Unbounded(self.source) for _ in range(workers)]


def test_the_default_bound_is_the_size_of_a_regular_file_only(tmp_path: Path) -> None:
    assert _Unbounded("memory://nothing").max_shards(7) == 7
    assert _Unbounded(tmp_path).max_shards(7) == 7  # a folder
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    assert CSVInputAdapter(empty).max_shards(7) == 1
    assert CSVInputAdapter(small_csv(tmp_path / "s.csv", 1)).max_shards(5) == 5  # 13 bytes


class _Recording(BaseCoordinator):
    def __init__(self, extra: int = 0) -> None:
        self.asked: list[int] = []
        self.extra = extra

    def prepare_shards(
        self, input_adapter: BaseInputAdapter, workers: int
    ) -> list[BaseInputAdapter]:
        self.asked.append(workers)
        return input_adapter.split(workers + self.extra)


def test_a_coordinator_is_asked_for_the_capped_count_and_must_return_it(tmp_path: Path) -> None:
    pipe = csv_pipe(tmp_path, rows=20)  # 128 bytes
    coordinator = _Recording()
    layout = PipeManager.shard_layout(pipe, 400, coordinator=coordinator)
    assert coordinator.asked == [128]
    assert len(layout.pipes) == 128
    with pytest.raises(ConfigurationError, match="returned 129 shards when asked for 128"):
        PipeManager.shard_layout(pipe, 400, coordinator=_Recording(extra=1))
    with pytest.raises(ConfigurationError, match="returned 4 shards when asked for 3"):
        PipeManager.shard_layout(pipe, 3, coordinator=_Recording(extra=1))


class _BadBound(_Unbounded):
    def max_shards(self, wanted: int) -> int:
        return wanted + 1


def test_a_max_shards_out_of_range_is_refused(tmp_path: Path) -> None:
    pipe = Pipe(_BadBound("memory://x"), JSONOutputAdapter(tmp_path / "out.jsonl"))
    with pytest.raises(ConfigurationError, match=r"_BadBound.max_shards\(100\) returned 101"):
        PipeManager.shard_layout(pipe, 100)


# -- timeouts with many shards ------------------------------------------------------------------


def test_run_keeps_its_timeout_with_two_thousand_shards(tmp_path: Path) -> None:
    pipe = csv_pipe(tmp_path, rows=2000)
    manager = PipeManager.parallelize_pipe(pipe, workers=2000)
    assert manager.pipe_count == 2000
    started = time.monotonic()
    assert manager.run(timeout=2) is False
    elapsed = time.monotonic() - started
    assert elapsed < 2 + 5, f"run(timeout=2) returned after {elapsed:.1f} s"
    assert manager.error is not None and "timed out after 2 s" in str(manager.error)
    assert not multiprocessing.active_children()
    assert not (tmp_path / "out.jsonl").exists()
    reports = manager.pipe_reports
    assert all(r.is_finished for r in reports)
    assert any(r.message == "cancelled before it started" for r in reports)


def test_start_returns_after_a_slice_and_looks_launch_the_rest(tmp_path: Path) -> None:
    pipe = csv_pipe(tmp_path, rows=300)
    engine = MultiProcessEngine()
    manager = PipeManager.parallelize_pipe(pipe, workers=300, engine=engine)
    started = time.monotonic()
    manager.start()
    assert time.monotonic() - started < engine.launch_slice + 2.0
    assert manager.wait(120) is True
    assert manager.succeeded is True
    assert read_jsonl(tmp_path / "out.jsonl") == [
        {"id": str(i), "name": f"n{i}"} for i in range(300)
    ]


# -- job files ----------------------------------------------------------------------------------

JOB = "input: {format: csv, path: in.csv}\noutput: {format: csv, path: out.csv}\n"


def billion_laughs(path: Path) -> Path:
    """Nine levels of ten aliases: 10**9 strings from 700 bytes."""
    lines = ["name: laughs", "a0: &a0 [" + ", ".join(["lol"] * 10) + "]"]
    for level in range(1, 10):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 10) + "]")
    path.write_text("\n".join(lines) + "\n" + JOB)
    return path


def test_the_c_parser_is_used_where_pyyaml_has_it() -> None:
    import yaml

    if not yaml.__with_libyaml__:
        pytest.skip("PyYAML was built without libyaml")
    assert any(base.__name__ == "CParser" for base in _yaml._Loader.__mro__)


def test_billion_laughs_is_refused_at_the_alias_in_small_memory(tmp_path: Path) -> None:
    job = billion_laughs(tmp_path / "laughs.yaml")
    child = textwrap.dedent(
        f"""
        import resource, sys
        limit = 2 << 30  # the loader before this fix took 12 GB
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        from zoopipe_hpc.errors import JobConfigError
        from zoopipe_hpc.jobs.config import load_job_file
        try:
            load_job_file({str(job)!r})
        except JobConfigError as exc:
            print(exc)
        status = open("/proc/self/status").read().split("VmHWM:")[1].split()[0]
        print(int(status) // 1024)
        """
    )
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    message, peak_mib = done.stdout.strip().splitlines()
    assert message.startswith(f"{job}:5: the aliases repeat more than 10,000 nodes in all")
    assert "*a2 here adds 1,111" in message
    assert int(peak_mib) < 300


def test_aliases_within_the_budget_still_work(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("id\n1\n")
    job = tmp_path / "job.yaml"
    job.write_text(
        "name: j\n"
        "input: &data {format: csv, path: in.csv, options: {delimiter: ','}}\n"
        "output: {<<: *data, path: out.csv}\n"
        "engine: {kind: local, max_retries: 1}\n"
    )
    config = load_job_file(job)
    assert Path(config.output.path).name == "out.csv"
    assert config.output.options == {"delimiter": ","}


def test_an_oversized_job_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    job = tmp_path / "big.yaml"
    with open(job, "wb") as f:
        f.write(JOB.encode())
        f.truncate(50 << 20)  # 50 MB, sparse
    started = time.monotonic()
    with pytest.raises(JobConfigError) as caught:
        load_job_file(job)
    assert time.monotonic() - started < 2.0
    assert str(caught.value) == (
        f"{job}: the file is 52,428,800 bytes, more than the 1 MiB a job file may have "
        "(a job file names its data, it does not hold it)"
    )
    assert caught.value.path == str(job) and caught.value.line is None


def test_a_job_file_of_just_under_the_limit_loads(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("id\n1\n")
    head = "name: j\n" + JOB + "engine:\n  kind: slurm\n  setup:\n"
    line = "    - " + "x" * 60 + "\n"
    count = (_yaml.MAX_FILE_BYTES - len(head)) // len(line)
    job = tmp_path / "job.yaml"
    job.write_text(head + line * count)
    assert job.stat().st_size <= _yaml.MAX_FILE_BYTES
    started = time.monotonic()
    config = load_job_file(job)
    assert time.monotonic() - started < 5.0
    assert len(config.engine.setup) == count
    job.write_text(head + line * count + "x" * (_yaml.MAX_FILE_BYTES + 1 - job.stat().st_size))
    with pytest.raises(JobConfigError, match="1,048,577 bytes, more than the 1 MiB"):
        load_job_file(job)


def test_nesting_too_deep_for_the_reader_is_a_job_config_error(tmp_path: Path) -> None:
    job = tmp_path / "deep.yaml"
    job.write_text("name: j\nx: " + "[" * 800 + "]" * 800 + "\n")
    with pytest.raises(JobConfigError, match="nested too deeply"):
        load_job_file(job)
    job.write_text("name: j\nx: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(JobConfigError, match="exceeded maximum nesting depth"):
        load_job_file(job)
