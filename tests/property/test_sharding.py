"""Sharding is exact: a split input yields exactly the records of the whole, in order.

Three layers, from cheap to expensive:

* ``split(w)`` of every input adapter, for every ``w`` in 1..8: the shards' records (and their
  line numbers, and the malformed input they report) concatenated are exactly those of the
  unsplit adapter, which are exactly what an independent reading with the standard ``csv`` /
  ``json`` modules (or ``pyarrow.parquet``) gives. No processes; the most examples.
* ``split_ranges`` / ``header_end`` directly, in both quoting modes (strict RFC 4180 and
  lenient, with stray quotes inside unquoted fields): every range parses on its own, with the
  csv module, to its share of the rows of the whole file, starting at the right line.
* ``PipeManager.parallelize_pipe(pipe, workers=w).run()`` through the default engine
  (``MultiProcessEngine``, fork): the merged outputs are byte-for-byte (or table-) equal to those
  of one ``Pipe.run()``, and hold exactly the records an oracle (stdlib reader + pydantic)
  expects, valid and invalid (``source``, ``line``, ``record``, ``errors``).

Example counts come from the Hypothesis profile (``tests/property/conftest.py``).
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import example, given, note, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from zoopipe_hpc.adapters import (
    BaseInputAdapter,
    BaseOutputAdapter,
    CSVInputAdapter,
    CSVOutputAdapter,
    JSONInputAdapter,
    JSONOutputAdapter,
    ParquetInputAdapter,
    ParquetOutputAdapter,
    _split,
)
from zoopipe_hpc.adapters._split import header_end, split_ranges
from zoopipe_hpc.manager import PipeManager
from zoopipe_hpc.pipe import Pipe
from zoopipe_hpc.report import PipeReport


class Row(BaseModel):
    id: int
    name: str
    score: float
    flag: bool


COLUMNS = ("id", "name", "score", "flag")
WORKERS = range(1, 9)
BOM = b"\xef\xbb\xbf"

_BUDGET = settings().max_examples  # of the loaded profile
CHEAP = settings(max_examples=_BUDGET)
MEDIUM = settings(max_examples=max(10, _BUDGET // 4))
SLOW = settings(max_examples=max(6, _BUDGET // 5))


# -- strategies: values --------------------------------------------------------------------

_PIECES = ["a", "Zz", " ", "é", "漢", "😀", ",", '"', '""', "\n", "\r\n", "\r", "'", "\t", "\\"]
texts = st.lists(st.one_of(st.sampled_from(_PIECES), st.characters(codec="utf-8")), max_size=8).map(
    "".join
)
ids = st.one_of(
    st.integers(-(10**6), 10**6).map(str),
    st.sampled_from(["", "x", "1.5", "漢", " 7", "+3", "0x1F", "1_000", "007"]),
)
scores = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.integers(-999, 999).map(str),
    st.sampled_from(["", "abc", "1,5", "-0", "1e400", "-inf", "😀", " 2.5 "]),
)
flags = st.sampled_from(
    ["true", "false", "True", "FALSE", "1", "0", "yes", "no", "on", "off", "maybe", "", "2"]
)
_CSV_VALUES = {"id": ids, "name": texts, "score": scores, "flag": flags}


# -- strategies: CSV ---------------------------------------------------------------------------


def _csv_field(value: str, quoted: bool) -> str:
    if quoted or any(c in value for c in ',"\r\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


@st.composite
def _csv_row(draw: st.DrawFn, columns: tuple[str, ...]) -> str:
    if draw(st.integers(0, 14)) == 0:
        # A row with the wrong number of fields: malformed input, not a record.
        count = draw(st.sampled_from([1, 2, 3, 5]))
        values = draw(st.lists(texts, min_size=count, max_size=count))
    else:
        values = [draw(_CSV_VALUES[column]) for column in columns]
    quoted = [draw(st.booleans()) for _ in values]
    if len(values) == 1:
        quoted[0] = True  # an unquoted lone empty field would be a blank line, not a row
    return ",".join(_csv_field(v, q) for v, q in zip(values, quoted, strict=True))


@st.composite
def csv_documents(draw: st.DrawFn) -> bytes:
    """CSV files: quoted commas, doubled quotes, CR LF / LF / CR inside quotes, CR LF or LF
    line ends, multi-byte UTF-8, empty fields, optional final newline and BOM, header only,
    0 bytes, any column order, some invalid values and some rows of the wrong width."""
    shape = draw(st.sampled_from(["rows"] * 8 + ["header only", "empty"]))
    if shape == "empty":
        return b""
    columns = tuple(draw(st.permutations(COLUMNS)))
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    lines = [",".join(_csv_field(c, draw(st.booleans())) for c in columns)]
    if shape == "rows":
        lines += draw(st.lists(_csv_row(columns), min_size=1, max_size=40))
    text = eol.join(lines) + (eol if draw(st.booleans()) else "")
    bom = BOM if draw(st.integers(0, 9)) == 0 else b""
    return bom + text.encode("utf-8")


# -- strategies: JSON Lines ----------------------------------------------------------------------

_JSON_VALUES = {
    "id": st.one_of(st.integers(-(10**6), 10**6), ids, st.sampled_from([1.0, 2.5, None, True])),
    "name": st.one_of(texts, texts, st.sampled_from([None, 7, ["x"]])),
    "score": st.one_of(
        st.floats(allow_nan=False, allow_infinity=False), st.integers(-999, 999), scores
    ),
    "flag": st.one_of(st.booleans(), flags, st.integers(0, 2)),
}


@st.composite
def _json_object(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.integers(0, 9)) == 0:
        keys = draw(st.lists(st.sampled_from(COLUMNS), unique=True))  # fields missing
    else:
        keys = list(draw(st.permutations(COLUMNS)))
    item: dict[str, Any] = {key: draw(_JSON_VALUES[key]) for key in keys}
    if draw(st.integers(0, 9)) == 0:
        item["extra"] = draw(texts)
    return item


@st.composite
def _json_line(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["object"] * 12 + ["blank", "not an object", "not JSON"]))
    if kind == "blank":
        return draw(st.sampled_from(["", " ", "\t", " \t  "]))
    if kind == "not JSON":
        return draw(st.sampled_from(["{", '{"id": }', "nope", "{'id': 1}", "[1,", '{"a":1}x']))
    value: Any = (
        draw(_json_object())
        if kind == "object"
        else draw(st.one_of(st.integers(), st.lists(st.integers(), max_size=2), texts, st.none()))
    )
    separators = draw(st.sampled_from([(",", ":"), (", ", ": ")]))
    text = json.dumps(value, ensure_ascii=draw(st.booleans()), separators=separators)
    pad = draw(st.sampled_from(["", " ", "\t"]))
    return pad + text + draw(st.sampled_from(["", " "]))


@st.composite
def jsonl_documents(draw: st.DrawFn) -> bytes:
    """JSON Lines: unicode (raw or escaped), escaped newlines in strings, blank lines, LF or
    CR LF per line, optional final newline, 0 bytes, invalid values, lines that are not
    objects or not JSON."""
    lines = draw(st.lists(_json_line(), max_size=40))
    if not lines:
        return b""
    ends = [draw(st.sampled_from(["\n", "\r\n"])) for _ in lines]
    if not draw(st.booleans()):
        ends[-1] = ""
    return "".join(line + end for line, end in zip(lines, ends, strict=True)).encode("utf-8")


# -- strategies: Parquet -------------------------------------------------------------------------


@st.composite
def parquet_tables(draw: st.DrawFn) -> tuple[pa.Table, int]:
    """A table (id as text so that some are invalid, nullable columns) and a small row group
    size, so that the file has several row groups; sometimes fewer than the workers."""
    n = draw(st.integers(0, 40))
    column = lambda values: st.lists(values, min_size=n, max_size=n)  # noqa: E731
    table = pa.table(
        {
            "id": pa.array(draw(column(ids)), pa.string()),
            "name": pa.array(draw(column(st.one_of(texts, st.none()))), pa.string()),
            "score": pa.array(draw(column(st.one_of(st.floats(allow_nan=False), st.none())))),
            "flag": pa.array(draw(column(st.one_of(st.booleans(), st.none()))), pa.bool_()),
        }
    )
    return table, draw(st.integers(1, 8))


# -- fixed examples: every hard case, in every run ---------------------------------------------

HARD_CSV = (
    "id,name,score,flag\r\n"
    '1,"a,b",1.5,true\r\n'  # a comma inside quotes
    '2,"say ""hi""",2,false\r\n'  # doubled quotes
    '3,"CR LF\r\nLF\nCR\rend",3e2,yes\r\n'  # line ends inside quotes
    "x,é漢😀,,no\r\n"  # multi-byte UTF-8; invalid id and score
    "4,,0,1\r\n"  # an empty field (a valid empty name)
    "oops\r\n"  # the wrong number of fields
    '5,"",-1,off'  # no final newline
).encode()
CSV_EXAMPLES = [
    b"",
    b"id,name,score,flag",
    b"id,name,score,flag\r\n",
    HARD_CSV,
    HARD_CSV.replace(b"\r\n", b"\n"),
    BOM + HARD_CSV + b"\r\n",
]
HARD_JSONL = (
    '{"id": 1, "name": "a\\nb\\r\\nc", "score": 1.5, "flag": true}\n'  # escaped newlines
    "\n"
    "   \r\n"
    '{"id": "x", "name": "é漢😀", "score": 2, "flag": "no"}\r\n'
    '{"id": 3, "name": "\\u00e9\\u6f22\\ud83d\\ude00", "score": "n/a", "flag": false}\n'
    "[1, 2]\n"
    "{broken\n"
    '{"id": 4, "name": "", "score": 0, "flag": 0}'
).encode()
JSONL_EXAMPLES = [b"", b"\n\n", HARD_JSONL, HARD_JSONL + b"\n"]
_SMALL = pa.table(
    {
        "id": pa.array(["1", "x", "3"], pa.string()),
        "name": pa.array(["é", None, "漢😀"], pa.string()),
        "score": pa.array([1.5, 2.0, None], pa.float64()),
        "flag": pa.array([True, False, True], pa.bool_()),
    }
)
PARQUET_EXAMPLES = [(_SMALL.slice(0, 0), 1), (_SMALL, 1), (_SMALL, 2)]


