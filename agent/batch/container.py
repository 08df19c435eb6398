"""The container around a batch: header, envelope, body framing, CRC, zstd.

::

    "BVRD" | version u8 | compression u8 | envelope length u32 BE
    | envelope (msgpack map, never compressed: batch id, vehicle, sequence and time range)
    | body (msgpack map, zstd-compressed or not)
    | CRC-32 of everything before it, u32 BE

msgpack here carries integers beyond its 64-bit range as ext type 1 (two's complement,
big-endian). What the body holds is for :mod:`.encoding` and :mod:`.decoding`.

Sizes: the envelope's counts may not exceed ``limits.MAX_RECORDS``, and they set how
big the body may be, uncompressed and unpacked (:mod:`.limits`); both are checked
before the body is decompressed or unpacked, when writing too.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Any

import msgpack
import zstandard

from agent.batch.ids import batch_id
from agent.batch.limits import (
    ENVELOPE_STRUCTURE,
    body_limit,
    check_structure,
    records_of,
    structure_limit,
    unpack_options,
)
from agent.batch.validate import as_map, count_of, fail, get
from agent.errors import BatchFormatError

MAGIC = b"BVRD"
FORMAT_VERSION = 1
COMPRESSION_NONE = 0
COMPRESSION_ZSTD = 1
HEADER = struct.Struct(">4sBBI")  # magic, version, compression, envelope length
TRAILER = struct.Struct(">I")  # CRC-32 (zlib/IEEE 802.3) of every byte before it
MAX_ENVELOPE_BYTES = 1 << 16
BIGINT_EXT = 1  # msgpack ext type: an integer beyond msgpack's range, two's complement BE
ZSTD_MIN_LEVEL = -(1 << 17)


@dataclass(frozen=True)
class Envelope:
    """What a batch says about itself outside the compressed body."""

    version: int
    compression: int
    batch_id: str
    vehicle_id: str
    seq_first: int
    seq_last: int
    time_first: float | None
    time_last: float | None
    dbc_fingerprint: str
    samples: int
    events: int
    frames: int
    size: int  # bytes of the whole batch

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": self.version,
            "compression": {COMPRESSION_NONE: "none", COMPRESSION_ZSTD: "zstd"}[self.compression],
            "batch_id": self.batch_id, "vehicle_id": self.vehicle_id,
            "seq_first": self.seq_first, "seq_last": self.seq_last,
            "time_first": self.time_first, "time_last": self.time_last,
            "dbc_fingerprint": self.dbc_fingerprint,
            "samples": self.samples, "events": self.events, "frames": self.frames,
            "bytes": self.size,
        }


# -- writing ---------------------------------------------------------------------------------


def build(envelope: dict[str, Any], body: dict[str, Any], level: int) -> bytes:
    """The whole batch: ``body`` packed and compressed at zstd ``level`` (0: stored)."""
    records = records_of(envelope["samples"], envelope["events"], envelope["frames"])
    packed_body = pack(body, "body")
    if len(packed_body) > body_limit(records):
        raise BatchFormatError(f"cannot encode the body: {len(packed_body)} bytes for "
                               f"{records} records, more than the {body_limit(records)} "
                               f"allowed")
    if level == 0:
        compression = COMPRESSION_NONE
    else:
        compression = COMPRESSION_ZSTD
        packed_body = zstandard.ZstdCompressor(
            level=level, write_content_size=True, write_checksum=False).compress(packed_body)
    return assemble(FORMAT_VERSION, compression, pack(envelope, "envelope"), packed_body)


def assemble(version: int, compression: int, envelope: bytes, body: bytes) -> bytes:
    head = HEADER.pack(MAGIC, version, compression, len(envelope)) + envelope + body
    return head + TRAILER.pack(zlib.crc32(head))


def pack(obj: Any, what: str) -> bytes:
    try:
        packed: bytes = msgpack.packb(obj, use_bin_type=True, default=pack_default)
    except (TypeError, ValueError, OverflowError, UnicodeError) as exc:
        raise BatchFormatError(f"cannot encode the {what}: {exc}") from None
    return packed


def pack_default(obj: Any) -> Any:
    if isinstance(obj, int) and not isinstance(obj, bool):
        size = (obj + (obj < 0)).bit_length() // 8 + 1
        return msgpack.ExtType(BIGINT_EXT, obj.to_bytes(size, "big", signed=True))
    raise TypeError(f"cannot encode {type(obj).__name__} {obj!r}")


# -- reading ---------------------------------------------------------------------------------


def read_envelope(data: bytes | bytearray | memoryview) -> Envelope:
    """The envelope of a batch, checked (header, CRC, envelope fields), body untouched."""
    return _read_parts(data)[0]


def read_body(data: bytes | bytearray | memoryview) -> tuple[Envelope, Any]:
    """The checked envelope and the body, decompressed and unpacked but not yet checked."""
    envelope, body_bytes = _read_parts(data)
    records = envelope.samples + envelope.events + envelope.frames  # checked: <= MAX_RECORDS
    limit = body_limit(records)
    if envelope.compression == COMPRESSION_ZSTD:
        body_bytes = _decompress(body_bytes, limit, records)
    elif len(body_bytes) > limit:
        raise BatchFormatError(f"body: {len(body_bytes)} bytes, more than the {limit} "
                               f"allowed for {records} records")
    return envelope, unpack(body_bytes, "body", limit, structure_limit(records))


def _read_parts(data: bytes | bytearray | memoryview) -> tuple[Envelope, bytes]:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise BatchFormatError(f"a batch is bytes, not {type(data).__name__}")
    data = bytes(data)
    minimum = HEADER.size + TRAILER.size
    if len(data) < minimum:
        raise BatchFormatError(f"too short for a batch: {len(data)} bytes (at least {minimum})")
    magic, version, compression, envelope_len = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise BatchFormatError(f"not a bavard batch: magic {magic!r}, expected {MAGIC!r}")
    if version != FORMAT_VERSION:
        raise BatchFormatError(f"unsupported batch format version {version} "
                               f"(this reader knows version {FORMAT_VERSION})")
    (stored_crc,) = TRAILER.unpack_from(data, len(data) - TRAILER.size)
    crc = zlib.crc32(memoryview(data)[: len(data) - TRAILER.size])
    if crc != stored_crc:
        raise BatchFormatError(f"CRC mismatch (stored {stored_crc:08x}, computed {crc:08x}): "
                               f"the batch is truncated or corrupted")
    if compression not in (COMPRESSION_NONE, COMPRESSION_ZSTD):
        raise BatchFormatError(f"unknown compression {compression} (0 none, 1 zstd)")
    body_start = HEADER.size + envelope_len
    if body_start > len(data) - TRAILER.size:
        raise BatchFormatError(f"envelope length {envelope_len} runs past the end of the batch "
                               f"({len(data)} bytes)")
    raw = unpack(data[HEADER.size:body_start], "envelope", MAX_ENVELOPE_BYTES,
                 ENVELOPE_STRUCTURE)
    return _decode_envelope(raw, version, compression, len(data)), data[body_start:-TRAILER.size]


def _decompress(body: bytes, limit: int, records: int) -> bytes:
    try:
        size = zstandard.frame_content_size(body)
    except zstandard.ZstdError as exc:
        raise BatchFormatError(f"body: not a zstd frame: {exc}") from None
    if size < 0:
        raise BatchFormatError("body: the zstd frame does not state its content size")
    if size > limit:
        raise BatchFormatError(f"body: {size} bytes uncompressed, more than the {limit} "
                               f"allowed for {records} records")
    try:
        out: bytes = zstandard.ZstdDecompressor().decompress(body, allow_extra_data=False)
    except zstandard.ZstdError as exc:
        raise BatchFormatError(f"body: zstd: {exc} (truncated or corrupted)") from None
    return out


def ext_hook(code: int, data: bytes) -> Any:
    if code == BIGINT_EXT and data:
        return int.from_bytes(data, "big", signed=True)
    raise BatchFormatError(f"unknown msgpack ext type {code} ({len(data)} bytes)")


def unpack(data: bytes, what: str, limit: int, structure: int) -> Any:
    """``data`` unpacked, once its size and the cost of what it holds (``structure``
    bytes at most, :func:`~agent.batch.limits.check_structure`) are known to fit."""
    if len(data) > limit:
        raise BatchFormatError(f"{what}: {len(data)} bytes, more than the {limit} allowed")
    check_structure(data, structure, what)
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True, ext_hook=ext_hook,
                               timestamp=0, use_list=True, **unpack_options())
    except BatchFormatError as exc:
        raise BatchFormatError(f"{what}: {exc}") from None
    except Exception as exc:  # msgpack raises many types: ExtraData, FormatError, ValueError...
        raise BatchFormatError(f"{what}: not valid msgpack: {type(exc).__name__}: {exc}"
                               ) from None


def _decode_envelope(raw: Any, version: int, compression: int, size: int) -> Envelope:
    w = "envelope"
    env = as_map(raw, w)
    vehicle = get(env, "vehicle_id", str, w)
    seq_first = get(env, "seq_first", int, w)
    seq_last = get(env, "seq_last", int, w)
    try:
        expected_id = batch_id(vehicle, seq_first, seq_last)
    except BatchFormatError as exc:
        fail(w, str(exc))
    stored_id = get(env, "batch_id", str, w)
    if stored_id != expected_id:
        fail(f"{w}.batch_id", f"{stored_id!r} does not match the vehicle id and sequence "
                              f"range (expected {expected_id!r})")
    times = [get(env, k, (float, type(None)), w) for k in ("time_first", "time_last")]
    if (times[0] is None) != (times[1] is None):
        fail(w, "time_first and time_last must both be nil or both be floats")
    samples, events, frames = (count_of(env, k, w) for k in ("samples", "events", "frames"))
    try:
        records_of(samples, events, frames)
    except BatchFormatError as exc:
        fail(w, str(exc))
    return Envelope(version, compression, stored_id, vehicle, seq_first, seq_last,
                    times[0], times[1], get(env, "dbc_fingerprint", str, w), samples, events,
                    frames, size)
