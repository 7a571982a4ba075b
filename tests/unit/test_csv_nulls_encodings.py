"""Missing-value markers and encodings of CSV input (issue 14).

Every case runs on the columnar path and the row path (``Pipe(columnar=...)``), and as one pipe
and as a sharded run (``parallelize_pipe(pipe, workers=3)``): the outputs are the same.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _support import read_jsonl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from zoopipe_hpc import CSVInputAdapter, JSONOutputAdapter, Pipe, PipeManager
from zoopipe_hpc.errors import ConfigurationError, InputError

MARKERS = ["NA", "", "null"]


class Measure(BaseModel):
    id: int
    count: int | None
    ratio: float | None
    label: str | None
    flag: bool | None


class Person(BaseModel):
    id: int
    name: str


def _run(
    tmp_path: Path,
    source: Path,
    model: type[BaseModel],
    *,
    columnar: bool,
    workers: int = 1,
    **options: Any,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    tag = f"{int(columnar)}-{workers}"
    out, err = tmp_path / f"out-{tag}.jsonl", tmp_path / f"err-{tag}.jsonl"
    pipe = Pipe(
        CSVInputAdapter(source, **options),
        JSONOutputAdapter(out),
        model,
        error_output_adapter=JSONOutputAdapter(err),
        columnar=columnar,
    )
    if workers == 1:
        report = pipe.run()
    else:
        manager = PipeManager.parallelize_pipe(pipe, workers=workers)
        assert manager.run(timeout=120), manager.error
        report = manager.report
    assert report.success_count + report.error_count == report.total_processed
    errors = [{"line": e.get("line"), "source": e.get("source")} for e in read_jsonl(err)]
    return read_jsonl(out), errors


def _all_ways(
    tmp_path: Path, source: Path, model: type[BaseModel], **options: Any
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The run's output, checked equal on both paths, one pipe and three shards."""
    first = _run(tmp_path, source, model, columnar=True, **options)
    for columnar, workers in ((False, 1), (True, 3), (False, 3)):
        assert _run(tmp_path, source, model, columnar=columnar, workers=workers, **options) == (
            first
        )
    return first


HEADER = "id,count,ratio,label,flag\n"
MEASURES = (
    "1,NA,1.5,a,yes\n"
    "2,,NA,,no\n"
    "3,7,null,b,NA\n"
    "NA,1,2,c,yes\n"  # a null marker where none is allowed: an error record
    "5,x,2,d,no\n"
    '6,"NA",0.5,"",yes\n'
)


def test_null_and_bool_markers_on_both_paths(tmp_path: Path) -> None:
    source = tmp_path / "m.csv"
    source.write_text(HEADER + MEASURES * 20)
    valid, errors = _all_ways(
        tmp_path,
        source,
        Measure,
        null_values=MARKERS,
        true_values=["yes"],
        false_values=["no"],
    )
    assert valid[:4] == [
        {"id": 1, "count": None, "ratio": 1.5, "label": "a", "flag": True},
        {"id": 2, "count": None, "ratio": None, "label": None, "flag": False},
        {"id": 3, "count": 7, "ratio": None, "label": "b", "flag": None},
        {"id": 6, "count": None, "ratio": 0.5, "label": None, "flag": True},
    ]
    assert len(valid) == 80
    assert [e["line"] for e in errors[:2]] == [5, 6]
    assert len(errors) == 40 and {e["source"] for e in errors} == {str(source)}


def test_without_markers_the_texts_stay(tmp_path: Path) -> None:
    source = tmp_path / "m.csv"
    source.write_text(HEADER + MEASURES)
    valid, errors = _all_ways(tmp_path, source, Measure)
    assert [row["id"] for row in valid] == [] and len(errors) == 6  # "NA" is no int, "yes" no bool