def _examples(values: list[Any], **fixed: Any) -> Callable[[Any], Any]:
    """``@example(...)`` for each value of the test's first argument (``fixed`` the others)."""

    def decorate(test: Any) -> Any:
        name = test.__code__.co_varnames[0]
        for value in values:
            test = example(**{name: value}, **fixed)(test)
        return test

    return decorate


# -- oracles -----------------------------------------------------------------------------------


class Entry(NamedTuple):
    """One unit of input in file order: a record (``kind == "row"``) or malformed input
    (``kind`` is the error type, ``payload`` what is known of it)."""

    line: int | None
    kind: str
    payload: Any


def csv_oracle(path: Path) -> list[Entry]:
    """The standard csv module: header row, then each row as a dict (or malformed if its
    width differs), with the line it starts on."""
    # utf-8-sig is utf-8 that drops a leading byte order mark, as pyarrow does.
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            return []
        entries = []
        line = reader.line_num + 1
        for fields in reader:
            if len(fields) == len(header):
                entries.append(Entry(line, "row", dict(zip(header, fields, strict=True))))
            else:
                entries.append(Entry(line, "csv_field_count", fields))
            line = reader.line_num + 1
        return entries


def jsonl_oracle(path: Path) -> list[Entry]:
    """The json module, one line at a time; lines of JSON whitespace only are skipped."""
    entries = []
    for number, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
        if not raw.strip(b" \t\r"):
            continue
        try:
            item = json.loads(raw)
        except ValueError:
            entries.append(Entry(number, "json_invalid", raw.decode("utf-8").rstrip("\r\n")))
            continue
        kind = "row" if isinstance(item, dict) else "json_not_object"
        entries.append(Entry(number, kind, item))
    return entries


