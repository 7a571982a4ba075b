"""Adapter options under ZooPipe's names (issue 13): CSV, JSON, Arrow IPC, in-process."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from zoopipe_hpc import CSVInputAdapter, CSVOutputAdapter, JSONOutputAdapter, Pipe
from zoopipe_hpc.errors import ConfigurationError


class Person(BaseModel):
    id: int
    name: str
    city: str


def _people_csv(path: Path) -> Path:
    path.write_text('id,name,city\n1,"Ann; ""A""",Oslo\n2,Bob,"Rome, IT"\n')
    return path


# -- CSVInputAdapter(quotechar, skip_rows, fieldnames, generate_ids) ----------------------------


def _records(adapter: Any) -> list[dict[str, Any]]:
    return [r for batch in adapter.batches() for r in batch.records]


def _lines(adapter: Any) -> list[int | None]:
    return [batch.locate(i) for batch in adapter.batches() for i in range(len(batch))]


def test_csv_skip_rows_skips_lines_before_the_header_and_keeps_line_numbers(
    tmp_path: Path,
) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(b'title "unclosed\r\n\rnotes\nid,name\n1,"a\nb"\n2,b\n3\n4,d\n')
    adapter = CSVInputAdapter(path, skip_rows=3)
    assert _records(adapter) == [
        {"id": "1", "name": "a\nb"},
        {"id": "2", "name": "b"},
        {"id": "4", "name": "d"},
    ]
    assert _lines(adapter) == [5, 7, 9]
    [bad] = [m for batch in adapter.batches() for m in batch.malformed]
    assert (bad["source"], bad["line"]) == (str(path), 8)
    for workers in range(1, 6):
        shards = adapter.split(workers)
        assert [r for s in shards for r in _records(s)] == _records(adapter)
        assert [n for s in shards for n in _lines(s)] == [5, 7, 9]


def test_csv_skip_rows_header_errors_name_the_header_line(tmp_path: Path) -> None:
    from zoopipe_hpc.errors import InputError

    path = tmp_path / "in.csv"
    path.write_text("meta\nmeta\nid,id\n1,2\n")
    with pytest.raises(InputError) as caught:
        list(CSVInputAdapter(path, skip_rows=2).batches())
    assert caught.value.line == 3 and "in.csv" in str(caught.value)