@pytest.mark.parametrize("encoding", ["latin-1", "cp1252"])
def test_single_byte_encodings_read_exactly(tmp_path: Path, encoding: str) -> None:
    names = ["Zoë", "José Nuñez", "Ærøskøbing", "naïve ; ça"]
    if encoding == "cp1252":
        names += ["€uro", "“quoted”", "Œuvre"]
    body = "id,name\n" + "".join(f'{i},"{n}"\n' for i, n in enumerate(names * 30))
    source = tmp_path / "p.csv"
    source.write_bytes(body.encode(encoding))
    valid, errors = _all_ways(tmp_path, source, Person, encoding=encoding)
    assert errors == []
    assert valid == [{"id": i, "name": n} for i, n in enumerate(names * 30)]


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_with_bom(tmp_path: Path, codec: str) -> None:
    text = "id,name\r\n1,Zoë\r\n2,日本\r\n3,😀\r\n"
    data = text.encode(codec)
    if codec != "utf-16":
        data = ("\ufeff" + text).encode(codec)  # the BOM written by hand
    source = tmp_path / "u.csv"
    source.write_bytes(data)
    valid, errors = _all_ways(tmp_path, source, Person, encoding="utf-16")
    assert errors == []
    assert valid == [{"id": 1, "name": "Zoë"}, {"id": 2, "name": "日本"}, {"id": 3, "name": "😀"}]


def test_utf16_without_encoding_is_refused_pointing_at_encoding(tmp_path: Path) -> None:
    source = tmp_path / "u.csv"
    source.write_bytes("id,name\n1,a\n".encode("utf-16"))
    with pytest.raises(InputError, match='encoding="utf-16"'):
        list(CSVInputAdapter(source).batches())


def test_decode_error_names_file_line_and_offset(tmp_path: Path) -> None:
    source = tmp_path / "bad.csv"
    data = b"id,name\r\n1,ok\r\n2,caf\xe9\r\n3,\x81\r\n"  # 0x81 has no cp1252 character
    source.write_bytes(data)
    with pytest.raises(InputError) as info:
        list(CSVInputAdapter(source, encoding="cp1252").batches())
    offset = data.index(b"\x81")
    assert str(info.value).startswith(f"{source}:4: cannot decode the file as cp1252")
    assert f"at byte {offset}" in str(info.value)
    assert (info.value.details["path"], info.value.details["line"]) == (str(source), 4)
    assert info.value.details["offset"] == offset


def test_utf16_decode_error_offset(tmp_path: Path) -> None:
    source = tmp_path / "bad16.csv"
    good = "id,name\n1,a\n".encode("utf-16-le")
    data = b"\xff\xfe" + good + b"\x00\xd8" + "x\n".encode("utf-16-le")  # a lone surrogate
    source.write_bytes(data)
    with pytest.raises(InputError) as info:
        list(CSVInputAdapter(source, encoding="utf-16").batches())
    assert str(info.value).startswith(f"{source}:3: cannot decode the file as utf-16")
    assert f"at byte {2 + len(good)}" in str(info.value)


def test_options_pass_through_split_and_are_checked(tmp_path: Path) -> None:
    source = tmp_path / "m.csv"
    source.write_text(HEADER + MEASURES * 50)
    adapter = CSVInputAdapter(source, null_values=["NA"], true_values=["yes"], block_size=4096)
    shards = adapter.split(3)
    assert len(shards) == 3
    for shard in shards:
        assert isinstance(shard, CSVInputAdapter)
        assert (shard.null_values, shard.true_values) == (["NA"], ["yes"])
    with pytest.raises(ConfigurationError, match="null_values must be a list"):
        CSVInputAdapter(source, null_values="NA")
    with pytest.raises(ConfigurationError, match="unknown encoding"):
        CSVInputAdapter(source, encoding="no-such-codec")
    with pytest.raises(ConfigurationError, match="both true_values and false_values"):
        CSVInputAdapter(source, true_values=["x"], false_values=["x"])


def test_job_file_options(tmp_path: Path) -> None:
    from zoopipe_hpc.jobs._specs import DataSpec

    spec = DataSpec.model_validate(
        {
            "format": "csv",
            "path": "m.csv",
            "options": {"null_values": ["NA"], "encoding": "latin-1", "true_values": ["y"]},
        }
    )
    adapter = spec.input_adapter(tmp_path)
    assert isinstance(adapter, CSVInputAdapter)
    assert (adapter.null_values, adapter.encoding, adapter.true_values) == (
        ["NA"],
        "latin-1",
        ["y"],
    )


