"""read_fresh: the package's reader of state another node may have just replaced (real files;
the ESTALE/ENOENT a second client sees are faked here, and real in test_shared_fs.py)."""

from __future__ import annotations

import errno
import time
from pathlib import Path
from typing import Any

import pytest

from zoopipe_hpc.errors import ConfigurationError
from zoopipe_hpc.progress import _direct_io
from zoopipe_hpc.progress._direct_io import read_fresh


def test_reads_a_whole_file_of_any_size(tmp_path: Path) -> None:
    for size in (0, 1, 4095, 4096, 4097, (1 << 20) + 3, 3 << 20):
        path = tmp_path / f"f{size}"
        data = bytes(i % 251 for i in range(size))
        path.write_bytes(data)
        assert read_fresh(path) == data


def test_the_buffered_path_reads_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_direct_io, "O_DIRECT", 0)
    path = tmp_path / "f"
    path.write_bytes(b"x" * 10_000)
    assert read_fresh(path) == b"x" * 10_000


def _flaky(monkeypatch: pytest.MonkeyPatch, errors: list[int]) -> None:
    real = _direct_io._read_buffered

    def read(path: str, size: int | None) -> Any:
        if errors:
            code = errors.pop(0)
            raise OSError(code, "injected", path)
        return real(path, size)

    monkeypatch.setattr(_direct_io, "O_DIRECT", 0)
    monkeypatch.setattr(_direct_io, "_read_buffered", read)


def test_estale_and_enoent_of_a_listed_file_are_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "manifest.json"
    path.write_bytes(b"{}")
    errors = [errno.ESTALE, errno.ENOENT, errno.ESTALE]
    _flaky(monkeypatch, errors)
    assert read_fresh(path) == b"{}" and errors == []


def test_a_missing_file_is_not_waited_for(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(FileNotFoundError):
        read_fresh(tmp_path / "absent")
    assert time.monotonic() - started < _direct_io._ESTALE_DELAY


def test_may_be_missing_does_not_retry_enoent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "result.json"
    path.write_bytes(b"{}")
    _flaky(monkeypatch, [errno.ENOENT])
    with pytest.raises(FileNotFoundError):
        read_fresh(path, may_be_missing=True)


def test_estale_that_never_ends_and_other_errors_propagate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"1")
    _flaky(monkeypatch, [errno.ESTALE] * 3)
    with pytest.raises(OSError) as caught:
        read_fresh(path, attempts=3)
    assert caught.value.errno == errno.ESTALE
    _flaky(monkeypatch, [errno.EIO])
    with pytest.raises(OSError) as caught:
        read_fresh(path)
    assert caught.value.errno == errno.EIO
    with pytest.raises(ConfigurationError):
        read_fresh(path, attempts=0)
