"""Many input files behind one adapter: lists, directories, globs and compressed streams.

The files are expanded once, when the adapter is made, and sorted by path. ``split(n)`` cuts
the ordered files into ``n`` runs balanced by size: an uncompressed file larger than a
shard's share is cut into byte ranges by its own single-file ``split``; a compressed file
(``.gz``, ``.bz2``, ``.xz``, ``.zst``) is a stream that cannot be cut, so it is one piece.

The suffix decides: a compressed file is known by its name, before any file is opened (the
plan of the shards is made from the names and sizes). A ``.zst`` input without the
``zstandard`` module is refused when the adapter is made and again before a worker reads it;
a file holding compressed bytes under a plain name (``x.csv`` that is zstd) is refused by its
``check()``, which every read and ``split`` goes through, rather than read as text or cut.
"""

from __future__ import annotations

import glob
import lzma
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO

from ..errors import InputError
from ._codecs import CODECS, open_decompressed, readable_codec, sniff_codec
from .base import BaseInputAdapter, InputBatch, check_workers

__all__ = [
    "COMPRESSED_SUFFIXES",
    "MultiFileInput",
    "compression_of",
    "expand_sources",
    "one_path",
    "open_compressed",
    "refuse_hidden_compression",
]

#: The compressed suffixes read as streams (``.zst`` needs the ``zstandard`` module, and is
#: refused without it rather than read as text).
COMPRESSED_SUFFIXES: tuple[str, ...] = tuple(CODECS.values())

_GLOB_CHARS = frozenset("*?[")
_COPY_CHUNK = 1 << 20

Source = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


def compression_of(path: Path) -> str | None:
    """The compressed suffix of ``path`` (``".gz"``...), or None for a plain file."""
    suffix = path.suffix.lower()
    return suffix if suffix in COMPRESSED_SUFFIXES else None


def open_compressed(path: Path) -> IO[bytes]:
    """``path`` opened for reading its decompressed bytes as a stream (a ConfigurationError
    for a ``.zst`` file without the zstandard module)."""
    codec = readable_codec(path)
    return open(path, "rb") if codec is None else open_decompressed(path, codec)


def refuse_hidden_compression(path: Path, source: str) -> None:
    """An InputError if the file ``path``, named as plain text, starts with a codec's magic
    bytes: read as text it would give garbage records, and its byte ranges would cut a
    compressed stream. Its name must say what it holds."""
    codec = sniff_codec(path)
    if codec is not None:
        raise InputError(
            f"the file holds {codec}-compressed data but its name does not end in "
            f"{CODECS[codec]}; rename it {path.name}{CODECS[codec]} to read it as a "
            "compressed stream",
            path=source,
        )


def expand_sources(source: Source) -> tuple[str, list[Path]] | None:
    """(a display name, the files sorted by path) for a list, a directory, a glob or a
    compressed file; None for one plain path, which keeps the single-file adapter as it is.

    An empty directory or a glob matching nothing is an ``InputError`` naming it.
    """
    if isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        path = Path(text)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
            if not files:
                raise InputError("the input directory holds no files", path=text)
            return text, files
        if not path.exists() and _GLOB_CHARS & set(text):
            files = sorted(Path(p) for p in glob.glob(text) if Path(p).is_file())
            if not files:
                raise InputError("the input pattern matches no file", path=text)
            return text, files
        if compression_of(path) is not None:
            return text, [path]
        return None
    files = sorted(Path(os.fspath(p)) for p in source)
    if not files:
        raise InputError("the input list names no file", path="[]")
    if len(set(files)) != len(files):
        raise InputError("the input list names a file twice", path=str(files[0]))
    return f"[{', '.join(str(p) for p in files)}]", files


def _size(path: Path) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _piece_size(piece: BaseInputAdapter, fallback: int) -> int:
    r = getattr(piece, "byte_range", None)
    if r is not None:
        return max(0, int(r.end) - int(r.start))
    return fallback