def parquet_oracle(path: Path) -> list[Entry]:
    return [Entry(None, "row", row) for row in pq.read_table(path).to_pylist()]


def expected(entries: list[Entry], source: str) -> tuple[list[dict[str, Any]], list[Any]]:
    """(valid records as ``model_dump()``, error records) that a pipe must write."""
    valid: list[dict[str, Any]] = []
    errors: list[Any] = []
    for entry in entries:
        if entry.kind != "row":
            errors.append((source, entry.line, entry.kind, entry.payload))
            continue
        try:
            valid.append(Row.model_validate(entry.payload).model_dump())
        except ValidationError as exc:
            problems = json.loads(exc.json(include_url=False, include_context=False))
            errors.append((source, entry.line, entry.payload, problems))
    return valid, errors


_MALFORMED = {"csv_field_count", "json_invalid", "json_not_object"}


def _csv_fields(raw: str) -> list[str]:
    return next(csv.reader(io.StringIO(raw, newline="")), [])


def error_view(record: dict[str, Any], csv_raw: bool) -> Any:
    """An error record as ``expected()`` describes it."""
    kind = record["errors"][0]["type"] if record["errors"] else None
    if kind in _MALFORMED and set(record["record"]) == {"__raw__"}:
        raw = record["record"]["__raw__"]
        return (record["source"], record["line"], kind, _csv_fields(raw) if csv_raw else raw)
    return (record["source"], record["line"], record["record"], record["errors"])


