"""Compression codecs of the text formats: gzip, bz2, xz and zstd, by name and by suffix.

Outputs are written frame by frame (:class:`CompressedWriter`): a part ends its first frame
after the CSV header, so that a merge can drop the header of every later part by skipping its
first frame (:func:`first_frame`), without decompressing or re-encoding the rows. Concatenated
frames (gzip members, bzip2 and xz streams, zstd frames) are a valid file of each codec.
"""

from __future__ import annotations

import bz2
import importlib.util
import io
import lzma
import os
import zlib
from pathlib import Path
from typing import IO, Any, Protocol, cast

from ..errors import ConfigurationError, OutputError

__all__ = [
    "CODECS",
    "LEVELS",
    "CompressedWriter",
    "compressed_suffix",
    "copy_from",
    "empty_frame",
    "first_frame",
    "open_decompressed",
    "output_codec",
    "output_level",
    "plain_path",
    "readable_codec",
    "sniff_codec",
    "zstd_available",
]

#: The codec names (``compression=`` values) and the suffix of each.
CODECS: dict[str, str] = {"gzip": ".gz", "bz2": ".bz2", "xz": ".xz", "zstd": ".zst"}
_BY_SUFFIX = {suffix: name for name, suffix in CODECS.items()}
#: Compressed bytes read at a time while looking for the end of a first frame.
_CHUNK = 1 << 16
_GZIP_WBITS = 16 + zlib.MAX_WBITS


def zstd_available() -> bool:
    """Whether the ``zstandard`` module (the ``[zstd]`` extra) is installed."""
    return importlib.util.find_spec("zstandard") is not None


def _zstd_missing(path: Path) -> ConfigurationError:
    return ConfigurationError(
        f"{path}: zstd compression needs the zstandard module: pip install 'zoopipe_hpc[zstd]'",
        path=str(path),
    )


#: The first bytes of a file of each codec (bzip2: ``BZh``, its block size digit, then the
#: magic of a first block or of the end of an empty stream).
_MAGIC: dict[str, tuple[bytes, ...]] = {
    "gzip": (b"\x1f\x8b",),
    "xz": (b"\xfd7zXZ\x00",),
    "zstd": (b"\x28\xb5\x2f\xfd",),
    "bz2": tuple(
        b"BZh" + bytes([digit]) + block
        for digit in range(ord("1"), ord("9") + 1)
        for block in (b"1AY&SY", b"\x17rE8P\x90")
    ),
}
_MAGIC_LENGTH = 10


def sniff_codec(path: Path) -> str | None:
    """The codec whose magic bytes ``path`` starts with, or None (a file that cannot be opened,
    too: opening it again names the error). None of these starts is UTF-8 text, or text a CSV
    or JSON file would begin with (the bzip2 one is ASCII, but ten bytes of it)."""
    try:
        with open(path, "rb") as f:
            start = f.read(_MAGIC_LENGTH)
    except OSError:
        return None
    for codec, starts in _MAGIC.items():
        if start.startswith(starts):
            return codec
    return None


def readable_codec(path: Path) -> str | None:
    """The codec an input named ``path`` is read through (its suffix's), or None for a plain
    file; a ``.zst`` input without the zstandard module is refused before anything is read,
    as an output is (a ConfigurationError naming the file and ``pip install``)."""
    codec = compressed_suffix(path)
    if codec == "zstd" and not zstd_available():
        raise _zstd_missing(path)
    return codec


def compressed_suffix(path: Path) -> str | None:
    """The codec ``path``'s last suffix names (``x.csv.gz``: ``"gzip"``), or None."""
    return _BY_SUFFIX.get(path.suffix.lower())


def plain_path(path: Path) -> Path:
    """``path`` without its compressed suffix (``x.json.gz``: ``x.json``)."""
    return path.with_suffix("") if compressed_suffix(path) is not None else path


def output_codec(path: Path, compression: str | None) -> str | None:
    """The codec an output writing ``path`` uses: ``"infer"`` takes the suffix's (ZooPipe's
    rule: ``.gz``, ``.bz2``, ``.xz``, ``.zst``; none for any other suffix), a codec name is
    that codec, None is no compression. A choice the suffix contradicts is refused, so that a
    file named ``x.csv.gz`` is never written uncompressed or in another codec."""
    inferred = compressed_suffix(path)
    if compression == "infer":
        codec = inferred
    elif compression is None or compression in CODECS:
        codec = compression
        if inferred is not None and codec != inferred:
            raise ConfigurationError(
                f"{path}: compression={compression!r} contradicts the suffix "
                f"{path.suffix!r}, which means {inferred!r}; name the file for what it holds"
            )
    else:
        raise ConfigurationError(
            f"{path}: compression must be 'infer', None or one of "
            f"{', '.join(repr(c) for c in CODECS)}, got {compression!r}"
        )
    if codec == "zstd" and not zstd_available():
        raise _zstd_missing(path)
    return codec


#: The levels each codec takes, and the one used when none is given (each tool's default:
#: ``gzip -6``, ``bzip2 -9``, ``xz -6``, ``zstd -3``).
LEVELS: dict[str, tuple[range, int]] = {
    "gzip": (range(0, 10), 6),
    "bz2": (range(1, 10), 9),
    "xz": (range(0, 10), 6),
    "zstd": (range(1, 23), 3),
}


