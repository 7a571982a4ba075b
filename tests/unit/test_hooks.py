"""Hooks on a Pipe: lifecycle, priority, record changes, failures, Arrow hooks and counters."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _hook_support import (
    AddTag,
    ArrowAddTag,
    ArrowUpperName,
    Explode,
    Journal,
    Tagged,
    UpperName,
    journal,
)
from _support import read_jsonl, write_csv

import zoopipe_hpc
import zoopipe_hpc.hooks
from zoopipe_hpc import (
    BaseArrowHook,
    BaseHook,
    CSVInputAdapter,
    EntryStatus,
    EntryTypedDict,
    HookPriority,
    HookStore,
    JSONOutputAdapter,
    ParquetInputAdapter,
    Pipe,
    PipeStatus,
    SingleThreadExecutor,
)
from zoopipe_hpc.errors import ConfigurationError, HookError


def _rows(n: int, bad: tuple[int, ...] = ()) -> list[dict[str, Any]]:
    return [{"id": f"x{i}" if i in bad else i, "name": f"user {i}"} for i in range(n)]


def _pipe(tmp_path: Path, n: int = 10, bad: tuple[int, ...] = (), **kwargs: Any) -> Pipe:
    source = write_csv(tmp_path / "in.csv", _rows(n, bad))
    kwargs.setdefault("error_output_adapter", JSONOutputAdapter(tmp_path / "err.jsonl"))
    return Pipe(
        CSVInputAdapter(source), JSONOutputAdapter(tmp_path / "out.jsonl"), Tagged, **kwargs
    )


def _parquet_pipe(tmp_path: Path, n: int = 10, **kwargs: Any) -> Pipe:
    source = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(_rows(n)), source)
    return Pipe(
        ParquetInputAdapter(source, batch_size=4),
        JSONOutputAdapter(tmp_path / "out.jsonl"),
        Tagged,
        error_output_adapter=JSONOutputAdapter(tmp_path / "err.jsonl"),
        **kwargs,
    )


def _counters_exact(pipe: Pipe) -> None:
    report = pipe.report
    assert report.success_count + report.error_count == report.total_processed


# -- the names ---------------------------------------------------------------------------------


def test_names_are_importable_from_the_package_and_the_hooks_module() -> None:
    for name in ("BaseHook", "BaseArrowHook", "HookStore", "HookPriority"):
        assert getattr(zoopipe_hpc, name) is getattr(zoopipe_hpc.hooks, name)
        assert name in zoopipe_hpc.__all__
    for name in ("EntryTypedDict", "EntryStatus"):
        assert getattr(zoopipe_hpc, name) is getattr(zoopipe_hpc.hooks, name)
        assert name in zoopipe_hpc.__all__
    assert set(EntryTypedDict.__annotations__) == {
        "id",
        "position",
        "status",
        "raw_data",
        "validated_data",
        "errors",
        "metadata",
    }
    assert [s.value for s in EntryStatus] == ["pending", "validated", "failed"]
    assert HookPriority.VERY_HIGH < HookPriority.NORMAL < HookPriority.VERY_LOW
    assert BaseHook().priority == HookPriority.NORMAL
    store: HookStore = {}
    assert BaseHook().execute([], store) == []


def test_non_hooks_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="pre_validation_hooks"):
        Pipe(
            CSVInputAdapter("in.csv"),
            JSONOutputAdapter("out.jsonl"),
            pre_validation_hooks=[object()],  # type: ignore[list-item]
        )
    with pytest.raises(ConfigurationError, match="list of hooks"):
        Pipe(
            CSVInputAdapter("in.csv"),
            JSONOutputAdapter("out.jsonl"),
            post_validation_hooks=BaseHook(),  # type: ignore[arg-type]
        )


# -- lifecycle -------------------------------------------------------------------------------


def test_setup_once_execute_per_batch_with_a_fresh_store_teardown_once(tmp_path: Path) -> None:
    log = tmp_path / "journal.jsonl"
    pipe = _pipe(
        tmp_path,
        n=10,
        executor=SingleThreadExecutor(batch_size=3),
        pre_validation_hooks=[Journal(log, "pre"), AddTag()],
        post_validation_hooks=[Journal(log, "post")],
    )
    pipe.run()
    events = journal(log)
    kinds = [(e["label"], e["event"]) for e in events]
    # setup of every hook before the first batch; teardown of every hook after the last one.
    assert kinds[:2] == [("pre", "setup"), ("post", "setup")]
    assert kinds[-2:] == [("pre", "teardown"), ("post", "teardown")]
    executes = [e for e in events if e["event"] == "execute"]
    assert [e["rows"] for e in executes if e["label"] == "pre"] == [3, 3, 3, 1]
    worker_store = events[0]["store"]
    assert {e["store"] for e in events if e["event"] != "execute"} == {worker_store}
    # A fresh, empty store per batch, shared by the pre and post hooks of that batch.
    for pre, post in zip(executes[::2], executes[1::2], strict=True):
        assert (pre["label"], post["label"]) == ("pre", "post")
        assert pre["keys"] == [] and post["keys"] == ["seen_pre"]
    # The worker's store keeps what setup put there, and is not what execute saw.
    assert events[-1]["keys"] == ["setup_post", "setup_pre"]
    assert len(read_jsonl(tmp_path / "out.jsonl")) == 10


def test_hooks_run_in_priority_order_stable_for_equal_priorities(tmp_path: Path) -> None:
    log = tmp_path / "journal.jsonl"
    hooks = [
        Journal(log, "late", priority=HookPriority.LOW),
        Journal(log, "first", priority=HookPriority.VERY_HIGH),
        Journal(log, "normal_a"),
        Journal(log, "normal_b"),
    ]
    _pipe(tmp_path, n=2, pre_validation_hooks=hooks).run()
    order = [e["label"] for e in journal(log) if e["event"] == "execute"]
    assert order == ["first", "normal_a", "normal_b", "late"]


def test_teardown_runs_when_the_pipe_fails(tmp_path: Path) -> None:
    log = tmp_path / "journal.jsonl"
    pipe = _pipe(
        tmp_path,
        pre_validation_hooks=[Journal(log, "pre")],
        post_validation_hooks=[Explode()],
    )
    with pytest.raises(HookError) as caught:
        pipe.run()
    events = [(e["label"], e["event"]) for e in journal(log)]
    assert events == [("pre", "setup"), ("pre", "execute"), ("pre", "teardown")]
    error = caught.value
    assert error.hook == "Explode" and error.stage == "post_validation"
    assert error.error_type == "KeyError" and "in.csv" in str(error)
    assert pipe.report.status is PipeStatus.FAILED
    assert not (tmp_path / "out.jsonl").exists() and not (tmp_path / "err.jsonl").exists()


def test_a_raising_setup_fails_the_pipe_and_tears_down_what_was_set_up(tmp_path: Path) -> None:
    log = tmp_path / "journal.jsonl"

    class BadSetup(BaseHook):
        def setup(self, store: HookStore) -> None:
            raise RuntimeError("no connection")

    pipe = _pipe(tmp_path, pre_validation_hooks=[Journal(log, "ok", priority=0), BadSetup()])
    with pytest.raises(HookError, match="setup hook BadSetup raised RuntimeError: no connection"):
        pipe.run()
    assert [e["event"] for e in journal(log)] == ["setup", "teardown"]


def test_a_raising_teardown_fails_a_pipe_that_went_well(tmp_path: Path) -> None:
    class BadTeardown(BaseHook):
        def teardown(self, store: HookStore) -> None:
            raise OSError("cannot close")

    pipe = _pipe(tmp_path, pre_validation_hooks=[AddTag(), BadTeardown()])
    with pytest.raises(HookError, match="teardown"):
        pipe.run()
    assert not (tmp_path / "out.jsonl").exists()


def test_a_hook_returning_something_else_than_entries_fails_the_pipe(tmp_path: Path) -> None:
    class ReturnsNone(BaseHook):
        def execute(self, entries: list[EntryTypedDict], store: HookStore) -> Any:
            return None

    with pytest.raises(HookError, match="ReturnsNone .*NoneType"):
        _pipe(tmp_path, pre_validation_hooks=[ReturnsNone()]).run()


# -- what hooks change -----------------------------------------------------------------------


def test_pre_hooks_change_raw_data_post_hooks_change_validated_data(tmp_path: Path) -> None:
    pipe = _pipe(
        tmp_path,
        n=4,
        bad=(2,),
        pre_validation_hooks=[AddTag()],
        post_validation_hooks=[UpperName()],
    )
    report = pipe.run()
    assert read_jsonl(tmp_path / "out.jsonl") == [
        {"id": i, "name": f"USER {i}", "tag": f"t{i}"} for i in (0, 1, 3)
    ]
    (error,) = read_jsonl(tmp_path / "err.jsonl")
    assert error["line"] == 4 and error["record"]["tag"] == "tx2"
    assert (report.success_count, report.error_count, report.total_processed) == (3, 1, 4)


def test_without_the_pre_hook_the_model_rejects_every_row(tmp_path: Path) -> None:
    report = _pipe(tmp_path, n=3).run()
    assert (report.success_count, report.error_count) == (0, 3)


def test_entries_a_hook_fails_go_to_the_error_output(tmp_path: Path) -> None:
    pipe = _pipe(tmp_path, n=6, bad=(4,), pre_validation_hooks=[AddTag(reject=("1", "3"))])
    report = pipe.run()
    assert [r["id"] for r in read_jsonl(tmp_path / "out.jsonl")] == [0, 2, 5]
    errors = read_jsonl(tmp_path / "err.jsonl")
    assert [e["line"] for e in errors] == [3, 5, 6]
    assert errors[0]["errors"] == [{"type": "rejected", "msg": "rejected by AddTag"}]
    assert errors[2]["errors"][0]["type"] == "int_parsing"
    assert (report.success_count, report.error_count, report.total_processed) == (3, 3, 6)
    _counters_exact(pipe)


def test_a_post_hook_can_fail_a_validated_entry(tmp_path: Path) -> None:
    class RejectEven(BaseHook):
        def execute(self, entries: list[EntryTypedDict], store: HookStore) -> list[EntryTypedDict]:
            for entry in entries:
                data = entry["validated_data"]
                if data is not None and data["id"] % 2 == 0:
                    entry["status"] = EntryStatus.FAILED
                    entry["errors"].append({"type": "even", "msg": "even id"})
            return entries

    pipe = _pipe(
        tmp_path, n=5, pre_validation_hooks=[AddTag()], post_validation_hooks=[RejectEven()]
    )
    report = pipe.run()
    assert [r["id"] for r in read_jsonl(tmp_path / "out.jsonl")] == [1, 3]
    assert (report.success_count, report.error_count, report.total_processed) == (2, 3, 5)


def test_entries_a_hook_drops_are_not_counted(tmp_path: Path) -> None:
    class DropFirst(BaseHook):
        def execute(self, entries: list[EntryTypedDict], store: HookStore) -> list[EntryTypedDict]:
            return [e for e in entries if e["position"] != 0]

    pipe = _pipe(tmp_path, n=4, pre_validation_hooks=[AddTag(), DropFirst()])
    report = pipe.run()
    assert (report.success_count, report.error_count, report.total_processed) == (3, 0, 3)


def test_entries_carry_their_position_and_line(tmp_path: Path) -> None:
    seen: list[tuple[Any, Any, Any, Any]] = []

    class Look(BaseHook):
        def execute(self, entries: list[EntryTypedDict], store: HookStore) -> list[EntryTypedDict]:
            for e in entries:
                seen.append((e["id"], e["position"], e["status"], e["metadata"]["line"]))
            return entries

    _pipe(
        tmp_path, n=3, executor=SingleThreadExecutor(batch_size=2), pre_validation_hooks=[Look()]
    ).run()
    assert seen == [(i, i, EntryStatus.PENDING, i + 2) for i in range(3)]


# -- Arrow hooks -----------------------------------------------------------------------------


def test_arrow_hooks_keep_the_columnar_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_rows(*args: Any) -> None:
        raise AssertionError("the row path was used")

    monkeypatch.setattr(Pipe, "_process_hooked", no_rows)
    monkeypatch.setattr(Pipe, "_process", no_rows)
    pipe = _parquet_pipe(
        tmp_path,
        n=10,
        pre_validation_hooks=[ArrowAddTag()],
        post_validation_hooks=[ArrowUpperName()],
    )
    report = pipe.run()
    assert read_jsonl(tmp_path / "out.jsonl") == [
        {"id": i, "name": f"USER {i}", "tag": f"t{i}"} for i in range(10)
    ]
    assert (report.success_count, report.error_count, report.total_processed) == (10, 0, 10)


def test_arrow_and_row_hooks_give_the_same_output(tmp_path: Path) -> None:
    rows_dir, arrow_dir, mixed_dir = (tmp_path / n for n in ("rows", "arrow", "mixed"))
    for folder in (rows_dir, arrow_dir, mixed_dir):
        folder.mkdir()
    _pipe(
        rows_dir,
        n=20,
        bad=(5,),
        pre_validation_hooks=[AddTag()],
        post_validation_hooks=[UpperName()],
    ).run()
    _pipe(
        arrow_dir,
        n=20,
        bad=(5,),
        pre_validation_hooks=[ArrowAddTag()],
        post_validation_hooks=[ArrowUpperName()],
    ).run()
    _pipe(
        mixed_dir,
        n=20,
        bad=(5,),
        pre_validation_hooks=[ArrowAddTag()],
        post_validation_hooks=[UpperName()],
    ).run()
    expected = (rows_dir / "out.jsonl").read_bytes()
    assert len(read_jsonl(rows_dir / "out.jsonl")) == 19
    assert (arrow_dir / "out.jsonl").read_bytes() == expected
    assert (mixed_dir / "out.jsonl").read_bytes() == expected
    assert len(read_jsonl(arrow_dir / "err.jsonl")) == 1
    assert read_jsonl(arrow_dir / "err.jsonl")[0]["line"] == 7


def test_an_arrow_hook_gets_a_fresh_store_per_batch(tmp_path: Path) -> None:
    class Count(BaseArrowHook):
        def execute_table(self, table: pa.Table, store: HookStore) -> pa.Table:
            if store:
                raise AssertionError("the store was not fresh")
            store["n"] = table.num_rows
            return table

    class Check(BaseArrowHook):
        def execute_table(self, table: pa.Table, store: HookStore) -> pa.Table:
            if store.get("n") != table.num_rows:
                raise AssertionError("the batch's store was not shared")
            return table

    pipe = _parquet_pipe(
        tmp_path,
        n=10,
        pre_validation_hooks=[Count(), ArrowAddTag(priority=60)],
        post_validation_hooks=[Check()],
    )
    assert pipe.run().success_count == 10


def test_an_arrow_post_hook_that_drops_an_output_column_fails(tmp_path: Path) -> None:
    class DropName(BaseArrowHook):
        def execute_table(self, table: pa.Table, store: HookStore) -> pa.Table:
            return table.drop_columns(["name"])

    pipe = _parquet_pipe(
        tmp_path, pre_validation_hooks=[ArrowAddTag()], post_validation_hooks=[DropName()]
    )
    with pytest.raises(HookError, match="name"):
        pipe.run()


def test_an_arrow_pre_hook_that_filters_rows(tmp_path: Path) -> None:
    class OddOnly(BaseArrowHook):
        def execute_table(self, table: pa.Table, store: HookStore) -> pa.Table:
            import pyarrow.compute as pc

            return table.filter(pc.equal(pc.bit_wise_and(table["id"], 1), 1))

    pipe = _parquet_pipe(tmp_path, n=10, pre_validation_hooks=[OddOnly(), ArrowAddTag(priority=60)])
    report = pipe.run()
    assert [r["id"] for r in read_jsonl(tmp_path / "out.jsonl")] == [1, 3, 5, 7, 9]
    assert (report.success_count, report.total_processed) == (5, 5)


# -- travelling ------------------------------------------------------------------------------


def test_hooks_pickle_with_the_pipe_and_follow_with_outputs_and_for_attempt(tmp_path: Path) -> None:
    pipe = _pipe(
        tmp_path, pre_validation_hooks=[AddTag(priority=7)], post_validation_hooks=[UpperName()]
    )
    for copy in (
        pickle.loads(pickle.dumps(pipe)),
        pipe.with_outputs(JSONOutputAdapter(tmp_path / "o2.jsonl"), None),
        pipe.for_attempt("a1"),
    ):
        assert [type(h) for h in copy.pre_validation_hooks] == [AddTag]
        assert copy.pre_validation_hooks[0].priority == 7
        assert [type(h) for h in copy.post_validation_hooks] == [UpperName]
    assert pickle.loads(pickle.dumps(pipe)).run().success_count == 10


def test_a_pipe_without_hooks_keeps_its_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(*args: Any) -> None:
        raise AssertionError("the hooked path was used")

    monkeypatch.setattr(Pipe, "_process_hooked", never)
    source = tmp_path / "in.parquet"
    pq.write_table(
        pa.Table.from_pylist([{"id": i, "name": "n", "tag": "t"} for i in range(5)]), source
    )
    pipe = Pipe(ParquetInputAdapter(source), JSONOutputAdapter(tmp_path / "out.jsonl"), Tagged)
    assert pipe.run().success_count == 5
    assert pipe.pre_validation_hooks == [] and pipe.post_validation_hooks == []


def test_arrow_hooks_on_an_input_without_tables_run_on_the_row_path(tmp_path: Path) -> None:
    from zoopipe_hpc import JSONInputAdapter

    source = tmp_path / "in.jsonl"
    source.write_text("".join(f'{{"id": {i}, "name": "user {i}"}}\n' for i in range(6)))
    pipe = Pipe(
        JSONInputAdapter(source),
        JSONOutputAdapter(tmp_path / "out.jsonl"),
        Tagged,
        executor=SingleThreadExecutor(batch_size=4),
        pre_validation_hooks=[ArrowAddTag()],
        post_validation_hooks=[ArrowUpperName()],
    )
    assert pipe.run().success_count == 6
    assert read_jsonl(tmp_path / "out.jsonl") == [
        {"id": i, "name": f"USER {i}", "tag": f"t{i}"} for i in range(6)
    ]


def test_teardown_runs_when_the_pipe_is_shut_down(tmp_path: Path) -> None:
    import threading

    log = tmp_path / "journal.jsonl"
    release = threading.Event()

    class Wait(BaseHook):
        def execute(self, entries: list[EntryTypedDict], store: HookStore) -> list[EntryTypedDict]:
            release.wait(10)
            return entries

    source = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(_rows(12)), source)
    pipe = Pipe(
        ParquetInputAdapter(source, batch_size=4),
        JSONOutputAdapter(tmp_path / "out.jsonl"),
        Tagged,
        pre_validation_hooks=[AddTag(), Wait(), Journal(log)],
    )
    pipe.start()
    pipe.shutdown(timeout=0)  # asks to stop while the first batch is held in the hook
    release.set()
    pipe.wait(10)
    assert pipe.report.status is PipeStatus.ABORTED  # shutdown() aborts, as in ZooPipe
    assert [e["event"] for e in journal(log)][-1] == "teardown"
    assert [e["event"] for e in journal(log)].count("teardown") == 1


def test_zoopipes_timestamp_hook_example_runs_with_the_import_changed(tmp_path: Path) -> None:
    # ZooPipe's docs/hooks.md "Example 1", only ``from zoopipe`` changed to ``from zoopipe_hpc``.
    import time
    from datetime import datetime

    from pydantic import BaseModel

    # (BaseHook, EntryTypedDict, HookStore: imported from zoopipe_hpc at the top of this module)

    class TimestampHook(BaseHook):
        def setup(self, store: HookStore) -> None:
            store["start_time"] = time.time()
            print(f"Pipeline started at: {datetime.now()}")

        def execute(self, entries: list[EntryTypedDict], store: HookStore) -> list[EntryTypedDict]:
            current_time = datetime.now().isoformat()
            for entry in entries:
                entry["raw_data"]["processed_at"] = current_time
            return entries

        def teardown(self, store: HookStore) -> None:
            duration = time.time() - store["start_time"]
            print(f"Pipeline finished in {duration:.2f} seconds")

    class Stamped(BaseModel):
        id: int
        name: str
        processed_at: datetime

    source = write_csv(tmp_path / "in.csv", _rows(3))
    pipe = Pipe(
        input_adapter=CSVInputAdapter(source),
        output_adapter=JSONOutputAdapter(tmp_path / "out.jsonl"),
        schema_model=Stamped,
        pre_validation_hooks=[TimestampHook()],
    )
    assert pipe.run().success_count == 3
    assert all("processed_at" in row for row in read_jsonl(tmp_path / "out.jsonl"))


def test_malformed_input_goes_to_the_error_output_past_the_hooks(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text("id,name\n0,a\n1,b,extra\n2,c\n", encoding="utf-8")
    pipe = Pipe(
        CSVInputAdapter(source),
        JSONOutputAdapter(tmp_path / "out.jsonl"),
        Tagged,
        error_output_adapter=JSONOutputAdapter(tmp_path / "err.jsonl"),
        pre_validation_hooks=[AddTag()],
    )
    report = pipe.run()
    assert [r["id"] for r in read_jsonl(tmp_path / "out.jsonl")] == [0, 2]
    assert [e["line"] for e in read_jsonl(tmp_path / "err.jsonl")] == [3]
    assert (report.success_count, report.error_count, report.total_processed) == (2, 1, 3)


def test_hooks_with_a_multithread_executor(tmp_path: Path) -> None:
    from zoopipe_hpc import MultiThreadExecutor

    one, many = tmp_path / "one", tmp_path / "many"
    one.mkdir()
    many.mkdir()
    hooks: dict[str, Any] = {
        "pre_validation_hooks": [AddTag(reject=("3",))],
        "post_validation_hooks": [UpperName()],
    }
    _pipe(one, n=50, bad=(7,), **hooks).run()
    executor = MultiThreadExecutor(max_workers=2, batch_size=8)
    report = _pipe(many, n=50, bad=(7,), executor=executor, **hooks).run()
    assert (many / "out.jsonl").read_bytes() == (one / "out.jsonl").read_bytes()
    errors = [{**e, "source": None} for e in read_jsonl(many / "err.jsonl")]
    assert errors == [{**e, "source": None} for e in read_jsonl(one / "err.jsonl")]
    assert [e["line"] for e in errors] == [5, 9]
    assert (report.success_count, report.error_count) == (48, 2)
