"""Byte layout of a progress record (private).

One record is exactly :data:`RECORD_SIZE` (4096) bytes, little-endian, and
lives in its own file.  The authoritative description, with the reasoning
behind every field, is ``docs/progress.md``; keep the two in sync.

::

    offset  size  type      field
    ------  ----  --------  ---------------------------------------------
         0     8  8s        magic  b"ZPPROG01"
         8     4  uint32    layout version (1)
        12     4  uint32    record size (4096)
        16     8  uint64    seq_begin
        24     4  uint32    state (ProgressState)
        28     4  uint32    pid
        32     8  uint64    total_processed
        40     8  uint64    success_count
        48     8  uint64    error_count
        56     8  uint64    ram_bytes
        64     8  float64   start_time  (epoch s, 0 = unset)
        72     8  float64   heartbeat   (epoch s)
        80     8  float64   end_time    (epoch s, 0 = unset)
        88     2  uint16    attempt_id length in bytes
        90     2  uint16    host length in bytes
        92     2  uint16    message length in bytes
        94     2  uint16    reserved (0)
        96    32  bytes     attempt_id (ascii, zero padded)
       128    64  bytes     host (utf-8, zero padded)
       192  2048  bytes     message (utf-8, zero padded)
      2240  1840  bytes     reserved, zero
      4080     4  uint32    crc32 of bytes [0, 4080)
      4084     4  uint32    reserved (0)
      4088     8  uint64    seq_end
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Final

from ..errors import ConfigurationError, RecordError

__all__ = [
    "ATTEMPT_ID_MAX",
    "CRC_END",
    "HOST_MAX",
    "LAYOUT_VERSION",
    "MAGIC",
    "MESSAGE_MAX",
    "BODY_END",
    "OFF_CRC",
    "OFF_SEQ_BEGIN",
    "OFF_SEQ_END",
    "RECORD_SIZE",
    "STATE_MAX",
    "U32_MAX",
    "U64_MAX",
    "RawRecord",
    "RecordError",
    "SEQ",
    "decode",
    "encode_into",
    "pack_sealed",
    "peek_sequence",
    "truncate_utf8",
]

RECORD_SIZE: Final = 4096
MAGIC: Final = b"ZPPROG01"
LAYOUT_VERSION: Final = 1

ATTEMPT_ID_MAX: Final = 32
HOST_MAX: Final = 64
MESSAGE_MAX: Final = 2048
U64_MAX: Final = (1 << 64) - 1
U32_MAX: Final = (1 << 32) - 1
#: Highest valid ``ProgressState`` value (kept here so the codec stays
#: independent of the public enum).
STATE_MAX: Final = 4

# Everything from the magic to the end of the message slot, one struct.
_BODY: Final = struct.Struct("<8sIIQIIQQQQdddHHHH32s64s2048s")
# crc32, reserved, seq_end
_TRAILER: Final = struct.Struct("<IIQ")
SEQ: Final = struct.Struct("<Q")

OFF_SEQ_BEGIN: Final = 16
BODY_END: Final = _BODY.size  # 2240
OFF_CRC: Final = RECORD_SIZE - _TRAILER.size  # 4080
CRC_END: Final = OFF_CRC
OFF_SEQ_END: Final = RECORD_SIZE - SEQ.size  # 4088

if BODY_END != 2240 or OFF_CRC != 4080 or OFF_SEQ_END != 4088:  # pragma: no cover
    raise ImportError("progress record layout constants are inconsistent")


@dataclass(frozen=True, slots=True)
class RawRecord:
    """Decoded field values, with the state as a plain integer."""

    state: int
    attempt_id: str
    pid: int
    host: str
    sequence: int
    total_processed: int
    success_count: int
    error_count: int
    ram_bytes: int
    start_time: float
    heartbeat: float
    end_time: float
    message: str


def truncate_utf8(text: str, limit: int) -> bytes:
    """Encode ``text`` as UTF-8, cut to at most ``limit`` bytes on a character boundary."""
    raw = text.encode("utf-8", errors="replace")
    if len(raw) <= limit:
        return raw
    # Dropping an incomplete trailing sequence keeps the result valid UTF-8.
    return raw[:limit].decode("utf-8", errors="ignore").encode("utf-8")


def encode_into(buf: bytearray, rec: RawRecord) -> None:
    """Write a complete, committed record (both sequence numbers, crc) into ``buf``.

    ``rec.attempt_id`` must be ASCII of at most :data:`ATTEMPT_ID_MAX` bytes;
    host and message are truncated to their slots.  Out-of-range values raise
    :class:`ValueError` (or :class:`struct.error`).
    """
    if len(buf) != RECORD_SIZE:
        raise ConfigurationError(f"buffer must be {RECORD_SIZE} bytes, got {len(buf)}")
    attempt = rec.attempt_id.encode("ascii")
    if len(attempt) > ATTEMPT_ID_MAX:
        raise ConfigurationError(f"attempt_id longer than {ATTEMPT_ID_MAX} bytes")
    if not 0 <= rec.state <= STATE_MAX:
        raise ConfigurationError(f"invalid state {rec.state}")
    if rec.sequence <= 0 or rec.sequence % 2 or rec.sequence > U64_MAX:
        raise ConfigurationError(
            f"a committed sequence must be even and positive, got {rec.sequence}"
        )
    buf[BODY_END:OFF_CRC] = bytes(OFF_CRC - BODY_END)
    pack_sealed(
        buf,
        rec.sequence,
        rec.state,
        rec.pid,
        rec.total_processed,
        rec.success_count,
        rec.error_count,
        rec.ram_bytes,
        rec.start_time,
        rec.heartbeat,
        rec.end_time,
        attempt,
        truncate_utf8(rec.host, HOST_MAX),
        truncate_utf8(rec.message, MESSAGE_MAX),
    )


def pack_sealed(
    buf: bytearray,
    sequence: int,
    state: int,
    pid: int,
    total_processed: int,
    success_count: int,
    error_count: int,
    ram_bytes: int,
    start_time: float,
    heartbeat: float,
    end_time: float,
    attempt: bytes,
    host: bytes,
    message: bytes,
) -> None:
    """Hot path of :func:`encode_into`: pack pre-encoded, pre-validated fields.

    The caller guarantees the string slots fit and that the reserved region
    ``[BODY_END, OFF_CRC)`` of ``buf`` is zero.  Fills the crc and both
    sequence numbers (``sequence``).
    """
    _BODY.pack_into(
        buf,
        0,
        MAGIC,
        LAYOUT_VERSION,
        RECORD_SIZE,
        sequence,
        state,
        pid,
        total_processed,
        success_count,
        error_count,
        ram_bytes,
        start_time,
        heartbeat,
        end_time,
        len(attempt),
        len(host),
        len(message),
        0,
        attempt,
        host,
        message,
    )
    crc = zlib.crc32(memoryview(buf)[:CRC_END])
    _TRAILER.pack_into(buf, OFF_CRC, crc, 0, sequence)


def peek_sequence(buf: bytes) -> int:
    """Highest sequence number found in ``buf``, valid record or not (0 if none)."""
    if len(buf) < RECORD_SIZE or buf[:8] != MAGIC:
        return 0
    (begin,) = SEQ.unpack_from(buf, OFF_SEQ_BEGIN)
    (end,) = SEQ.unpack_from(buf, OFF_SEQ_END)
    return max(int(begin), int(end))


def decode(buf: bytes) -> RawRecord:
    """Validate and decode one record; :class:`RecordError` if it cannot be trusted."""
    if len(buf) < RECORD_SIZE:
        raise RecordError(f"short record ({len(buf)} of {RECORD_SIZE} bytes)", retry=False)
    view = memoryview(buf)[:RECORD_SIZE]
    (
        magic,
        version,
        size,
        seq_begin,
        state,
        pid,
        total,
        success,
        errors,
        ram,
        start_time,
        heartbeat,
        end_time,
        attempt_len,
        host_len,
        message_len,
        _reserved,
        attempt_raw,
        host_raw,
        message_raw,
    ) = _BODY.unpack_from(view, 0)
    crc, _reserved2, seq_end = _TRAILER.unpack_from(view, OFF_CRC)
    if magic != MAGIC:
        if not any(view):
            raise RecordError("record never written (all zeros)", retry=False)
        raise RecordError(f"bad magic {bytes(magic)!r}", retry=True)
    if version != LAYOUT_VERSION:
        raise RecordError(f"unsupported layout version {version}", retry=False)
    if size != RECORD_SIZE:
        raise RecordError(f"unsupported record size {size}", retry=False)
    if seq_begin != seq_end:
        raise RecordError(f"torn: seq_begin {seq_begin} != seq_end {seq_end}", retry=True)
    if seq_begin == 0 or seq_begin % 2:
        raise RecordError(f"update in progress (sequence {seq_begin})", retry=True)
    actual_crc = zlib.crc32(view[:CRC_END])
    if actual_crc != crc:
        raise RecordError(f"checksum mismatch ({actual_crc:#010x} != {crc:#010x})", retry=True)
    # From here on the bytes are exactly what one writer committed; anything
    # odd is a writer bug or a foreign format, not a race.
    if state > STATE_MAX:
        raise RecordError(f"unknown state {state}", retry=False)
    if attempt_len > ATTEMPT_ID_MAX or host_len > HOST_MAX or message_len > MESSAGE_MAX:
        raise RecordError("string length out of range", retry=False)
    try:
        attempt_id = attempt_raw[:attempt_len].decode("ascii")
        host = host_raw[:host_len].decode("utf-8")
        message = message_raw[:message_len].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordError(f"undecodable string: {exc}", retry=False) from None
    return RawRecord(
        state=int(state),
        attempt_id=attempt_id,
        pid=int(pid),
        host=host,
        sequence=int(seq_begin),
        total_processed=int(total),
        success_count=int(success),
        error_count=int(errors),
        ram_bytes=int(ram),
        start_time=float(start_time),
        heartbeat=float(heartbeat),
        end_time=float(end_time),
        message=message,
    )