# -- reading adapters directly --------------------------------------------------------------------


def read_entries(adapter: BaseInputAdapter) -> list[Entry]:
    """Records and malformed input of ``adapter``, in input order, with their lines."""
    entries: list[Entry] = []
    for batch in adapter.batches():
        assert batch.source == adapter.source
        rows = [Entry(batch.locate(i), "row", r) for i, r in enumerate(batch.records)]
        bad = [
            Entry(m["line"], m["errors"][0]["type"], m["record"]["__raw__"])
            for m in batch.malformed
        ]
        if bad:
            assert all(e.line is not None for e in rows + bad)
            rows = sorted(rows + bad, key=lambda e: e.line)
        entries += rows
    return entries


def as_csv_oracle(entries: list[Entry]) -> list[Entry]:
    """Malformed CSV rows carry their raw text; the oracle has their fields."""
    return [e._replace(payload=_csv_fields(e.payload)) if e.kind != "row" else e for e in entries]


def assert_shards_exact(whole: BaseInputAdapter, expected_entries: list[Entry]) -> None:
    for workers in WORKERS:
        shards = whole.split(workers)
        assert len(shards) == workers
        got = [entry for shard in shards for entry in read_entries(shard)]
        assert got == expected_entries, f"workers={workers}: {shards}"


def assert_ranges_tile(shards: list[BaseInputAdapter], start: int, end: int) -> None:
    ranges = [shard.byte_range for shard in shards]  # type: ignore[attr-defined]
    assert ranges[0].start == start and ranges[-1].end == end
    for before, after in zip(ranges, ranges[1:], strict=False):
        assert before.end == after.start


@contextmanager
def workspace() -> Iterator[Path]:
    """A fresh folder per example, removed with everything in it at the end of the example."""
    with tempfile.TemporaryDirectory(prefix="zoopipe-prop-") as folder:
        yield Path(folder)


# -- split(): cheap and exhaustive over workers ----------------------------------------------------


@CHEAP
@given(data=csv_documents())
@_examples(CSV_EXAMPLES)
def test_csv_shards_concatenate_to_the_whole(data: bytes) -> None:
    with workspace() as folder:
        path = folder / "in.csv"
        path.write_bytes(data)
        whole = CSVInputAdapter(path)
        entries = read_entries(whole)
        assert as_csv_oracle(entries) == csv_oracle(path)
        assert_shards_exact(whole, entries)
        if data:
            for workers in WORKERS:
                shards = whole.split(workers)
                assert_ranges_tile(shards, shards[0].byte_range.start, len(data))  # type: ignore[attr-defined]


