"""Compressed inputs that cannot be read as streams are refused before anything is read (issue
14): a ``.zst`` file without the zstandard module, and compressed bytes under a plain name."""

from __future__ import annotations

import gzip
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from zoopipe_hpc import CSVInputAdapter, JSONInputAdapter
from zoopipe_hpc.adapters import BaseInputAdapter
from zoopipe_hpc.errors import ConfigurationError, InputError

_CSV = b"id,name\n1,a\n2,b\n3,c\n"
_JSONL = b'{"id": 1}\n{"id": 2}\n'
_FIX = "pip install 'zoopipe_hpc[zstd]'"

Make = Callable[[object], BaseInputAdapter]
_ADAPTERS: list[tuple[Make, bytes, str]] = [
    (CSVInputAdapter, _CSV, ".csv"),
    (JSONInputAdapter, _JSONL, ".jsonl"),
]


def _zstd(data: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(data)


@pytest.fixture
def no_zstd(monkeypatch: pytest.MonkeyPatch) -> None:
    """The zstandard module as if not installed: not found, and not importable."""
    monkeypatch.setitem(sys.modules, "zstandard", None)


def _read_all(adapter: BaseInputAdapter) -> None:
    for shard in adapter.split(2):
        for _ in shard.batches():
            pass


@pytest.mark.parametrize(("make", "data", "suffix"), _ADAPTERS)
def test_a_zst_file_without_zstandard_is_refused_when_the_adapter_is_made(
    tmp_path: Path, no_zstd: None, make: Make, data: bytes, suffix: str
) -> None:
    path = tmp_path / f"in{suffix}.zst"
    path.write_bytes(_zstd(data))
    with pytest.raises(ConfigurationError, match="zstandard") as caught:
        make(path)
    assert str(path) in str(caught.value) and _FIX in str(caught.value)


@pytest.mark.parametrize(("make", "data", "suffix"), _ADAPTERS)
@pytest.mark.parametrize("form", ["directory", "glob", "list"])
def test_many_inputs_holding_a_zst_file_without_zstandard_are_refused(
    tmp_path: Path, no_zstd: None, make: Make, data: bytes, suffix: str, form: str
) -> None:
    folder = tmp_path / "raw"
    folder.mkdir()
    plain = folder / f"a{suffix}"
    plain.write_bytes(data)
    packed = folder / f"b{suffix}.zst"
    packed.write_bytes(_zstd(data))
    source: object = {
        "directory": folder,
        "glob": str(folder / f"*{suffix}*"),
        "list": [plain, packed],
    }[form]
    with pytest.raises(ConfigurationError, match="zstandard") as caught:
        make(source)
    assert str(packed) in str(caught.value) and _FIX in str(caught.value)


@pytest.mark.parametrize(("make", "data", "suffix"), _ADAPTERS)
def test_a_worker_without_zstandard_refuses_its_zst_shard_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make: Make, data: bytes, suffix: str
) -> None:
    # Planned where zstandard is installed, read where it is not (another node's Python).
    (tmp_path / f"a{suffix}").write_bytes(data)
    packed = tmp_path / f"b{suffix}.zst"
    packed.write_bytes(_zstd(data))
    first, second = make(tmp_path).split(2)
    monkeypatch.setitem(sys.modules, "zstandard", None)
    first.check()
    assert len(list(first.batches())) == 1
    with pytest.raises(ConfigurationError, match="zstandard") as caught:
        second.check()
    assert str(packed) in str(caught.value) and _FIX in str(caught.value)
    with pytest.raises(ConfigurationError, match="zstandard"):
        list(second.batches())


@pytest.mark.parametrize(("make", "data", "suffix"), _ADAPTERS)
@pytest.mark.parametrize(
    ("codec", "compress"),
    [("zstd", _zstd), ("gzip", gzip.compress)],
)
@pytest.mark.parametrize("zstd_installed", [True, False])
def test_compressed_bytes_under_a_plain_name_are_refused_not_read_as_text(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    make: Make,
    data: bytes,
    suffix: str,
    codec: str,
    compress: Callable[[bytes], bytes],
    zstd_installed: bool,
) -> None:
    path = tmp_path / f"in{suffix}"
    path.write_bytes(compress(data * 2000))  # large enough that split(2) would cut it
    if not zstd_installed:
        monkeypatch.setitem(sys.modules, "zstandard", None)
    adapter = make(path)
    for step in (adapter.check, lambda: adapter.split(2), lambda: list(adapter.batches())):
        with pytest.raises(InputError, match=f"{codec}-compressed") as caught:
            step()
        assert str(path) in str(caught.value) and "rename it" in str(caught.value)


@pytest.mark.parametrize(("make", "data", "suffix"), _ADAPTERS)
def test_a_misnamed_file_among_many_inputs_is_refused_by_split_and_read(
    tmp_path: Path, make: Make, data: bytes, suffix: str
) -> None:
    (tmp_path / f"a{suffix}").write_bytes(data * 1000)
    hidden = tmp_path / f"b{suffix}"
    hidden.write_bytes(_zstd(data * 1000))
    adapter = make(tmp_path)
    with pytest.raises(InputError, match="zstd-compressed") as caught:
        adapter.check()
    assert str(hidden) in str(caught.value)
    with pytest.raises(InputError, match="zstd-compressed"):
        _read_all(adapter)


@pytest.mark.parametrize(("make", "data", "suffix"), _ADAPTERS)
def test_a_compressed_file_named_for_another_codec_is_refused(
    tmp_path: Path, make: Make, data: bytes, suffix: str
) -> None:
    path = tmp_path / f"in{suffix}.zst"
    path.write_bytes(gzip.compress(data))
    with pytest.raises(InputError, match="gzip-compressed") as caught:
        list(make(path).batches())
    assert str(path) in str(caught.value)


def test_text_that_only_starts_like_bzip2_is_read_as_text(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(b"BZh9,name\n1,a\n")
    records = [r for batch in CSVInputAdapter(path).batches() for r in batch.records]
    assert records == [{"BZh9": "1", "name": "a"}]


@pytest.mark.parametrize(("make", "data", "suffix"), _ADAPTERS)
def test_zst_inputs_are_read_when_zstandard_is_installed(
    tmp_path: Path, make: Make, data: bytes, suffix: str
) -> None:
    path = tmp_path / f"in{suffix}.zst"
    path.write_bytes(_zstd(data))
    plain = tmp_path / f"plain{suffix}"
    plain.write_bytes(data)
    got = [r for batch in make(path).batches() for r in batch.records]
    assert got == [r for batch in make(plain).batches() for r in batch.records]