class Maybe(BaseModel):
    id: int
    value: int | None
    note: str | None


_CELL = st.sampled_from(["NA", "", "null", "N/A", "0", "-3", "12", "x", " NA", "na", "1.0"])


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    cells=st.lists(st.tuples(_CELL, _CELL), min_size=1, max_size=25),
    markers=st.lists(st.sampled_from(["NA", "", "null", "N/A"]), max_size=3, unique=True),
)
def test_property_null_markers_match_pydantic(
    tmp_path_factory: pytest.TempPathFactory, cells: list[tuple[str, str]], markers: list[str]
) -> None:
    tmp_path = tmp_path_factory.mktemp("prop")
    source = tmp_path / "p.csv"
    lines = [f'{i},"{a}","{b}"' for i, (a, b) in enumerate(cells)]
    source.write_text("id,value,note\n" + "\n".join(lines) + "\n")
    expected_valid, expected_lines = [], []
    for i, (a, b) in enumerate(cells):
        row = {
            "id": str(i),
            "value": None if a in markers else a,
            "note": None if b in markers else b,
        }
        try:
            expected_valid.append(Maybe.model_validate(row).model_dump(mode="json"))
        except ValidationError:
            expected_lines.append(i + 2)
    for columnar in (True, False):
        valid, errors = _run(tmp_path, source, Maybe, columnar=columnar, null_values=markers)
        assert valid == expected_valid
        assert [e["line"] for e in errors] == expected_lines


def test_single_byte_files_are_split_by_byte_ranges(tmp_path: Path) -> None:
    names = [f"Zoë{i}" for i in range(3000)]
    source = tmp_path / "p.csv"
    source.write_bytes(
        ("id,nàme\n" + "".join(f"{i},{n}\n" for i, n in enumerate(names))).encode("cp1252")
    )
    shards = CSVInputAdapter(source, encoding="cp1252").split(3)
    read = []
    for shard in shards:
        assert isinstance(shard, CSVInputAdapter) and shard.byte_range is not None
        for batch in shard.batches():
            read.extend(batch.records)
    assert read == [{"id": str(i), "nàme": n} for i, n in enumerate(names)]


def test_decode_error_in_a_later_shard_names_its_line(tmp_path: Path) -> None:
    rows = [f"{i},caf\xe9\n".encode("cp1252") for i in range(3000)]
    rows[2500] = b"2500,\x81\n"
    data = b"id,name\n" + b"".join(rows)
    source = tmp_path / "bad.csv"
    source.write_bytes(data)
    messages = []
    for shard in CSVInputAdapter(source, encoding="cp1252").split(3):
        try:
            list(shard.batches())
        except InputError as exc:
            messages.append(str(exc))
    offset = data.index(b"\x81")
    assert messages == [
        f"{source}:2502: cannot decode the file as cp1252: bytes b'\\x81' at byte "
        f"{offset} (character maps to <undefined>)"
    ]


def test_utf16_is_one_shard(tmp_path: Path) -> None:
    source = tmp_path / "u.csv"
    source.write_bytes(("id,name\n" + "1,a\n" * 100).encode("utf-16"))
    shards = CSVInputAdapter(source, encoding="utf-16").split(3)
    assert len(shards) == 3
    counts = [sum(len(b.records) for b in shard.batches()) for shard in shards]
    assert counts == [100, 0, 0]


@pytest.mark.parametrize("encoding", ["latin-1", "utf-16"])
def test_skip_rows_and_fieldnames_with_an_encoding(tmp_path: Path, encoding: str) -> None:
    source = tmp_path / "s.csv"
    source.write_bytes("title é\n1,Zoë\n2,NA\n".encode(encoding))
    adapter = CSVInputAdapter(
        source, encoding=encoding, skip_rows=1, fieldnames=["id", "name"], null_values=["NA"]
    )
    rows, lines = [], []
    for shard in adapter.split(2):
        for batch in shard.batches():
            rows.extend(batch.records)
            lines.extend(batch.locate(i) for i in range(len(batch.records)))
    assert rows == [{"id": "1", "name": "Zoë"}, {"id": "2", "name": None}]
    assert lines == [2, 3]
