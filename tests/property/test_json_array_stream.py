"""The streaming JSON array reader against the json module, on random documents and chunk sizes.

The oracle is ``json.loads`` of the whole file for the values; for positions, the byte offset of
each element must be where ``raw_decode`` of the file's remaining text finds that same value,
and its line must be one plus the newlines before that offset. Chunks as small as one byte cut
every element, string, escape, number and multi-byte character somewhere.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

from hypothesis import given, note, settings
from hypothesis import strategies as st

from zoopipe_hpc import JSONInputAdapter
from zoopipe_hpc.adapters import _json_array
from zoopipe_hpc.adapters._json_array import read_elements

_BUDGET = settings().max_examples  # of the loaded profile

_text = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",)) | st.sampled_from('[]{},:"\\\n'),
    max_size=12,
)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=12,
)


@st.composite
def documents(draw: st.DrawFn) -> tuple[bytes, list[Any]]:
    """A JSON array in one of the layouts people write, with or without a BOM."""
    items = draw(st.lists(_values, max_size=25))
    indent = draw(st.sampled_from([None, 0, 1, 4, "\t"]))
    separators = draw(st.sampled_from([None, (",", ":"), (" , ", " : ")]))
    text = json.dumps(items, indent=indent, separators=separators, ensure_ascii=draw(st.booleans()))
    text = draw(st.sampled_from(["", " ", "\n", "\r\n "])) + text
    text += draw(st.sampled_from(["", "\n", " \n\t "]))
    bom = b"\xef\xbb\xbf" if draw(st.integers(0, 5)) == 0 else b""
    return bom + text.encode("utf-8"), json.loads(text)


@contextmanager
def _file(data: bytes) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="zoopipe-array-") as folder:
        path = Path(folder) / "in.json"
        path.write_bytes(data)
        yield path


@settings(max_examples=_BUDGET)
@given(document=documents(), chunk=st.sampled_from([1, 2, 3, 7, 64, 1 << 20]))
def test_elements_values_offsets_and_lines_match_the_json_module(
    document: tuple[bytes, list[Any]], chunk: int
) -> None:
    data, items = document
    with _file(data) as path:
        elements = list(
            read_elements(path, str(path), offsets_of=range(len(items)), chunk_bytes=chunk)
        )
    assert [e.value for e in elements] == items
    assert [e.index for e in elements] == list(range(len(items)))
    decoder = json.JSONDecoder()
    for element in elements:
        if element.offset is None:
            raise AssertionError(f"element {element.index} has no offset")
        note(f"element {element.index} at byte {element.offset}, line {element.line}")
        rest = data[element.offset :].decode("utf-8")
        assert decoder.raw_decode(rest)[0] == element.value
        assert element.line == data[: element.offset].count(b"\n") + 1


@settings(max_examples=max(10, _BUDGET // 4))
@given(
    document=documents(),
    workers=st.integers(1, 6),
    chunk=st.sampled_from([1, 5, 1 << 20]),
    batch_size=st.sampled_from([1, 3, 10_000]),
)
def test_shards_start_at_their_element_and_concatenate_to_the_whole(
    document: tuple[bytes, list[Any]], workers: int, chunk: int, batch_size: int
) -> None:
    data, items = document
    with _file(data) as path, mock.patch.object(_json_array, "CHUNK_BYTES", chunk):
        whole = JSONInputAdapter(path, batch_size=batch_size)
        shards = whole.split(workers)
        assert len(shards) == workers
        got: list[Any] = []
        for shard in shards:
            for batch in shard.batches():
                got += [("row", r) for r in batch.records]
                got += [("not", m["record"]["__raw__"]) for m in batch.malformed]
        # Within a batch records come before malformed ones; compare as multisets per kind
        # and check the order of each kind.
        rows = [v for k, v in got if k == "row"]
        others = [v for k, v in got if k == "not"]
        assert rows == [i for i in items if isinstance(i, dict)]
        assert others == [i for i in items if not isinstance(i, dict)]
        sizes = [s.record_range[1] - s.record_range[0] for s in shards]  # type: ignore[attr-defined]
        assert sum(sizes) == len(items) and max(sizes) - min(sizes) <= 1