@MEDIUM
@given(data=csv_documents(), outer=st.integers(1, 8), inner=st.integers(1, 8))
def test_csv_shards_of_shards_are_exact(data: bytes, outer: int, inner: int) -> None:
    with workspace() as folder:
        path = folder / "in.csv"
        path.write_bytes(data)
        whole = CSVInputAdapter(path)
        entries = read_entries(whole)
        got = [
            entry
            for shard in whole.split(outer)
            for part in shard.split(inner)
            for entry in read_entries(part)
        ]
        assert got == entries


_PREAMBLE_LINES = st.lists(st.sampled_from(['# "title', "", "a,b,c", 'x,"y', "x\r"]), max_size=3)


@CHEAP
@given(data=csv_documents(), preamble=_PREAMBLE_LINES)
def test_csv_skip_rows_and_fieldnames_shift_lines_and_nothing_else(
    data: bytes, preamble: list[str]
) -> None:
    """ZooPipe's ``skip_rows`` (lines before the header, stray quotes included) and
    ``fieldnames`` (no header line) read the same entries as the plain file, exactly sharded,
    with their lines moved by the lines added or taken away."""
    data = data.removeprefix(BOM)
    with workspace() as folder:
        plain = folder / "plain.csv"
        plain.write_bytes(data)
        entries = read_entries(CSVInputAdapter(plain))
        skipped = folder / "skipped.csv"
        skipped.write_bytes("".join(line + "\n" for line in preamble).encode() + data)
        shift = len(preamble)
        with_preamble = CSVInputAdapter(skipped, skip_rows=len(preamble))
        moved = [e._replace(line=e.line + shift if e.line else e.line) for e in entries]
        assert read_entries(with_preamble) == moved
        assert_shards_exact(with_preamble, moved)
        if b"\n" not in data:
            return
        header, rest = data.split(b"\n", 1)
        names = next(csv.reader([header.decode().rstrip("\r")]))
        headerless = folder / "headerless.csv"
        headerless.write_bytes(rest)
        adapter = CSVInputAdapter(headerless, fieldnames=names)
        up = [e._replace(line=e.line - 1 if e.line else e.line) for e in entries]
        assert read_entries(adapter) == up
        assert_shards_exact(adapter, up)


@CHEAP
@given(data=jsonl_documents(), batch_size=st.sampled_from([1, 3, 10_000]))
@_examples(JSONL_EXAMPLES, batch_size=3)
def test_jsonl_shards_concatenate_to_the_whole(data: bytes, batch_size: int) -> None:
    with workspace() as folder:
        path = folder / "in.jsonl"
        path.write_bytes(data)
        whole = JSONInputAdapter(path, batch_size=batch_size)
        entries = read_entries(whole)
        assert entries == jsonl_oracle(path)
        assert_shards_exact(whole, entries)
        for workers in WORKERS:
            assert_ranges_tile(whole.split(workers), 0, len(data))
        for shard in whole.split(3):
            assert [e for part in shard.split(2) for e in read_entries(part)] == read_entries(shard)


@MEDIUM
@given(items=st.lists(_json_object(), max_size=30), batch_size=st.sampled_from([1, 4, 10_000]))
def test_json_array_shards_concatenate_to_the_whole(
    items: list[dict[str, Any]], batch_size: int
) -> None:
    with workspace() as folder:
        path = folder / "in.json"
        path.write_text(json.dumps(items, ensure_ascii=False), encoding="utf-8")
        whole = JSONInputAdapter(path, batch_size=batch_size)
        entries = read_entries(whole)
        assert [e.payload for e in entries] == items
        assert_shards_exact(whole, entries)