def output_level(path: Path, codec: str | None, level: int | None) -> int | None:
    """``level`` checked for ``codec`` (None: the codec's default)."""
    if level is None:
        return None
    if codec is None:
        raise ConfigurationError(
            f"{path}: compression_level={level!r} needs a compression (a .gz, .bz2, .xz or .zst "
            "name, or compression=)"
        )
    allowed = LEVELS[codec][0]
    if not isinstance(level, int) or isinstance(level, bool) or level not in allowed:
        raise ConfigurationError(
            f"{path}: compression_level for {codec} must be a whole number from "
            f"{allowed.start} to {allowed.stop - 1}, got {level!r}"
        )
    return level


class _Compressor(Protocol):
    def compress(self, data: bytes, /) -> bytes: ...

    def flush(self) -> bytes: ...


class _ZstdFrame:
    """A zstd compressor with the ``compress`` / ``flush`` (end of frame) pair of the others."""

    def __init__(self, level: int) -> None:
        import zstandard

        self._zstd = zstandard
        self._obj = zstandard.ZstdCompressor(level=level).compressobj()

    def compress(self, data: bytes) -> bytes:
        return self._obj.compress(data)

    def flush(self) -> bytes:
        return self._obj.flush(self._zstd.COMPRESSOBJ_FLUSH_FINISH)


def _compressor(codec: str, level: int | None = None) -> _Compressor:
    """A new frame (member, stream) of ``codec``, at ``level`` (None: the codec's default)."""
    chosen = LEVELS[codec][1] if level is None else level
    if codec == "gzip":
        return zlib.compressobj(chosen, zlib.DEFLATED, _GZIP_WBITS)
    if codec == "bz2":
        return bz2.BZ2Compressor(chosen)
    if codec == "xz":
        return lzma.LZMACompressor(format=lzma.FORMAT_XZ, preset=chosen)
    return _ZstdFrame(chosen)


def empty_frame(codec: str) -> bytes:
    """A frame of ``codec`` holding no bytes: a valid, empty compressed file."""
    return _compressor(codec).flush()


class CompressedWriter:
    """A file written through ``codec`` (None: as it is), with a binary file's ``write``.

    ``end_frame()`` closes the frame written so far (if it holds anything): what follows is a
    new frame. ``close()`` ends the last frame (a file that got nothing still gets one empty
    frame, a valid compressed file), flushes and fsyncs the file.
    """

    def __init__(
        self,
        path: Path,
        codec: str | None,
        buffering: int = 1 << 20,
        level: int | None = None,
    ) -> None:
        self._file = open(path, "wb", buffering=buffering)  # noqa: SIM115 - closed in close()
        self.codec = codec
        self.level = level
        self._frame: _Compressor | None = None
        self._frames = 0

    @property
    def closed(self) -> bool:
        return self._file.closed

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    def write(self, data: Any) -> int:
        if self.codec is None:
            return self._file.write(data)
        if self._frame is None:
            self._frame = _compressor(self.codec, self.level)
        self._file.write(self._frame.compress(bytes(data)))
        return len(data)

    def end_frame(self) -> None:
        if self._frame is not None:
            self._file.write(self._frame.flush())
            self._frame = None
            self._frames += 1

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        if self._file.closed:
            return
        try:
            self.end_frame()
            if self.codec is not None and self._frames == 0:
                self._file.write(empty_frame(self.codec))
            self._file.flush()
            os.fsync(self._file.fileno())
        finally:
            self._file.close()

    def __enter__(self) -> CompressedWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Decompressor(Protocol):
    @property
    def eof(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...

    def decompress(self, data: bytes, /) -> bytes: ...


def _decompressor(codec: str) -> _Decompressor:
    """A decompressor of one frame of ``codec`` (it stops at the frame's end)."""
    if codec == "gzip":
        return zlib.decompressobj(_GZIP_WBITS)
    if codec == "bz2":
        return bz2.BZ2Decompressor()
    if codec == "xz":
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    import zstandard

    return cast(_Decompressor, zstandard.ZstdDecompressor().decompressobj())


def first_frame(path: Path, codec: str) -> tuple[int, bytes]:
    """(the compressed length of ``path``'s first frame, the bytes it holds); (0, b"") for an
    empty file. A file that ends inside its first frame is an OutputError naming it."""
    decompressor = _decompressor(codec)
    read, held = 0, []
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            read += len(chunk)
            try:
                held.append(decompressor.decompress(chunk))
            except (OSError, EOFError, ValueError, lzma.LZMAError, zlib.error) as exc:
                raise OutputError(
                    f"{path}: not a valid {codec} file: {exc}", path=str(path)
                ) from exc
            if decompressor.eof:
                return read - len(decompressor.unused_data), b"".join(held)
    if read == 0:
        return 0, b""
    raise OutputError(f"{path}: the {codec} file ends inside its first frame", path=str(path))


def open_decompressed(path: Path, codec: str) -> IO[bytes]:
    """``path`` opened for reading its decompressed bytes as one stream (every frame)."""
    if codec == "gzip":
        import gzip

        return cast(IO[bytes], gzip.open(path, "rb"))
    if codec == "bz2":
        return bz2.open(path, "rb")
    if codec == "xz":
        return lzma.open(path, "rb")
    import zstandard

    # Buffered: zstandard's reader reads every frame but cannot be iterated by lines.
    return io.BufferedReader(zstandard.open(path, "rb"), _CHUNK)


def copy_from(source: IO[bytes], out: IO[bytes], chunk: int = 1 << 20) -> int:
    """Copy the rest of ``source`` into ``out``; the bytes copied."""
    copied = 0
    while data := source.read(chunk):
        out.write(data)
        copied += len(data)
    return copied
