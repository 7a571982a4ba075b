"""``compression=`` on the CSV and JSON outputs: what is inferred, what is refused, how parts
are named and merged (the rows themselves: the conformance suite's compressed classes)."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import pytest

from zoopipe_hpc import CSVOutputAdapter, JSONOutputAdapter
from zoopipe_hpc.adapters._codecs import first_frame
from zoopipe_hpc.commit._staging import StagingArea
from zoopipe_hpc.errors import ConfigurationError, OutputError


@pytest.mark.parametrize(
    ("name", "codec"),
    [
        ("x.csv.gz", "gzip"),
        ("x.csv.bz2", "bz2"),
        ("x.csv.xz", "xz"),
        ("x.csv.zst", "zstd"),
        ("x.CSV.GZ", "gzip"),
        ("x.csv", None),
        ("x.gzip", None),
    ],
)
def test_the_codec_is_inferred_from_the_suffix(name: str, codec: str | None) -> None:
    assert CSVOutputAdapter(name).compression == codec
    assert (
        JSONOutputAdapter(name.replace(".csv", ".jsonl").replace(".CSV", ".JSONL")).compression
        == codec
    )


def test_a_json_format_is_chosen_from_the_suffix_before_the_codec() -> None:
    assert JSONOutputAdapter("x.json.gz").format == "json"
    assert JSONOutputAdapter("x.jsonl.gz").format == "jsonl"
    assert JSONOutputAdapter("x.zst").format == "jsonl"
    assert JSONOutputAdapter("x.json.xz", format="jsonl").format == "jsonl"


@pytest.mark.parametrize("compression", [None, "zstd", "bz2"])
def test_a_choice_the_suffix_contradicts_is_refused(compression: str | None) -> None:
    for make in (CSVOutputAdapter, JSONOutputAdapter):
        with pytest.raises(ConfigurationError, match=r"x\.out\.gz.*contradicts the suffix"):
            make("x.out.gz", compression=compression)


def test_an_unknown_codec_is_refused_naming_the_file_and_the_choices() -> None:
    with pytest.raises(ConfigurationError, match=r"x\.csv: compression must be .*'gzip'.*'lz4'"):
        CSVOutputAdapter("x.csv", compression="lz4")


def test_an_explicit_codec_compresses_a_file_of_any_name(tmp_path: Path) -> None:
    adapter = CSVOutputAdapter(tmp_path / "x.csv", compression="gzip")
    assert adapter.compression == "gzip"
    assert CSVOutputAdapter(tmp_path / "x.csv", compression=None).compression is None
    staging = StagingArea(adapter.path)
    staging.create()
    writer = adapter.as_part(staging, 0, sole=True).open(None)
    writer.write([{"a": 1}])
    part = writer.commit()
    assert gzip.decompress(part.read_bytes()) == b'"a"\n1\n'


def test_the_codec_survives_clones_and_pickling(tmp_path: Path) -> None:
    for adapter in (
        CSVOutputAdapter(tmp_path / "x.txt", compression="xz"),
        JSONOutputAdapter(tmp_path / "x.txt", compression="bz2"),
    ):
        assert pickle.loads(pickle.dumps(adapter)).compression == adapter.compression
        assert adapter.numbered(1).compression == adapter.compression


def test_numbered_outputs_keep_both_suffixes() -> None:
    assert CSVOutputAdapter("d/x.csv.gz").numbered(2).path == Path("d/x.part-00002.csv.gz")
    assert JSONOutputAdapter("x.zst").numbered(0).path == Path("x.part-00000.zst")
    assert CSVOutputAdapter("d/x.v1.csv").numbered(3).path == Path("d/x.v1.part-00003.csv")


def test_a_part_to_merge_has_its_header_as_a_frame_of_its_own(tmp_path: Path) -> None:
    adapter = CSVOutputAdapter(tmp_path / "x.csv.gz")
    staging = StagingArea(adapter.path)
    staging.create()
    part = adapter.split(2, staging)[1]
    writer = part.open(None)
    writer.write([{"id": 1, "name": "a"}, {"id": 2, "name": "b"}])
    path = writer.commit()
    length, header = first_frame(path, "gzip")
    assert header == b'"id","name"\n'
    assert 0 < length < path.stat().st_size
    assert gzip.decompress(path.read_bytes()) == b'"id","name"\n1,"a"\n2,"b"\n'


def test_a_merge_refuses_a_part_whose_first_frame_is_not_a_header(tmp_path: Path) -> None:
    """A part not written by this adapter's parts (one frame of header and rows) would lose
    its rows if its first frame were skipped: the merge stops, naming the part."""
    adapter = CSVOutputAdapter(tmp_path / "x.csv.gz")
    good, odd = tmp_path / "a.csv.gz", tmp_path / "b.csv.gz"
    good.write_bytes(gzip.compress(b"id\n") + gzip.compress(b"1\n"))
    odd.write_bytes(gzip.compress(b"id\n2\n"))
    with pytest.raises(OutputError, match=r"b\.csv\.gz.*not its header line alone"):
        adapter.merge([good, odd], tmp_path / "merged.csv.gz")


def test_a_merge_refuses_a_truncated_part_naming_it(tmp_path: Path) -> None:
    adapter = CSVOutputAdapter(tmp_path / "x.csv.gz")
    cut = tmp_path / "cut.csv.gz"
    cut.write_bytes(gzip.compress(b"id\n" * 1000)[:20])
    with pytest.raises(OutputError, match=r"cut\.csv\.gz"):
        adapter.merge([cut], tmp_path / "merged.csv.gz")


def test_parts_with_nothing_merge_into_a_valid_empty_file(tmp_path: Path) -> None:
    """No schema and no rows: no header anywhere, and the merge is still a valid gzip file."""
    for adapter in (
        CSVOutputAdapter(tmp_path / "x.csv.gz"),
        JSONOutputAdapter(tmp_path / "x.jsonl.gz"),
    ):
        staging = StagingArea(adapter.path)
        staging.create()
        paths = []
        for part in adapter.split(3, staging):
            writer = part.open(None)
            paths.append(writer.commit())
        merged = tmp_path / f"merged{adapter.path.suffixes[0]}.gz"
        adapter.merge(paths, merged)
        assert merged.stat().st_size > 0
        assert gzip.decompress(merged.read_bytes()) == b""


@pytest.mark.parametrize(
    ("name", "bad"), [("x.csv.gz", 10), ("x.csv.bz2", 0), ("x.csv.zst", 23), ("x.csv.xz", "9")]
)
def test_a_level_the_codec_does_not_have_is_refused(name: str, bad: object) -> None:
    with pytest.raises(ConfigurationError, match=rf"{name}: compression_level for \w+ must be"):
        CSVOutputAdapter(name, compression_level=bad)  # type: ignore[arg-type]


def test_a_level_without_a_compression_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"x\.jsonl: compression_level=3 needs a compr"):
        JSONOutputAdapter("x.jsonl", compression_level=3)


def test_the_level_is_used_and_travels_to_the_parts(tmp_path: Path) -> None:
    """xz at level 0 and 9 give different files holding the same bytes; parts keep the level."""
    import lzma

    rows = [{"id": i, "text": f"row {i} " * (i % 13)} for i in range(3000)]
    written = {}
    for level in (0, 9):
        adapter = JSONOutputAdapter(tmp_path / f"x{level}.jsonl.xz", compression_level=level)
        staging = StagingArea(adapter.path)
        staging.create()
        part = adapter.split(2, staging)[1]
        assert part.compression_level == level  # type: ignore[attr-defined]
        assert pickle.loads(pickle.dumps(part)).compression_level == level
        writer = part.open(None)
        writer.write(rows)
        written[level] = writer.commit().read_bytes()
    assert written[0] != written[9]
    assert lzma.decompress(written[0]) == lzma.decompress(written[9])
