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
        CSVInputAdapter(source, quote_char="'"),
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