@CHEAP
@given(spec=parquet_tables(), batch_size=st.sampled_from([1, 3, 65_536]))
@_examples(PARQUET_EXAMPLES, batch_size=2)
def test_parquet_shards_concatenate_to_the_whole(
    spec: tuple[pa.Table, int], batch_size: int
) -> None:
    table, row_group_size = spec
    with workspace() as folder:
        path = folder / "in.parquet"
        pq.write_table(table, path, row_group_size=row_group_size)
        groups = pq.ParquetFile(path).metadata.num_row_groups
        note(f"{table.num_rows} rows in {groups} row groups")
        whole = ParquetInputAdapter(path, batch_size=batch_size)
        entries = read_entries(whole)
        assert entries == parquet_oracle(path)
        assert_shards_exact(whole, entries)
        for workers in WORKERS:
            shards = whole.split(workers)
            owned = [g for shard in shards for g in shard.row_groups]  # type: ignore[attr-defined]
            assert owned == list(range(groups))  # every row group once, in order


# -- split_ranges() and header_end(), in both quoting modes ----------------------------------


@st.composite
def _lenient_field(draw: st.DrawFn) -> str:
    """A field as pyarrow and the csv module read it: quoted (maybe with text after the
    closing quote, quotes included) or unquoted, with quotes anywhere but at its start."""
    plain = st.text(st.sampled_from(["a", "é", "漢", " ", '"', "5"]), max_size=4)
    if draw(st.booleans()):
        inner = draw(
            st.lists(st.sampled_from(["a", ",", '""', "\n", "\r\n", "\r", "😀"]), max_size=5).map(
                "".join
            )
        )
        tail = draw(plain.filter(lambda s: not s.startswith('"'))) if draw(st.booleans()) else ""
        return '"' + inner + '"' + tail
    return draw(plain.filter(lambda s: not s.startswith('"')))


@st.composite
def lenient_csv(draw: st.DrawFn) -> bytes:
    rows = draw(
        st.lists(st.lists(_lenient_field(), min_size=2, max_size=3), min_size=1, max_size=30)
    )
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    text = eol.join(",".join(fields) for fields in rows) + (eol if draw(st.booleans()) else "")
    return text.encode("utf-8")


def _parse_with_lines(data: bytes, first_line: int, sig: bool) -> list[tuple[int, list[str]]]:
    """Rows of ``data`` with the lines they start on, by the csv module."""
    # utf-8-sig drops a byte order mark at the start of the file, as pyarrow does.
    text = data.decode("utf-8-sig" if sig else "utf-8")
    reader = csv.reader(io.StringIO(text, newline=""))
    out, line = [], first_line
    for fields in reader:
        out.append((line, fields))
        line = first_line + reader.line_num
    return out


@CHEAP
@given(
    doc=st.one_of(
        lenient_csv().map(lambda d: (d, False)), csv_documents().map(lambda d: (d, True))
    ),
    mapped=st.booleans(),
    chunk=st.sampled_from([_split.CHUNK, 7, 2]),
)
def test_split_ranges_cuts_only_between_records(
    doc: tuple[bytes, bool], mapped: bool, chunk: int
) -> None:
    """Each range parses on its own to its share of the rows of the whole, from the right line.

    Lenient quoting (``delimiter`` given) must be exact for any file the csv module reads;
    strict RFC 4180 quoting (``delimiter=None``) for files whose quotes are all in quoted
    fields (``rfc``). ``mapped``: a real file (memory-mapped) or an in-memory stream.
    ``chunk``: the read size of the sequential passes, small to put every CR LF, quote and
    doubled quote across a chunk boundary somewhere.
    """
    data, rfc = doc
    whole = _parse_with_lines(data, 1, sig=True)
    modes: list[bytes | None] = [b",", None] if rfc or b'"' not in data else [b","]
    default_chunk = _split.CHUNK
    _split.CHUNK = chunk
    try:
        with workspace() as folder:
            path = folder / "in.csv"
            path.write_bytes(data)
            with open(path, "rb") if mapped else io.BytesIO(data) as f:
                _check_ranges(f, data, whole, modes)
    finally:
        _split.CHUNK = default_chunk