class _Decompressed(BaseInputAdapter):
    """One compressed file: decompressed as a stream into a private copy, read by a
    single-file adapter, with the original file named in every batch and error record."""

    #: Not read ahead: the private copy is removed once its last batch is read, and the
    #: pipe may still look up the lines of that batch's rows in it.
    read_ahead = False

    def __init__(self, source: Path, make: Callable[[Path], BaseInputAdapter]) -> None:
        super().__init__(source)
        readable_codec(source)
        self.make = make

    def check(self) -> None:
        named = readable_codec(self.path)
        held = sniff_codec(self.path)
        if held is not None and held != named:
            raise InputError(
                f"the file is named {named} ({self.path.suffix}) but holds {held}-compressed "
                f"data; rename it for what it holds ({CODECS[held]})",
                path=self.source,
            )
        try:
            with open_compressed(self.path) as f:
                f.read(1)
        except (OSError, EOFError, ValueError, lzma.LZMAError) as exc:
            raise InputError(f"cannot read compressed input: {exc}", path=self.source) from exc

    def split(self, workers: int) -> list[BaseInputAdapter]:
        check_workers(workers)
        return [self, *(MultiFileInput(self.source, []) for _ in range(workers - 1))]

    def batches(self) -> Iterator[InputBatch]:
        self.check()
        suffix = compression_of(self.path) or ""
        with tempfile.TemporaryDirectory(prefix="zoopipe-in-") as folder:
            copy = Path(folder) / self.path.name[: len(self.path.name) - len(suffix)]
            try:
                with open_compressed(self.path) as src, open(copy, "wb") as dst:
                    shutil.copyfileobj(src, dst, _COPY_CHUNK)
            except (OSError, EOFError, ValueError, lzma.LZMAError) as exc:
                raise InputError(f"cannot decompress input: {exc}", path=self.source) from exc
            inner = self.make(copy)
            inner_source = inner.source
            for batch in inner.batches():
                batch.source = self.source
                for record in batch.malformed:
                    if record.get("source") == inner_source:
                        record["source"] = self.source
                yield batch


class MultiFileInput(BaseInputAdapter):
    """An ordered run of single-file pieces (whole files, byte ranges, compressed streams)
    read one after another; what a multi-file input and each of its shards read."""

    def __init__(self, name: str, pieces: Sequence[tuple[BaseInputAdapter, int]]) -> None:
        super().__init__(name)
        self.pieces = list(pieces)

    @classmethod
    def of_files(
        cls, name: str, files: Sequence[Path], make: Callable[[Path], BaseInputAdapter]
    ) -> MultiFileInput:
        pieces: list[tuple[BaseInputAdapter, int]] = []
        for path in files:
            piece: BaseInputAdapter = (
                _Decompressed(path, make) if compression_of(path) is not None else make(path)
            )
            pieces.append((piece, _size(path)))
        return cls(name, pieces)

    @property
    def read_ahead(self) -> bool:  # type: ignore[override]
        """Read ahead when every piece may be."""
        return bool(self.pieces) and all(piece.read_ahead for piece, _ in self.pieces)

    @property
    def paths(self) -> list[Path]:
        """Every file this input reads, in order (for a run's collision check)."""
        seen: dict[str, Path] = {}
        for piece, _ in self.pieces:
            seen.setdefault(str(piece.path), piece.path)
        return list(seen.values())

    def describe(self) -> str:
        return f"{type(self).__name__}({self.source!r}, {len(self.pieces)} pieces)"

    def check(self) -> None:
        for piece, _ in self.pieces:
            if not piece.path.exists():
                raise InputError("input file does not exist", path=piece.source)
            piece.check()

    def max_shards(self, wanted: int) -> int:
        room = 0
        for piece, size in self.pieces:
            if isinstance(piece, _Decompressed):
                room += 1
            else:
                room += piece.max_shards(wanted) if size > 0 else 0
            if room >= wanted:
                return wanted
        return max(1, room)

    def batches(self) -> Iterator[InputBatch]:
        for piece, _ in self.pieces:
            yield from piece.batches()

    def split(self, workers: int) -> list[BaseInputAdapter]:
        check_workers(workers)
        total = sum(size for _, size in self.pieces)
        if workers == 1 or total == 0:
            return [self, *(MultiFileInput(self.source, []) for _ in range(workers - 1))]
        share = total / workers
        cut: list[tuple[BaseInputAdapter, int]] = []
        for piece, size in self.pieces:
            k = min(workers, math.ceil(size / share)) if size > 0 else 1
            if k > 1 and not isinstance(piece, (_Decompressed, MultiFileInput)):
                parts = piece.split(k)
                cut.extend((part, _piece_size(part, size // k)) for part in parts)
            else:
                cut.append((piece, size))
        groups: list[list[tuple[BaseInputAdapter, int]]] = [[] for _ in range(workers)]
        done = 0
        for piece, size in cut:
            index = min(workers - 1, int((done + size / 2) * workers / total))
            groups[index].append((piece, size))
            done += size
        return [MultiFileInput(self.source, group) for group in groups]


def one_path(source: Source) -> str | os.PathLike[str]:
    """``source`` when it names one path (what :func:`expand_sources` left alone)."""
    if isinstance(source, (str, os.PathLike)):
        return source
    raise InputError("a list of inputs needs at least one file", path=str(source))