def test_csv_skip_rows_past_the_end_reads_nothing(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("a\nb\n")
    for options in ({"skip_rows": 5}, {"skip_rows": 2}, {"skip_rows": 9, "fieldnames": ["x"]}):
        adapter = CSVInputAdapter(path, **options)
        assert _records(adapter) == []
        assert [_records(s) for s in adapter.split(2)] == [[], []]


def test_csv_fieldnames_read_a_headerless_file_exactly_across_shards(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    rows = [f'{i},"x\n{i}, ""q"""' for i in range(300)]
    path.write_bytes(b"\xef\xbb\xbf" + ("\r\n".join(rows) + "\r\n").encode())
    adapter = CSVInputAdapter(path, fieldnames=["id", "text"])
    whole = _records(adapter)
    assert whole == [{"id": str(i), "text": f'x\n{i}, "q"'} for i in range(300)]
    assert _lines(adapter) == [1 + 2 * i for i in range(300)]
    for workers in (1, 2, 7):
        shards = adapter.split(workers)
        assert [r for s in shards for r in _records(s)] == whole
        assert [n for s in shards for n in _lines(s)] == _lines(adapter)


def test_csv_fieldnames_with_skip_rows_and_a_pipe(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("exported today\n1,Ann,Oslo\n2,Bob\nx,Cy,Rome\n")
    out, err = tmp_path / "out.jsonl", tmp_path / "err.jsonl"
    adapter = CSVInputAdapter(path, skip_rows=1, fieldnames=["id", "name", "city"])
    report = Pipe(adapter, JSONOutputAdapter(out), Person, JSONOutputAdapter(err)).run()
    assert (report.success_count, report.error_count) == (1, 2)
    assert [json.loads(x) for x in out.read_text().splitlines()] == [
        {"id": 1, "name": "Ann", "city": "Oslo"}
    ]
    assert [json.loads(x)["line"] for x in err.read_text().splitlines()] == [3, 4]


def test_csv_quotechar_and_its_alias(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("id,name\n1,'a,b'\n")
    expected = [{"id": "1", "name": "a,b"}]
    assert _records(CSVInputAdapter(path, quotechar="'")) == expected
    assert _records(CSVInputAdapter(path, quote_char="'")) == expected
    assert _records(CSVInputAdapter(path, quotechar="'", quote_char="'")) == expected
    assert CSVInputAdapter(path, quote_char="'").quotechar == "'"
    assert CSVInputAdapter(path, quotechar="'").quote_char == "'"
    with pytest.raises(ConfigurationError, match="disagree"):
        CSVInputAdapter(path, quotechar="'", quote_char='"')


def test_csv_generate_ids_is_accepted_and_travels_with_shards(tmp_path: Path) -> None:
    import pickle

    path = _people_csv(tmp_path / "in.csv")
    adapter = CSVInputAdapter(path, generate_ids=False, skip_rows=0)
    shards = adapter.split(2)
    assert all(s.generate_ids is False for s in shards)  # type: ignore[attr-defined]
    assert pickle.loads(pickle.dumps(shards[0])).generate_ids is False
    assert _records(adapter) == _records(CSVInputAdapter(path))


@pytest.mark.parametrize(
    "options",
    [
        {"skip_rows": -1},
        {"skip_rows": True},
        {"fieldnames": []},
        {"fieldnames": ["a", "a"]},
        {"quotechar": "ab"},
        {"delimiter": '"'},
    ],
)
def test_csv_input_bad_options_are_refused(tmp_path: Path, options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="in.csv"):
        CSVInputAdapter(tmp_path / "in.csv", **options)


# -- CSVOutputAdapter(delimiter, quotechar, fieldnames) -------------------------------------------


def test_csv_output_fieldnames_pick_and_order_columns(tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    Pipe(
        CSVInputAdapter(_people_csv(tmp_path / "in.csv")),
        CSVOutputAdapter(out, fieldnames=["city", "id", "missing"]),
        Person,
    ).run()
    with open(out, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows == [["city", "id", "missing"], ["Oslo", "1", ""], ["Rome, IT", "2", ""]]


def test_csv_output_delimiter_and_quotechar(tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    Pipe(
        CSVInputAdapter(_people_csv(tmp_path / "in.csv")),
        CSVOutputAdapter(out, delimiter=";", quotechar="'"),
        Person,
    ).run()
    with open(out, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter=";", quotechar="'"))
    assert rows == [["id", "name", "city"], ["1", 'Ann; "A"', "Oslo"], ["2", "Bob", "Rome, IT"]]
    assert "'Ann; \"A\"'" in out.read_text()


def test_csv_output_parts_with_a_quotechar_merge_into_one_file(tmp_path: Path) -> None:
    from zoopipe_hpc import PipeManager

    source = tmp_path / "in.csv"
    lines = [f"{i},'n{i}\nx',c{i}" for i in range(40)]
    source.write_text("id,name,city\n" + "\n".join(lines) + "\n")
    out = tmp_path / "out.csv"
    pipe = Pipe(
        CSVInputAdapter(source, quotechar="'"),
        CSVOutputAdapter(out, quotechar="'", delimiter="|"),
        Person,
    )
    manager = PipeManager.parallelize_pipe(pipe, workers=3)
    assert manager.run()
    with open(out, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="|", quotechar="'"))
    assert rows[0] == ["id", "name", "city"]
    assert rows[1:] == [[str(i), f"n{i}\nx", f"c{i}"] for i in range(40)]


@pytest.mark.parametrize(
    "options",
    [
        {"delimiter": ";;"},
        {"quotechar": ""},
        {"delimiter": "'", "quotechar": "'"},
        {"fieldnames": []},
        {"fieldnames": ["a", "a"]},
    ],
)
def test_csv_output_bad_options_are_refused(tmp_path: Path, options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="out.csv"):
        CSVOutputAdapter(tmp_path / "out.csv", **options)


# -- JSONOutputAdapter(format="array"|"jsonl", indent) ------------------------------------------


@pytest.mark.parametrize("workers", [1, 3])
def test_json_output_array_with_indent(tmp_path: Path, workers: int) -> None:
    from zoopipe_hpc import PipeManager

    source = tmp_path / "in.csv"
    source.write_text("id,name,city\n" + "".join(f"{i},n{i},é{i}\n" for i in range(10)))
    out = tmp_path / "out.data"
    pipe = Pipe(CSVInputAdapter(source), JSONOutputAdapter(out, format="array", indent=2), Person)
    if workers == 1:
        pipe.run()
    else:
        assert PipeManager.parallelize_pipe(pipe, workers=workers).run()
    text = out.read_text(encoding="utf-8")
    expected = [{"id": i, "name": f"n{i}", "city": f"é{i}"} for i in range(10)]
    assert json.loads(text) == expected
    assert text == json.dumps(expected, indent=2, ensure_ascii=False) + "\n"


def test_json_output_format_names_override_the_suffix(tmp_path: Path) -> None:
    source = _people_csv(tmp_path / "in.csv")
    lines, array = tmp_path / "a.json", tmp_path / "b.jsonl"
    Pipe(CSVInputAdapter(source), JSONOutputAdapter(lines, format="jsonl"), Person).run()
    Pipe(CSVInputAdapter(source), JSONOutputAdapter(array, format="array"), Person).run()
    assert [json.loads(line) for line in lines.read_text().splitlines()] == json.loads(
        array.read_text()
    )
    assert JSONOutputAdapter(tmp_path / "c.json").format == "json"
    assert JSONOutputAdapter(tmp_path / "c.jsonl").format == "jsonl"
    assert JSONOutputAdapter(tmp_path / "c.jsonl", format="json").format == "json"


@pytest.mark.parametrize(
    "options",
    [{"format": "xml"}, {"format": "jsonl", "indent": 2}, {"indent": -1}, {"indent": True}],
)
def test_json_output_bad_options_are_refused(tmp_path: Path, options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="out.json"):
        JSONOutputAdapter(tmp_path / "out.json", **options)


# -- ArrowInputAdapter / ArrowOutputAdapter ------------------------------------------------------


def _write_ipc(path: Path, table: Any, chunk: int) -> Path:
    import pyarrow as pa

    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=chunk)
    return path


def _read_ipc(path: Path) -> Any:
    import pyarrow as pa

    with pa.memory_map(str(path), "r") as source:
        return pa.ipc.open_file(source).read_all()


def test_arrow_input_splits_by_record_batch_and_keeps_types(tmp_path: Path) -> None:
    import pyarrow as pa

    from zoopipe_hpc import ArrowInputAdapter

    table = pa.table({"id": list(range(50)), "name": [f"n{i}" for i in range(50)]})
    path = _write_ipc(tmp_path / "in.arrow", table, chunk=10)
    adapter = ArrowInputAdapter(path, batch_size=4)
    assert _records(adapter) == table.to_pylist()
    assert adapter.max_shards(100) == 5
    shards = adapter.split(3)
    assert [s.record_batches for s in shards] == [[0, 1], [2, 3], [4]]  # type: ignore[attr-defined]
    assert [r for s in shards for r in _records(s)] == table.to_pylist()
    assert max(len(b) for b in adapter.batches()) == 4


@pytest.mark.parametrize("workers", [1, 4])
def test_arrow_csv_to_arrow_parts_merge_into_one_ipc_file(tmp_path: Path, workers: int) -> None:
    from zoopipe_hpc import ArrowInputAdapter, ArrowOutputAdapter, PipeManager

    source = tmp_path / "in.csv"
    source.write_text("id,name,city\n" + "".join(f"{i},n{i},c{i}\n" for i in range(100)))
    out = tmp_path / "out.arrow"
    pipe = Pipe(CSVInputAdapter(source), ArrowOutputAdapter(out), Person)
    if workers == 1:
        pipe.run()
    else:
        assert PipeManager.parallelize_pipe(pipe, workers=workers).run()
    expected = [{"id": i, "name": f"n{i}", "city": f"c{i}"} for i in range(100)]
    assert _read_ipc(out).to_pylist() == expected
    back = tmp_path / "back.jsonl"
    Pipe(ArrowInputAdapter(out), JSONOutputAdapter(back), Person).run()
    assert [json.loads(x) for x in back.read_text().splitlines()] == expected


def test_arrow_input_refuses_a_file_that_is_not_arrow_naming_it(tmp_path: Path) -> None:
    from zoopipe_hpc import ArrowInputAdapter
    from zoopipe_hpc.errors import InputError

    path = tmp_path / "in.arrow"
    path.write_bytes(b"not arrow at all")
    with pytest.raises(InputError, match="in.arrow"):
        list(ArrowInputAdapter(path).batches())
    with pytest.raises(InputError, match="no such file"):
        ArrowInputAdapter(tmp_path / "missing.arrow").check()


# -- PyGeneratorInputAdapter / PyGeneratorOutputAdapter -----------------------------------------


def _people(n: int = 5) -> list[dict[str, Any]]:
    return [{"id": i, "name": f"n{i}", "city": "Oslo"} for i in range(n)]


def people_factory() -> Any:
    return iter(_people(20))


def test_pygen_in_process_round_trip_with_errors() -> None:
    from zoopipe_hpc import PyGeneratorInputAdapter, PyGeneratorOutputAdapter

    def source() -> Any:
        yield from _people(3)
        yield {"id": "x", "name": "bad", "city": "Rome"}
        yield 42

    output, errors = PyGeneratorOutputAdapter(), PyGeneratorOutputAdapter(queue_size=10)
    report = Pipe(PyGeneratorInputAdapter(source()), output, Person, errors).run()
    assert (report.success_count, report.error_count) == (3, 2)
    assert list(output) == _people(3)
    assert list(output) == _people(3)  # the committed records stay until the next run
    bad = list(errors)
    assert [e["line"] for e in bad] == [4, 5]
    assert bad[1]["errors"][0]["type"] == "pygen_not_mapping"


def test_pygen_output_iteration_waits_for_a_background_run(tmp_path: Path) -> None:
    from zoopipe_hpc import PyGeneratorOutputAdapter

    output = PyGeneratorOutputAdapter()
    pipe = Pipe(CSVInputAdapter(_people_csv(tmp_path / "in.csv")), output, Person)
    pipe.start()
    assert [r["id"] for r in output] == [1, 2]
    assert pipe.wait(5)


def test_pygen_output_of_a_failed_run_raises_when_read(tmp_path: Path) -> None:
    from zoopipe_hpc import PyGeneratorOutputAdapter
    from zoopipe_hpc.errors import InputError, OutputError

    output = PyGeneratorOutputAdapter()
    with pytest.raises(InputError):
        Pipe(CSVInputAdapter(tmp_path / "missing.csv"), output, Person).run()
    with pytest.raises(OutputError, match="wrote nothing"):
        list(output)


def test_pygen_generator_reads_once_and_list_or_factory_again() -> None:
    from zoopipe_hpc import PyGeneratorInputAdapter

    once = PyGeneratorInputAdapter(r for r in _people())
    assert _records(once) == _people()
    with pytest.raises(ConfigurationError, match="read already"):
        _records(once)
    for source in (_people(), people_factory):
        adapter = PyGeneratorInputAdapter(source)
        assert _records(adapter) == _records(adapter)


@pytest.mark.parametrize("workers", [1, 3, 7])
def test_pygen_list_and_factory_split_exactly(workers: int) -> None:
    from zoopipe_hpc import PyGeneratorInputAdapter

    for source, expected in ((_people(20), _people(20)), (people_factory, _people(20))):
        adapter = PyGeneratorInputAdapter(source, batch_size=3)
        shards = adapter.split(workers)
        assert len(shards) == workers
        assert [r for s in shards for r in _records(s)] == expected
        lines = [n for s in shards for n in _lines(s)]
        assert lines == list(range(1, 21))
    generator = PyGeneratorInputAdapter(r for r in _people())
    assert generator.max_shards(4) == 1
    assert [len(_records(s)) for s in generator.split(3)] == [5, 0, 0]


def test_pygen_factory_travels_to_a_process_engine(tmp_path: Path) -> None:
    import pickle

    from zoopipe_hpc import PipeManager, PyGeneratorInputAdapter

    adapter = PyGeneratorInputAdapter(people_factory)
    assert _records(pickle.loads(pickle.dumps(adapter))) == _people(20)
    out = tmp_path / "out.jsonl"
    manager = PipeManager.parallelize_pipe(Pipe(adapter, JSONOutputAdapter(out), Person), 2)
    assert manager.run(), manager.error
    assert [json.loads(x) for x in out.read_text().splitlines()] == _people(20)


def test_pygen_adapters_that_cannot_travel_are_refused_by_a_manager(tmp_path: Path) -> None:
    import pickle

    from zoopipe_hpc import PipeManager, PyGeneratorInputAdapter, PyGeneratorOutputAdapter

    generator = PyGeneratorInputAdapter(r for r in _people())
    with pytest.raises(ConfigurationError, match="in-process only"):
        PipeManager([Pipe(generator, JSONOutputAdapter(tmp_path / "o.jsonl"), Person)])
    with pytest.raises(ConfigurationError, match="in-process only"):
        PipeManager.parallelize_pipe(
            Pipe(generator, JSONOutputAdapter(tmp_path / "o.jsonl"), Person), 2
        )
    with pytest.raises(ConfigurationError, match="in-process only"):
        pickle.dumps(generator)
    sink = PyGeneratorOutputAdapter()
    with pytest.raises(ConfigurationError, match="MultiProcessEngine"):
        PipeManager([Pipe(PyGeneratorInputAdapter(_people()), sink, Person)])
    with pytest.raises(ConfigurationError, match="Pipe.run"):
        pickle.dumps(sink)


# -- ZooPipe's documented examples (docs/pygen.md), the import line changed -----------------------


class _UserSchema(BaseModel):
    user_id: str
    age: int


def test_zoopipe_pygen_in_memory_testing_example() -> None:
    # ZooPipe's example validates an EmailStr (email-validator is not installed here): the
    # same shape, with an int field that one record fails.
    from zoopipe_hpc import Pipe, PyGeneratorInputAdapter, PyGeneratorOutputAdapter

    test_data = [
        {"user_id": "1", "age": "31"},
        {"user_id": "2", "age": "not a number"},
        {"user_id": "3", "age": "42"},
    ]

    input_adapter = PyGeneratorInputAdapter(test_data)
    output_adapter = PyGeneratorOutputAdapter(queue_size=10)
    error_adapter = PyGeneratorOutputAdapter(queue_size=10)

    pipe = Pipe(
        input_adapter=input_adapter,
        output_adapter=output_adapter,
        error_output_adapter=error_adapter,
        schema_model=_UserSchema,
    )

    pipe.start()

    valid_records = list(output_adapter)
    error_records = list(error_adapter)

    assert len(valid_records) == 2
    assert len(error_records) == 1


def test_zoopipe_pygen_multi_stage_example() -> None:
    from zoopipe_hpc import Pipe, PyGeneratorInputAdapter, PyGeneratorOutputAdapter

    raw_data = [{"id": i, "value": i} for i in range(1000)]

    stage1_output = PyGeneratorOutputAdapter(queue_size=100)

    stage1 = Pipe(
        input_adapter=PyGeneratorInputAdapter(raw_data),
        output_adapter=stage1_output,
    )

    stage1.start()

    stage1_results = list(stage1_output)

    stage2_output = PyGeneratorOutputAdapter(queue_size=100)

    stage2 = Pipe(
        input_adapter=PyGeneratorInputAdapter(stage1_results),
        output_adapter=stage2_output,
    )

    stage2.start()

    final_results = list(stage2_output)
    assert final_results == raw_data