def _check_ranges(
    f: BinaryIO, data: bytes, whole: list[tuple[int, list[str]]], modes: list[bytes | None]
) -> None:
    for delimiter in modes:
        head = header_end(f, len(data), b'"', delimiter)
        assert _parse_with_lines(data[:head], 1, sig=True) == whole[:1]
        for parts in WORKERS:
            ranges = split_ranges(f, 0, len(data), parts, 1, b'"', delimiter=delimiter)
            assert len(ranges) == parts
            assert [r.start for r in ranges[1:]] == [r.end for r in ranges[:-1]]
            assert ranges[0].start == 0 and ranges[-1].end == len(data)
            got = [
                row
                for r in ranges
                for row in _parse_with_lines(data[r.start : r.end], r.line, r.start == 0)
            ]
            assert got == whole, f"delimiter={delimiter!r}, ranges={ranges}"


# -- parallelize_pipe(): processes, merged outputs -------------------------------------------


def _run_single(pipe: Pipe) -> PipeReport:
    return pipe.run()


def _run_parallel(pipe: Pipe, workers: int) -> PipeReport:
    manager = PipeManager.parallelize_pipe(pipe, workers=workers)
    try:
        assert manager.pipe_count == workers
        succeeded = manager.run()
        assert succeeded, manager.error
        report = manager.report
    finally:
        manager.shutdown()
    progress = getattr(manager.engine, "progress_dir", None)
    assert progress is None or not progress.exists(), "engine left its progress folder"
    return report


def _read_jsonl(path: Path) -> list[Any]:
    # Not splitlines(): that also splits at U+0085, U+2028 and others JSON leaves unescaped.
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line]


InputFactory = Callable[[Path], BaseInputAdapter]


def _check_parallel_equals_single_and_oracle(
    folder: Path,
    make_input: Callable[[], BaseInputAdapter],
    oracle: list[Entry],
    workers: int,
    csv_raw: bool,
) -> None:
    source = make_input().source
    single_out, single_err = folder / "single.jsonl", folder / "single-errors.jsonl"
    par_out, par_err = folder / "parallel.jsonl", folder / "parallel-errors.jsonl"
    single = _run_single(
        Pipe(make_input(), JSONOutputAdapter(single_out), Row, JSONOutputAdapter(single_err))
    )
    parallel = _run_parallel(
        Pipe(make_input(), JSONOutputAdapter(par_out), Row, JSONOutputAdapter(par_err)), workers
    )
    # Parallel == single pipe, byte for byte.
    assert par_out.read_bytes() == single_out.read_bytes()
    assert par_err.read_bytes() == single_err.read_bytes()
    # Single pipe == independent reading + validation.
    valid, errors = expected(oracle, source)
    assert _read_jsonl(single_out) == valid
    assert [error_view(r, csv_raw) for r in _read_jsonl(single_err)] == errors
    for report in (single, parallel):
        assert (report.success_count, report.error_count) == (len(valid), len(errors))
        assert report.total_processed == len(valid) + len(errors)


@SLOW
@given(data=csv_documents(), workers=st.integers(1, 8))
@_examples(CSV_EXAMPLES, workers=8)
def test_parallel_csv_equals_single_pipe_and_csv_module(data: bytes, workers: int) -> None:
    with workspace() as folder:
        path = folder / "in.csv"
        path.write_bytes(data)
        _check_parallel_equals_single_and_oracle(
            folder, lambda: CSVInputAdapter(path), csv_oracle(path), workers, csv_raw=True
        )


@SLOW
@given(data=jsonl_documents(), workers=st.integers(1, 8))
@_examples(JSONL_EXAMPLES, workers=8)
def test_parallel_jsonl_equals_single_pipe_and_json_module(data: bytes, workers: int) -> None:
    with workspace() as folder:
        path = folder / "in.jsonl"
        path.write_bytes(data)
        _check_parallel_equals_single_and_oracle(
            folder, lambda: JSONInputAdapter(path), jsonl_oracle(path), workers, csv_raw=False
        )


