from __future__ import annotations

import datetime as dt
import enum
import pickle
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from _support import User, read_jsonl, users, write_csv
from pydantic import BaseModel

from zoopipe_hpc import (
    CSVInputAdapter,
    JSONOutputAdapter,
    MultiThreadExecutor,
    ParquetOutputAdapter,
    Pipe,
    PipeStatus,
    SingleThreadExecutor,
)
from zoopipe_hpc.errors import ConfigurationError, SchemaError


def make_pipe(tmp_path: Path, n: int = 100, **kwargs) -> Pipe:
    source = write_csv(tmp_path / "in.csv", users(n, bad_every=7))
    return Pipe(
        CSVInputAdapter(source),
        JSONOutputAdapter(tmp_path / "out.jsonl"),
        User,
        error_output_adapter=JSONOutputAdapter(tmp_path / "err.jsonl"),
        **kwargs,
    )


def test_counts_add_up_and_invalid_records_keep_their_errors(tmp_path: Path):
    report = make_pipe(tmp_path).run()
    assert report.status is PipeStatus.COMPLETED
    assert report.total_processed == 100
    assert report.error_count == len(range(0, 100, 7))
    assert report.success_count + report.error_count == report.total_processed
    errors = read_jsonl(tmp_path / "err.jsonl")
    assert errors[0]["record"]["id"] == "bad0"
    assert errors[0]["errors"][0]["loc"] == ["id"]


def test_multithread_executor_keeps_input_order(tmp_path: Path):
    make_pipe(tmp_path, 5000, executor=MultiThreadExecutor(max_workers=4, batch_size=97)).run()
    ids = [r["id"] for r in read_jsonl(tmp_path / "out.jsonl")]
    assert ids == [i for i in range(5000) if i % 7]
    bad = [r["record"]["id"] for r in read_jsonl(tmp_path / "err.jsonl")]
    assert bad == [f"bad{i}" for i in range(0, 5000, 7)]


def test_pipe_pickles_and_runs_after_unpickling(tmp_path: Path):
    pipe = make_pipe(tmp_path, executor=MultiThreadExecutor(max_workers=2))
    clone = pickle.loads(pickle.dumps(pipe))
    assert clone.run().total_processed == 100


def test_start_wait_and_live_report(tmp_path: Path):
    pipe = make_pipe(tmp_path, executor=SingleThreadExecutor(batch_size=10))
    pipe.start()
    assert pipe.wait(timeout=30)
    assert pipe.report.is_finished and pipe.report.total_processed == 100
    assert not pipe.report.is_alive


def test_failure_keeps_previous_output_and_reports_reason(tmp_path: Path):
    target = tmp_path / "out.jsonl"
    target.write_text("old\n")
    pipe = Pipe(CSVInputAdapter(tmp_path / "missing.csv"), JSONOutputAdapter(target), User)
    with pytest.raises(Exception, match="missing.csv"):
        pipe.run()
    assert target.read_text() == "old\n"
    assert pipe.report.status is PipeStatus.FAILED
    assert "missing.csv" in pipe.report.message


def test_schema_given_by_import_path(tmp_path: Path):
    source = write_csv(tmp_path / "in.csv", users(3))
    pipe = Pipe(CSVInputAdapter(source), JSONOutputAdapter(tmp_path / "o.jsonl"), "_support:User")
    assert pipe.run().success_count == 3
    with pytest.raises(SchemaError, match="no_such_module"):
        Pipe(CSVInputAdapter(source), JSONOutputAdapter(tmp_path / "o.jsonl"), "no_such_module:X")


def test_bad_constructor_arguments_are_clear(tmp_path: Path):
    with pytest.raises(ConfigurationError, match="input_adapter"):
        Pipe("in.csv", JSONOutputAdapter(tmp_path / "o.jsonl"))  # type: ignore[arg-type]
    with pytest.raises(SchemaError):
        Pipe(CSVInputAdapter("a.csv"), JSONOutputAdapter("o.jsonl"), dict)  # type: ignore[arg-type]


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Rich(BaseModel):
    id: int
    when: dt.date
    at: dt.datetime
    color: Color
    note: str | None = None
    ok: bool


def test_parquet_output_uses_the_model_types(tmp_path: Path):
    source = tmp_path / "in.csv"
    source.write_text(
        "id,when,at,color,note,ok\n1,2024-01-02,2024-01-02T03:04:05,red,,true\n"
        "2,2024-02-03,2024-02-03T00:00:00,blue,hi,false\n"
    )
    out = tmp_path / "out.parquet"
    Pipe(CSVInputAdapter(source), ParquetOutputAdapter(out), Rich).run()
    table = pq.read_table(out)
    assert str(table.schema.field("when").type) == "date32[day]"
    assert str(table.schema.field("id").type) == "int64"
    assert table.column("color").to_pylist() == ["red", "blue"]
    assert table.column("ok").to_pylist() == [True, False]
    assert table.column("when").to_pylist()[0] == dt.date(2024, 1, 2)


def test_parallelize_pipe_keeps_the_columnar_switch(tmp_path: Path):
    from zoopipe_hpc import PipeManager

    source = write_csv(tmp_path / "in.csv", users(10))
    pipe = Pipe(
        CSVInputAdapter(source), JSONOutputAdapter(tmp_path / "o.jsonl"), User, columnar=False
    )
    manager = PipeManager.parallelize_pipe(pipe, workers=2)
    assert [p.columnar for p in manager.pipes] == [False, False]


@pytest.mark.parametrize("columnar", [True, False])
@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_an_int_no_64_bit_column_can_hold_is_an_error_record_not_a_crash(
    tmp_path: Path, columnar: bool, suffix: str
):
    source = write_csv(
        tmp_path / "in.csv",
        [
            {"id": 1, "name": "a", "score": 1.0},
            {"id": 2**63, "name": "too big", "score": 1.0},
            {"id": -(2**63), "name": "smallest", "score": 1.0},
            {"id": -(2**63) - 1, "name": "too small", "score": 1.0},
        ],
    )
    out = tmp_path / f"out{suffix}"
    output = ParquetOutputAdapter(out) if suffix == ".parquet" else JSONOutputAdapter(out)
    report = Pipe(
        CSVInputAdapter(source),
        output,
        User,
        error_output_adapter=JSONOutputAdapter(tmp_path / "err.jsonl"),
        columnar=columnar,
    ).run()
    assert (report.success_count, report.error_count) == (2, 2)
    rows = pq.read_table(out).to_pylist() if suffix == ".parquet" else read_jsonl(out)
    assert [r["id"] for r in rows] == [1, -(2**63)]
    errors = read_jsonl(tmp_path / "err.jsonl")
    assert [e["line"] for e in errors] == [3, 5]
    assert [e["errors"][0]["type"] for e in errors] == ["int64_range", "int64_range"]
    assert errors[0]["errors"][0]["loc"] == ["id"] and errors[0]["errors"][0]["input"] == 2**63