@SLOW
@given(spec=parquet_tables(), workers=st.integers(1, 8))
@_examples(PARQUET_EXAMPLES, workers=8)
def test_parallel_parquet_equals_single_pipe_and_pyarrow(
    spec: tuple[pa.Table, int], workers: int
) -> None:
    table, row_group_size = spec
    with workspace() as folder:
        path = folder / "in.parquet"
        pq.write_table(table, path, row_group_size=row_group_size)
        _check_parallel_equals_single_and_oracle(
            folder, lambda: ParquetInputAdapter(path), parquet_oracle(path), workers, csv_raw=False
        )


_OUTPUTS: dict[str, Callable[[Path], BaseOutputAdapter]] = {
    "csv": CSVOutputAdapter,
    "parquet": ParquetOutputAdapter,
    "json": JSONOutputAdapter,  # a JSON array: parts are JSON Lines merged into one array
}


def _read_valid(path: Path, fmt: str) -> list[dict[str, Any]]:
    """Valid records read back from an output file, as ``model_dump()`` gives them."""
    if fmt == "parquet":
        return pq.read_table(path).to_pylist()
    if fmt == "json":
        return json.loads(path.read_text(encoding="utf-8"))
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        return [Row.model_validate(dict(zip(header, r, strict=True))).model_dump() for r in reader]


def _read_errors(path: Path, fmt: str) -> list[dict[str, Any]]:
    """Error records read back; tabular formats hold ``record`` and ``errors`` as JSON text."""
    if fmt == "json":
        records: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
        return records
    if fmt == "parquet":
        rows = pq.read_table(path).to_pylist()
    else:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        for row in rows:
            row["line"] = int(row["line"]) if row["line"] else None
    for row in rows:
        row["record"] = json.loads(row["record"])
        row["errors"] = json.loads(row["errors"])
    return rows


def _assert_same_file(a: Path, b: Path, fmt: str) -> None:
    if fmt == "parquet":
        assert pq.read_table(a).equals(pq.read_table(b))
    else:
        assert a.read_bytes() == b.read_bytes()


@SLOW
@given(
    doc=st.one_of(
        csv_documents().map(lambda d: ("csv", d)), jsonl_documents().map(lambda d: ("jsonl", d))
    ),
    fmt=st.sampled_from(sorted(_OUTPUTS)),
    workers=st.integers(1, 8),
)
@_examples([("csv", HARD_CSV), ("jsonl", HARD_JSONL)], fmt="csv", workers=8)
@_examples([("csv", HARD_CSV), ("jsonl", HARD_JSONL)], fmt="parquet", workers=8)
@_examples([("csv", b""), ("jsonl", HARD_JSONL)], fmt="json", workers=3)
def test_merged_csv_parquet_json_outputs_equal_single_pipe(
    doc: tuple[str, bytes], fmt: str, workers: int
) -> None:
    kind, data = doc
    with workspace() as folder:
        path = folder / f"in.{kind}"
        path.write_bytes(data)
        reader: InputFactory = CSVInputAdapter if kind == "csv" else JSONInputAdapter
        oracle = csv_oracle(path) if kind == "csv" else jsonl_oracle(path)
        make = _OUTPUTS[fmt]
        single_out, single_err = folder / f"single.{fmt}", folder / f"single-errors.{fmt}"
        par_out, par_err = folder / f"parallel.{fmt}", folder / f"parallel-errors.{fmt}"
        _run_single(Pipe(reader(path), make(single_out), Row, make(single_err)))
        _run_parallel(Pipe(reader(path), make(par_out), Row, make(par_err)), workers)
        _assert_same_file(par_out, single_out, fmt)
        _assert_same_file(par_err, single_err, fmt)
        valid, errors = expected(oracle, str(path))
        assert _read_valid(single_out, fmt) == valid
        got = [error_view(r, csv_raw=kind == "csv") for r in _read_errors(single_err, fmt)]
        assert got == errors
