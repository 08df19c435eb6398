"""The batch wire format: versioned header, msgpack envelope, columnar msgpack body, zstd.

Byte by byte in ``docs/batch-format.md``; in short::

    "BVRD" | version u8 | compression u8 | envelope length u32 BE
    | envelope (msgpack map, never compressed: batch id, vehicle, sequence and time range)
    | body (msgpack map, zstd-compressed: the samples in columns, events, raw frames)
    | CRC-32 of everything before it, u32 BE

Samples are grouped per (channel, message) into rows (one row per timestamp,
typically one frame) and per (signal, unit) into columns with a presence
bitmap over the rows. Timestamps are integer microseconds, the first one
absolute, then the differences to the previous one minus the group's typical
step. Values: ints as deltas; floats that are ``raw * scale + offset`` of an
integer raw as raw deltas plus the scale and offset; anything else as itself.
Every reconstruction is checked while encoding, value by value, so decoding
gives back exactly what was encoded, down to NaN bits, ``-0.0`` and int
versus float.

:func:`decode` trusts nothing: whatever the bytes, it returns a Batch or
raises :class:`BatchFormatError` saying what is wrong and where.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import math
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any, NoReturn

import msgpack
import zstandard

from agent.batch.model import Batch, SignalKey, SignalMeta, time_range, total_order_key
from agent.errors import BavardError
from agent.frames import Event, Frame, Sample

MAGIC = b"BVRD"
FORMAT_VERSION = 1
COMPRESSION_NONE = 0
COMPRESSION_ZSTD = 1
HEADER = struct.Struct(">4sBBI")  # magic, version, compression, envelope length
TRAILER = struct.Struct(">I")  # CRC-32 (zlib/IEEE 802.3) of every byte before it
MAX_ENVELOPE_BYTES = 1 << 16
MAX_BODY_BYTES = 1 << 28  # uncompressed; a 60 s batch of a busy bus is a few MB
BIGINT_EXT = 1  # msgpack ext type: an integer beyond msgpack's range, two's complement BE

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
UINT64_MAX = (1 << 64) - 1
MAX_EXACT = 1 << 53  # every integer up to this converts to float64 exactly
MAX_CAN_ID = (1 << 29) - 1
MAX_FRAME_DATA = 64
FRAME_EXTENDED, FRAME_FD = 1, 2
ZSTD_MIN_LEVEL = -(1 << 17)

VEHICLE_ID_BYTES = 16  # truncated HMAC-SHA256: 128 bits, 32 hex digits
BATCH_ID_BYTES = 16


class BatchFormatError(BavardError):
    """Bytes that are not a valid batch of a known version, or a batch that cannot be encoded."""


# -- identifiers ---------------------------------------------------------------------------


def batch_id(vehicle_id: str, seq_first: int, seq_last: int) -> str:
    """32 hex digits: the first 16 bytes of SHA-256 over ``"bavard-batch" 0x00 vehicle_id
    0x00 seq_first (u64 BE) seq_last (u64 BE)``. The same records give the same id on
    every retry, so the receiver can drop duplicates."""
    _check_seq(seq_first, seq_last)
    digest = hashlib.sha256(b"bavard-batch\0" + vehicle_id.encode("utf-8") + b"\0"
                            + seq_first.to_bytes(8, "big") + seq_last.to_bytes(8, "big"))
    return digest.digest()[:BATCH_ID_BYTES].hex()


def pseudonymous_vehicle_id(vin: str, secret: bytes) -> str:
    """32 hex digits: the first 16 bytes of HMAC-SHA256(key=secret,
    msg="bavard-vehicle" 0x00 VIN), the VIN stripped of surrounding blanks and upper-cased.

    Without ``secret`` (per fleet or per owner, kept on the box) nobody can link the id to
    the VIN, not even by trying every VIN; with it, the same vehicle always gets the same id.
    """
    if not isinstance(secret, bytes | bytearray) or len(secret) < 16:
        raise ValueError("the pseudonym secret must be at least 16 bytes")
    normalized = vin.strip().upper()
    if not normalized:
        raise ValueError("empty VIN")
    mac = hmac.new(bytes(secret), b"bavard-vehicle\0" + normalized.encode("utf-8"),
                   hashlib.sha256)
    return mac.digest()[:VEHICLE_ID_BYTES].hex()


def dbc_fingerprint(paths: Iterable[str | PathLike[str]]) -> str:
    """64 hex digits: SHA-256 over the sorted SHA-256 digests (32 bytes each) of the
    files' bytes. Independent of the order and names of the files; any changed byte
    (even a comment or a line ending) changes it."""
    digests = []
    for path in paths:
        try:
            digests.append(hashlib.sha256(Path(path).read_bytes()).digest())
        except OSError as exc:
            raise BavardError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return hashlib.sha256(b"".join(sorted(digests))).hexdigest()


def _check_seq(seq_first: Any, seq_last: Any) -> None:
    for name, value in (("seq_first", seq_first), ("seq_last", seq_last)):
        if type(value) is not int or not 0 <= value <= UINT64_MAX:
            raise BatchFormatError(f"{name} must be an int in 0..2**64-1, not {value!r}")
    if seq_first > seq_last:
        raise BatchFormatError(f"seq_first {seq_first} > seq_last {seq_last}")


# -- the envelope ----------------------------------------------------------------------------


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


# -- encode ----------------------------------------------------------------------------------


def encode(batch: Batch, level: int = 3) -> bytes:
    """The batch as bytes. ``level``: zstd level (1..22, negative = faster);
    0 stores the body uncompressed. Raises BatchFormatError for a batch that does not
    fit the format (a timestamp that is not a number, a CAN id over 29 bits...)."""
    if type(level) is not int or not ZSTD_MIN_LEVEL <= level <= zstandard.MAX_COMPRESSION_LEVEL:
        raise ValueError(f"zstd level must be an int in {ZSTD_MIN_LEVEL}..22, not {level!r}")
    _check_seq(batch.seq_first, batch.seq_last)
    for name in ("vehicle_id", "dbc_fingerprint"):
        if not isinstance(getattr(batch, name), str):
            raise BatchFormatError(f"{name} must be a str")
    body = {
        **_encode_samples(batch.samples, batch.signals),
        "signals": _encode_signals(batch.signals),
        "events": _encode_events(batch.events),
        "frames": _encode_frames(batch.frames),
    }
    span = time_range(itertools.chain(  # every timestamp was checked while encoding
        (s.timestamp for s in batch.samples), (e.timestamp for e in batch.events),
        (f.timestamp for f in batch.frames)))
    envelope = {
        "batch_id": batch_id(batch.vehicle_id, batch.seq_first, batch.seq_last),
        "vehicle_id": batch.vehicle_id,
        "seq_first": batch.seq_first,
        "seq_last": batch.seq_last,
        "time_first": None if span is None else span[0],
        "time_last": None if span is None else span[1],
        "dbc_fingerprint": batch.dbc_fingerprint,
        "samples": len(batch.samples),
        "events": len(batch.events),
        "frames": len(batch.frames),
    }
    packed_body = _pack(body, "body")
    if level == 0:
        compression = COMPRESSION_NONE
    else:
        compression = COMPRESSION_ZSTD
        packed_body = zstandard.ZstdCompressor(
            level=level, write_content_size=True, write_checksum=False).compress(packed_body)
    return _assemble(FORMAT_VERSION, compression, _pack(envelope, "envelope"), packed_body)


def _assemble(version: int, compression: int, envelope: bytes, body: bytes) -> bytes:
    head = HEADER.pack(MAGIC, version, compression, len(envelope)) + envelope + body
    return head + TRAILER.pack(zlib.crc32(head))


def _pack(obj: Any, what: str) -> bytes:
    try:
        packed: bytes = msgpack.packb(obj, use_bin_type=True, default=_pack_default)
    except (TypeError, ValueError, OverflowError, UnicodeError) as exc:
        raise BatchFormatError(f"cannot encode the {what}: {exc}") from None
    return packed


def _pack_default(obj: Any) -> Any:
    if isinstance(obj, int) and not isinstance(obj, bool):
        size = (obj + (obj < 0)).bit_length() // 8 + 1
        return msgpack.ExtType(BIGINT_EXT, obj.to_bytes(size, "big", signed=True))
    raise TypeError(f"cannot encode {type(obj).__name__} {obj!r}")


def _float(x: Any, what: str) -> float:
    if type(x) is float:
        return x
    if isinstance(x, int | float) and not isinstance(x, bool):
        try:
            return float(x)
        except OverflowError:
            pass
    raise BatchFormatError(f"{what} must be a float, not {x!r}")


def _same(a: float, b: float) -> bool:
    """Bit for bit equal (NaN never, ``-0.0`` is not ``0.0``), for a and b floats."""
    return a == b and (a != 0.0 or math.copysign(1.0, a) == math.copysign(1.0, b))


def _encode_times(timestamps: Sequence[float]) -> dict[str, Any]:
    """``time_us``: [first µs, step, (delta - step)...] when every timestamp is exactly
    ``µs / 1e6``; otherwise ``time_s``: the float64s themselves."""
    us: list[int] = []
    for ts in timestamps:
        if not math.isfinite(ts) or abs(ts) > 9e9:
            return {"time_s": list(timestamps)}
        guess = round(ts * 1e6)
        for u in (guess, guess - 1, guess + 1):
            if _same(u / 1e6, ts):
                us.append(u)
                break
        else:
            return {"time_s": list(timestamps)}
    if not us:
        return {"time_us": []}
    deltas = [b - a for a, b in itertools.pairwise(us)]
    step = sorted(deltas)[len(deltas) // 2] if deltas else 0
    return {"time_us": [us[0], step, *(d - step for d in deltas)]}


class _Column:
    __slots__ = ("flags", "index", "labels", "last_row", "rows", "signal", "unit", "values")

    def __init__(self, index: int, signal: str, unit: str) -> None:
        self.index, self.signal, self.unit = index, signal, unit
        self.last_row = -1
        self.rows: list[int] = []
        self.values: list[Any] = []
        self.labels: list[Any] = []
        self.flags: list[Any] = []


class _Group:
    __slots__ = ("channel", "columns", "index", "message", "times")

    def __init__(self, index: int, channel: str, message: str) -> None:
        self.index, self.channel, self.message = index, channel, message
        self.times: list[float] = []
        self.columns: dict[tuple[str, str], _Column] = {}


def _same_time(row_ts: float, ts: float) -> bool:
    """``_same`` for the hot loop: also True for two NaNs with the same bits."""
    if row_ts == ts:
        return ts != 0.0 or math.copysign(1.0, ts) == math.copysign(1.0, row_ts)
    return ts != ts and row_ts != row_ts and struct.pack(">d", ts) == struct.pack(">d", row_ts)


def _encode_samples(samples: Sequence[Sample], signals: dict[SignalKey, SignalMeta]
                    ) -> dict[str, Any]:
    """``groups`` (and ``order`` when the samples are not in canonical order)."""
    groups: dict[tuple[str, str], _Group] = {}
    # (group, row, column, index in column) of each sample, in the batch's order
    positions: list[tuple[int, int, int, int]] = []
    n = 0
    try:
        for n, s in enumerate(samples):  # noqa: B007  (n names the sample in errors)
            ts = s[0]
            if type(ts) is not float:
                ts = _float(ts, "timestamp")
            group = groups.get((s[1], s[2]))
            if group is None:
                _check_str(s[1], "channel")
                _check_str(s[2], "message")
                group = groups[(s[1], s[2])] = _Group(len(groups), s[1], s[2])
            column = group.columns.get((s[3], s[5]))
            if column is None:
                _check_str(s[3], "signal")
                _check_str(s[5], "unit")
                column = group.columns[(s[3], s[5])] = _Column(len(group.columns), s[3], s[5])
            times = group.times
            row = len(times) - 1
            if row < 0 or column.last_row == row or not _same_time(times[row], ts):
                times.append(ts)
                row += 1
            column.last_row = row
            positions.append((group.index, row, column.index, len(column.rows)))
            column.rows.append(row)
            column.values.append(s[4])
            column.labels.append(s[6])
            column.flags.append(s[7])
    except BatchFormatError as exc:
        raise BatchFormatError(f"sample {n}: {exc}") from None
    except (TypeError, IndexError):
        raise BatchFormatError(f"sample {n}: not a Sample: {samples[n]!r}") from None
    group_list = list(groups.values())
    encoded: list[dict[str, Any]] = []
    for group in group_list:
        try:
            encoded.append(_encode_group(group, signals))
        except BatchFormatError as exc:
            raise BatchFormatError(f"{group.channel} {group.message}: {exc}") from None
    out: dict[str, Any] = {"groups": encoded}
    canonical = _canonical_order([g.times for g in group_list],
                                 [[c.rows for c in g.columns.values()] for g in group_list])
    if canonical != positions:
        index = {pos: i for i, pos in enumerate(canonical)}
        out["order"] = _deltas([index[pos] for pos in positions])
    return out


def _check_str(x: Any, what: str) -> None:
    if type(x) is not str:
        raise BatchFormatError(f"{what} must be a str, not {x!r}")


def _sort_key(times: list[float]) -> Callable[[float], Any]:
    """Sorting by float is IEEE totalOrder unless there is a NaN or a zero."""
    if any(t != t or t == 0.0 for t in times):
        return total_order_key
    return float


def _canonical_order(times: list[list[float]], column_rows: list[list[list[int]]]
                     ) -> list[tuple[int, int, int, int]]:
    """(group, row, column, index in column) of every sample in the order decode returns
    them: rows by (timestamp in IEEE totalOrder, group, row); in a row, by column."""
    members: list[list[list[tuple[int, int, int, int]]]] = []
    for g, group_times in enumerate(times):
        rows: list[list[tuple[int, int, int, int]]] = [[] for _ in group_times]
        for c, col_rows in enumerate(column_rows[g]):
            for k, r in enumerate(col_rows):
                rows[r].append((g, r, c, k))
        members.append(rows)
    key = _sort_key([t for group_times in times for t in group_times])
    keyed = sorted((key(ts), g, r)
                   for g, group_times in enumerate(times) for r, ts in enumerate(group_times))
    return [pos for _, g, r in keyed for pos in members[g][r]]


def _encode_group(group: _Group, signals: dict[SignalKey, SignalMeta]) -> dict[str, Any]:
    n = len(group.times)
    columns = []
    for column in group.columns.values():
        col: dict[str, Any] = {"signal": column.signal, "unit": column.unit}
        if len(column.rows) < n:
            bitmap = bytearray((n + 7) // 8)
            for r in column.rows:
                bitmap[r >> 3] |= 1 << (r & 7)
            col["present"] = bytes(bitmap)
        meta = signals.get((group.channel, group.message, column.signal))
        col.update(_encode_values(column.values, meta))
        col.update(_encode_labels(column.values, column.labels))
        if not all(type(f) is int and INT64_MIN <= f <= INT64_MAX for f in column.flags):
            bad = next(f for f in column.flags if not (type(f) is int
                                                       and INT64_MIN <= f <= INT64_MAX))
            raise BatchFormatError(f"{column.signal}: flags must be int64, not {bad!r}")
        if any(column.flags):
            nonzero = [i for i, f in enumerate(column.flags) if f]
            col["flag_index"] = nonzero
            col["flag_value"] = [column.flags[i] for i in nonzero]
        columns.append(col)
    return {"channel": group.channel, "message": group.message, "rows": n,
            **_encode_times(group.times), "columns": columns}


def _deltas(xs: Sequence[int]) -> list[int]:
    return [xs[0], *(b - a for a, b in itertools.pairwise(xs))] if xs else []


def _encode_values(values: list[Any], meta: SignalMeta | None) -> dict[str, Any]:
    """Kind ``int`` (deltas), ``scaled`` (raw deltas, scale, offset) or ``plain``; ``int``
    and ``scaled`` take the values they cannot hold (at most half) as exceptions."""
    n = len(values)
    if all(type(v) is int for v in values):
        encoded = _int_deltas(values)
        if len(encoded["exc_index"]) * 2 <= n:
            return {"kind": "int", **_drop_empty(encoded)}
    elif all(type(v) is float for v in values):
        best: dict[str, Any] | None = None
        for scale, offset in _scale_candidates(values, meta):
            scaled = _scaled(values, scale, offset, n // 2)
            if scaled is not None and (
                    best is None or len(scaled["exc_index"]) < len(best["exc_index"])):
                best = scaled
                if not best["exc_index"]:
                    break
        if best is not None:
            return {"kind": "scaled", **_drop_empty(best)}
    if not all(type(v) in (int, float, bool) for v in values):
        bad = next(v for v in values if type(v) not in (int, float, bool))
        raise BatchFormatError(f"a value must be an int or a float, not {bad!r}")
    return {"kind": "plain", "values": values}


def _drop_empty(encoded: dict[str, Any]) -> dict[str, Any]:
    if not encoded["exc_index"]:
        del encoded["exc_index"], encoded["exc_value"]
    return encoded


def _int_deltas(values: list[int]) -> dict[str, Any]:
    stored: list[int] = []
    exc_index: list[int] = []
    prev = 0
    for i, v in enumerate(values):
        d = v - prev
        if INT64_MIN <= v <= INT64_MAX and INT64_MIN <= d <= INT64_MAX:
            stored.append(d)
            prev = v
        else:  # the previous value again (delta 0), the real one in the exceptions
            stored.append(0)
            exc_index.append(i)
    return {"values": stored, "exc_index": exc_index,
            "exc_value": [values[i] for i in exc_index]}


def _scale_candidates(values: list[float], meta: SignalMeta | None
                      ) -> Iterator[tuple[float, float]]:
    """(scale, offset) pairs to try, best guess first: the DBC's; without one (or when it
    does not fit), the smallest step between the first values, the power of ten below it;
    then 1."""
    tried: set[tuple[float, float]] = set()

    def fresh(candidate: tuple[float, float]) -> bool:
        new = candidate not in tried and candidate[0] != 0 and all(
            math.isfinite(x) for x in candidate)
        tried.add(candidate)
        return new

    if meta is not None and isinstance(meta.scale, int | float) and isinstance(
            meta.offset, int | float):
        try:
            candidate = (float(meta.scale), float(meta.offset))
        except OverflowError:
            candidate = (0.0, 0.0)
        if fresh(candidate):
            yield candidate
    finite = [v for v in itertools.islice(values, 256) if math.isfinite(v)]
    steps = [abs(b - a) for a, b in itertools.pairwise(finite) if b != a]
    smallest = float(f"{min(steps, default=0.0):.12g}")  # 0.30000000000000004 - 0.2 -> 0.1
    if 1e-9 <= smallest < 1e9:
        decade = float(f"1e{math.floor(math.log10(smallest))}")
        for candidate in ((smallest, 0.0), (decade, 0.0)):
            if fresh(candidate):
                yield candidate
    if fresh(candidate := (1.0, 0.0)):
        yield candidate


def _scaled(values: list[float], scale: float, offset: float, max_exceptions: int
            ) -> dict[str, Any] | None:
    """Raw ints with ``raw * scale + offset == value`` bit for bit, delta-encoded; None
    when more than ``max_exceptions`` values do not fit."""
    raws: list[int] = []
    exc_index: list[int] = []
    prev = 0
    for i, v in enumerate(values):
        raw = None
        if math.isfinite(v):
            try:
                guess = round((v - offset) / scale)
            except (OverflowError, ValueError, ZeroDivisionError):
                guess = None
            if guess is not None and abs(guess) <= MAX_EXACT:
                for r in (guess, guess - 1, guess + 1):
                    if _same(r * scale + offset, v):
                        raw = r
                        break
        if raw is None:
            raws.append(prev)
            exc_index.append(i)
            if len(exc_index) > max_exceptions:
                return None
        else:
            raws.append(raw)
            prev = raw
    return {"values": _deltas(raws), "scale": scale, "offset": offset,
            "exc_index": exc_index, "exc_value": [values[i] for i in exc_index]}


def _encode_labels(values: list[Any], labels: list[str | None]) -> dict[str, Any]:
    """``label_map`` [[value, label]...] when each value has one label; else ``labels``."""
    if all(label is None for label in labels):
        return {}
    if not all(label is None or type(label) is str for label in labels):
        bad = next(x for x in labels if not (x is None or type(x) is str))
        raise BatchFormatError(f"a label must be a str or None, not {bad!r}")
    mapping: dict[Any, str] = {}
    consistent = True
    for v, label in zip(values, labels, strict=True):
        if label is None:
            continue
        if v != v or mapping.setdefault(v, label) != label:  # NaN is no key
            consistent = False
            break
    if consistent and all(mapping.get(v) == label for v, label in zip(values, labels,
                                                                      strict=True)):
        return {"label_map": [[v, label] for v, label in mapping.items()]}
    return {"labels": list(labels)}


def _encode_signals(signals: dict[SignalKey, SignalMeta]) -> list[dict[str, Any]]:
    out = []
    for key, meta in signals.items():
        if not (isinstance(key, tuple) and len(key) == 3 and all(isinstance(k, str) for k in key)):
            raise BatchFormatError(f"signal metadata key must be (channel, message, signal), "
                                   f"not {key!r}")
        if not isinstance(meta, SignalMeta):
            raise BatchFormatError(f"signal metadata of {key!r} must be a SignalMeta")
        out.append({
            "channel": key[0], "message": key[1], "signal": key[2], "unit": meta.unit,
            "scale": meta.scale, "offset": meta.offset,
            "minimum": meta.minimum, "maximum": meta.maximum,
            "choices": None if meta.choices is None else [[r, lbl] for r, lbl in
                                                          meta.choices.items()],
        })
    return out


def _encode_events(events: Sequence[Event]) -> dict[str, Any]:
    cols: list[list[Any]] = [[], [], [], [], []]
    for n, e in enumerate(events):
        try:
            ts, channel, kind, detail, priority = e
        except (TypeError, ValueError):
            raise BatchFormatError(f"event {n}: not an Event: {e!r}") from None
        if not all(isinstance(x, str) for x in (channel, kind, detail)):
            raise BatchFormatError(f"event {n}: channel, kind and detail must be str")
        if type(priority) is not int:
            raise BatchFormatError(f"event {n}: priority must be an int, not {priority!r}")
        for col, x in zip(cols, (_float(ts, f"event {n}: timestamp"), channel, kind, detail,
                                 priority), strict=True):
            col.append(x)
    return {"count": len(events), **_encode_times(cols[0]), "channel": cols[1],
            "kind": cols[2], "detail": cols[3], "priority": cols[4]}


def _encode_frames(frames: Sequence[Frame]) -> dict[str, Any]:
    times: list[float] = []
    channels: dict[str, int] = {}
    channel: list[int] = []
    ids: list[int] = []
    flags: list[int] = []
    lengths: list[int] = []
    data = bytearray()
    for n, f in enumerate(frames):
        try:
            ts, ch, fid, is_extended, is_fd, payload = f
        except (TypeError, ValueError):
            raise BatchFormatError(f"frame {n}: not a Frame: {f!r}") from None
        times.append(_float(ts, f"frame {n}: timestamp"))
        if not isinstance(ch, str):
            raise BatchFormatError(f"frame {n}: channel must be a str")
        if type(fid) is not int or not 0 <= fid <= MAX_CAN_ID:
            raise BatchFormatError(f"frame {n}: arbitration id must be an int in 0..2**29-1, "
                                   f"not {fid!r}")
        if not isinstance(payload, bytes | bytearray | memoryview) or len(payload) > 64:
            raise BatchFormatError(f"frame {n}: data must be at most 64 bytes")
        channel.append(channels.setdefault(ch, len(channels)))
        ids.append(fid)
        flags.append((FRAME_EXTENDED if is_extended else 0) | (FRAME_FD if is_fd else 0))
        lengths.append(len(payload))
        data += payload
    out: dict[str, Any] = {"count": len(frames), **_encode_times(times),
                           "channels": list(channels), "channel": channel, "id": ids}
    if any(flags):
        out["flags"] = flags
    out["length"] = lengths
    out["data"] = bytes(data)
    return out


# -- decode ----------------------------------------------------------------------------------


def read_envelope(data: bytes | bytearray | memoryview) -> Envelope:
    """The envelope of a batch, checked (header, CRC, envelope fields), body untouched."""
    return _read_parts(data)[0]


def decode(data: bytes | bytearray | memoryview) -> Batch:
    """The batch encoded in ``data``; BatchFormatError for anything else."""
    envelope, body_bytes = _read_parts(data)
    if envelope.compression == COMPRESSION_ZSTD:
        body_bytes = _decompress(body_bytes)
    body = _unpack(body_bytes, "body", MAX_BODY_BYTES)
    try:
        batch = _decode_body(body, envelope)
    except BatchFormatError:
        raise
    except (TypeError, ValueError, KeyError, IndexError, OverflowError, AttributeError) as exc:
        # a case the checks below missed: still a format error, never a crash
        raise BatchFormatError(f"body: malformed: {type(exc).__name__}: {exc}") from None
    return batch


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
    raw = _unpack(data[HEADER.size:body_start], "envelope", MAX_ENVELOPE_BYTES)
    return _decode_envelope(raw, version, compression, len(data)), data[body_start:-TRAILER.size]


def _decompress(body: bytes) -> bytes:
    try:
        size = zstandard.frame_content_size(body)
    except zstandard.ZstdError as exc:
        raise BatchFormatError(f"body: not a zstd frame: {exc}") from None
    if size < 0:
        raise BatchFormatError("body: the zstd frame does not state its content size")
    if size > MAX_BODY_BYTES:
        raise BatchFormatError(f"body: {size} bytes uncompressed, more than the "
                               f"{MAX_BODY_BYTES} allowed")
    try:
        out: bytes = zstandard.ZstdDecompressor().decompress(body, allow_extra_data=False)
    except zstandard.ZstdError as exc:
        raise BatchFormatError(f"body: zstd: {exc} (truncated or corrupted)") from None
    return out


def _ext_hook(code: int, data: bytes) -> Any:
    if code == BIGINT_EXT and data:
        return int.from_bytes(data, "big", signed=True)
    raise BatchFormatError(f"unknown msgpack ext type {code} ({len(data)} bytes)")


def _unpack(data: bytes, what: str, limit: int) -> Any:
    if len(data) > limit:
        raise BatchFormatError(f"{what}: {len(data)} bytes, more than the {limit} allowed")
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True, ext_hook=_ext_hook,
                               timestamp=0, use_list=True)
    except BatchFormatError as exc:
        raise BatchFormatError(f"{what}: {exc}") from None
    except Exception as exc:  # msgpack raises many types: ExtraData, FormatError, ValueError...
        raise BatchFormatError(f"{what}: not valid msgpack: {type(exc).__name__}: {exc}"
                               ) from None


def _fail(where: str, problem: str) -> NoReturn:
    raise BatchFormatError(f"{where}: {problem}")


def _map(x: Any, where: str) -> dict[str, Any]:
    if not isinstance(x, dict):
        _fail(where, f"expected a map, got {_kind(x)}")
    return x


def _kind(x: Any) -> str:
    return {bool: "a bool", int: "an int", float: "a float", str: "a str", bytes: "bytes",
            list: "an array", dict: "a map", type(None): "nil"}.get(type(x), type(x).__name__)


def _get(m: dict[str, Any], key: str, types: type | tuple[type, ...], where: str,
         optional: bool = False) -> Any:
    if key not in m:
        if optional:
            return None
        _fail(where, f"missing key {key!r}")
    value = m[key]
    if type(value) not in (types if isinstance(types, tuple) else (types,)):
        _fail(f"{where}.{key}", f"unexpected {_kind(value)}")
    return value


def _int_list(m: dict[str, Any], key: str, where: str, length: int | None = None,
              optional: bool = False, lo: int = INT64_MIN, hi: int = UINT64_MAX) -> list[int]:
    xs = _get(m, key, list, where, optional)
    if xs is None:
        return []
    if not all(type(x) is int and lo <= x <= hi for x in xs):
        bad = next(x for x in xs if not (type(x) is int and lo <= x <= hi))
        _fail(f"{where}.{key}", f"expected ints in {lo}..{hi}, got {bad!r}")
    if length is not None and len(xs) != length:
        _fail(f"{where}.{key}", f"{len(xs)} entries where {length} are needed")
    return xs


def _str_list(m: dict[str, Any], key: str, where: str, length: int) -> list[str]:
    xs = _get(m, key, list, where)
    if len(xs) != length:
        _fail(f"{where}.{key}", f"{len(xs)} entries where {length} are needed")
    if not all(type(x) is str for x in xs):
        _fail(f"{where}.{key}", "expected strings")
    return xs


def _number(x: Any, where: str, optional: bool = False) -> Any:
    if optional and x is None:
        return None
    if type(x) not in (int, float):
        _fail(where, f"expected a number, got {_kind(x)}")
    return x


def _count(m: dict[str, Any], key: str, where: str) -> int:
    n = _get(m, key, int, where)
    if n < 0:
        _fail(f"{where}.{key}", f"negative count {n}")
    return int(n)


def _decode_envelope(raw: Any, version: int, compression: int, size: int) -> Envelope:
    w = "envelope"
    env = _map(raw, w)
    vehicle = _get(env, "vehicle_id", str, w)
    seq_first = _get(env, "seq_first", int, w)
    seq_last = _get(env, "seq_last", int, w)
    try:
        expected_id = batch_id(vehicle, seq_first, seq_last)
    except BatchFormatError as exc:
        _fail(w, str(exc))
    stored_id = _get(env, "batch_id", str, w)
    if stored_id != expected_id:
        _fail(f"{w}.batch_id", f"{stored_id!r} does not match the vehicle id and sequence "
                               f"range (expected {expected_id!r})")
    times = [_get(env, k, (float, type(None)), w) for k in ("time_first", "time_last")]
    if (times[0] is None) != (times[1] is None):
        _fail(w, "time_first and time_last must both be nil or both be floats")
    return Envelope(version, compression, stored_id, vehicle, seq_first, seq_last,
                    times[0], times[1], _get(env, "dbc_fingerprint", str, w),
                    _count(env, "samples", w), _count(env, "events", w),
                    _count(env, "frames", w), size)


def _decode_times(m: dict[str, Any], n: int, where: str) -> list[float]:
    if ("time_us" in m) == ("time_s" in m):
        _fail(where, "needs exactly one of 'time_us' and 'time_s'")
    if "time_s" in m:
        ts = _get(m, "time_s", list, where)
        if len(ts) != n or not all(type(t) is float for t in ts):
            _fail(f"{where}.time_s", f"expected {n} floats, got {len(ts)} entries")
        return ts
    enc = _int_list(m, "time_us", where, lo=INT64_MIN, hi=INT64_MAX)
    if len(enc) != (n + 1 if n else 0):
        _fail(f"{where}.time_us", f"{len(enc)} entries for {n} timestamps "
                                  f"(expected {n + 1 if n else 0})")
    if not n:
        return []
    step = enc[1]
    us = list(itertools.accumulate(enc[2:], lambda acc, r: acc + step + r, initial=enc[0]))
    if not all(-MAX_EXACT <= u <= MAX_EXACT for u in us):
        _fail(f"{where}.time_us", "a timestamp beyond ±2**53 µs")
    return [u / 1e6 for u in us]


def _decode_body(raw: Any, env: Envelope) -> Batch:
    body = _map(raw, "body")
    groups = _get(body, "groups", list, "body")
    decoded = [_decode_group(g, f"body.groups[{i}]") for i, g in enumerate(groups)]
    keys = [(g[0], g[1]) for g in decoded]
    if len(set(keys)) != len(keys):
        _fail("body.groups", "a (channel, message) appears in two groups")
    samples = _samples_in_order(decoded)
    if "order" in body:
        order = list(itertools.accumulate(_int_list(body, "order", "body")))
        if sorted(order) != list(range(len(samples))):
            _fail("body.order", f"not a permutation of the {len(samples)} samples")
        samples = [samples[i] for i in order]
    events = _decode_events(_map(_get(body, "events", dict, "body"), "body.events"))
    frames = _decode_frames(_map(_get(body, "frames", dict, "body"), "body.frames"))
    signals = _decode_signals(_get(body, "signals", list, "body"))
    for what, got, stated in (("samples", len(samples), env.samples),
                              ("events", len(events), env.events),
                              ("frames", len(frames), env.frames)):
        if got != stated:
            _fail("body", f"{got} {what}, the envelope says {stated}")
    batch = Batch(env.vehicle_id, env.seq_first, env.seq_last, env.dbc_fingerprint,
                  samples, events, frames, signals)
    span = batch.time_range
    first, last = env.time_first, env.time_last
    if span is None:
        matches = first is None and last is None
    else:
        matches = (first is not None and last is not None and _same(first, span[0])
                   and _same(last, span[1]))
    if not matches:
        _fail("envelope", f"time range ({first}, {last}) does not match the records' {span}")
    return batch


# (channel, message, timestamps, columns: [(signal, unit, rows, values, labels, flags)])
_DecodedColumn = tuple[str, str, list[int], list[Any], list[str | None], list[int]]
_DecodedGroup = tuple[str, str, list[float], list[_DecodedColumn]]


def _decode_group(raw: Any, where: str) -> _DecodedGroup:
    g = _map(raw, where)
    channel = _get(g, "channel", str, where)
    message = _get(g, "message", str, where)
    n = _count(g, "rows", where)
    if n == 0:
        _fail(where, "a group without rows")
    times = _decode_times(g, n, where)
    columns = []
    covered = bytearray(n)
    seen: set[tuple[str, str]] = set()
    for i, raw_col in enumerate(_get(g, "columns", list, where)):
        cw = f"{where}.columns[{i}]"
        col = _decode_column(_map(raw_col, cw), n, cw)
        if (col[0], col[1]) in seen:
            _fail(cw, f"signal {col[0]!r} with unit {col[1]!r} appears twice")
        seen.add((col[0], col[1]))
        for r in col[2]:
            covered[r] = 1
        columns.append(col)
    if not all(covered):
        _fail(where, f"row {covered.index(0)} has no value in any column")
    return channel, message, times, columns


def _rows_of(present: bytes | None, n: int, where: str) -> list[int]:
    if present is None:
        return list(range(n))
    if len(present) != (n + 7) // 8:
        _fail(f"{where}.present", f"{len(present)} bytes for {n} rows "
                                  f"(expected {(n + 7) // 8})")
    bits = int.from_bytes(present, "little")
    if bits >> n:
        _fail(f"{where}.present", f"bits set beyond row {n - 1}")
    rows = [r for r in range(n) if bits >> r & 1]
    if not rows:
        _fail(f"{where}.present", "a column without values")
    return rows


def _decode_column(col: dict[str, Any], n: int, where: str) -> _DecodedColumn:
    signal = _get(col, "signal", str, where)
    unit = _get(col, "unit", str, where)
    rows = _rows_of(_get(col, "present", bytes, where, optional=True), n, where)
    count = len(rows)
    kind = _get(col, "kind", str, where)
    if kind == "plain":
        values = _get(col, "values", list, where)
        if len(values) != count:
            _fail(f"{where}.values", f"{len(values)} values for {count} rows present")
        for v in values:
            if type(v) not in (int, float, bool):
                _fail(f"{where}.values", f"expected numbers, got {_kind(v)}")
    elif kind in ("int", "scaled"):
        stored = _int_list(col, "values", where, length=count, hi=INT64_MAX)
        values = list(itertools.accumulate(stored))
        if kind == "int":
            if not all(INT64_MIN <= v <= INT64_MAX for v in values):
                _fail(f"{where}.values", "a value beyond int64")
        else:
            if not all(-MAX_EXACT <= v <= MAX_EXACT for v in values):
                _fail(f"{where}.values", "a raw value beyond ±2**53")
            scale = _get(col, "scale", float, where)
            offset = _get(col, "offset", float, where)
            values = [r * scale + offset for r in values]
        exc_index = _int_list(col, "exc_index", where, optional=True, lo=0, hi=count - 1)
        exc_value = _get(col, "exc_value", list, where, optional=bool(not exc_index)) or []
        if len(exc_value) != len(exc_index) or any(
                b <= a for a, b in itertools.pairwise(exc_index)):
            _fail(f"{where}.exc_index", "exceptions must be ascending, one value each")
        for i, v in zip(exc_index, exc_value, strict=True):
            values[i] = _number(v, f"{where}.exc_value")
    else:
        _fail(f"{where}.kind", f"unknown value kind {kind!r} (int, scaled, plain)")
    labels = _decode_labels(col, values, where)
    flags = [0] * count
    flag_index = _int_list(col, "flag_index", where, optional=True, lo=0, hi=count - 1)
    flag_value = _int_list(col, "flag_value", where, optional=True, length=len(flag_index),
                           hi=INT64_MAX)
    if any(b <= a for a, b in itertools.pairwise(flag_index)) or 0 in flag_value:
        _fail(f"{where}.flag_index", "flags must be non-zero, at ascending indices")
    for i, f in zip(flag_index, flag_value, strict=True):
        flags[i] = f
    return signal, unit, rows, values, labels, flags


def _decode_labels(col: dict[str, Any], values: list[Any], where: str) -> list[str | None]:
    if "labels" in col:
        labels = _get(col, "labels", list, where)
        if len(labels) != len(values) or not all(x is None or type(x) is str for x in labels):
            _fail(f"{where}.labels", f"expected {len(values)} strings or nils")
        return labels
    pairs = _get(col, "label_map", list, where, optional=True)
    if not pairs:
        return [None] * len(values)
    mapping: dict[Any, str] = {}
    for pair in pairs:
        if not (type(pair) is list and len(pair) == 2 and type(pair[0]) in (int, float, bool)
                and type(pair[1]) is str):
            _fail(f"{where}.label_map", "expected [number, string] pairs")
        mapping[pair[0]] = pair[1]
    get = mapping.get
    return [get(v) for v in values]


def _samples_in_order(groups: list[_DecodedGroup]) -> list[Sample]:
    out: list[Sample] = []
    append = out.append
    for g, r, c, k in _canonical_order([g[2] for g in groups],
                                       [[c[2] for c in g[3]] for g in groups]):
        channel, message, times, columns = groups[g]
        signal, unit, _, values, labels, flags = columns[c]
        append(Sample(times[r], channel, message, signal, values[k], unit, labels[k], flags[k]))
    return out


def _decode_events(m: dict[str, Any]) -> list[Event]:
    w = "body.events"
    n = _count(m, "count", w)
    times = _decode_times(m, n, w)
    channel = _str_list(m, "channel", w, n)
    kind = _str_list(m, "kind", w, n)
    detail = _str_list(m, "detail", w, n)
    priority = _get(m, "priority", list, w)
    if len(priority) != n or not all(type(p) is int for p in priority):
        _fail(f"{w}.priority", f"expected {n} ints")
    return [Event(*e) for e in zip(times, channel, kind, detail, priority, strict=True)]


def _decode_frames(m: dict[str, Any]) -> list[Frame]:
    w = "body.frames"
    n = _count(m, "count", w)
    times = _decode_times(m, n, w)
    channels = _get(m, "channels", list, w)
    if not all(type(c) is str for c in channels):
        _fail(f"{w}.channels", "expected strings")
    channel = _int_list(m, "channel", w, length=n, lo=0, hi=max(len(channels) - 1, 0))
    if n and not channels:
        _fail(f"{w}.channels", "empty, but there are frames")
    ids = _int_list(m, "id", w, length=n, lo=0, hi=MAX_CAN_ID)
    flags = _int_list(m, "flags", w, length=n, lo=0, hi=FRAME_EXTENDED | FRAME_FD,
                      optional=True) or [0] * n
    lengths = _int_list(m, "length", w, length=n, lo=0, hi=MAX_FRAME_DATA)
    data = _get(m, "data", bytes, w)
    if sum(lengths) != len(data):
        _fail(f"{w}.data", f"{len(data)} bytes, the lengths add up to {sum(lengths)}")
    out = []
    pos = 0
    for ts, c, fid, fl, length in zip(times, channel, ids, flags, lengths, strict=True):
        out.append(Frame(ts, channels[c], fid, bool(fl & FRAME_EXTENDED), bool(fl & FRAME_FD),
                         data[pos:pos + length]))
        pos += length
    return out


def _decode_signals(entries: list[Any]) -> dict[SignalKey, SignalMeta]:
    out: dict[SignalKey, SignalMeta] = {}
    for i, raw in enumerate(entries):
        w = f"body.signals[{i}]"
        m = _map(raw, w)
        key = (_get(m, "channel", str, w), _get(m, "message", str, w), _get(m, "signal", str, w))
        choices_raw = _get(m, "choices", (list, type(None)), w)
        choices = None
        if choices_raw is not None:
            choices = {}
            for pair in choices_raw:
                if not (type(pair) is list and len(pair) == 2 and type(pair[0]) is int
                        and type(pair[1]) is str):
                    _fail(f"{w}.choices", "expected [int, string] pairs")
                choices[pair[0]] = pair[1]
        if key in out:
            _fail(w, f"metadata of {key} given twice")
        out[key] = SignalMeta(
            unit=_get(m, "unit", str, w),
            scale=_number(m.get("scale"), f"{w}.scale"),
            offset=_number(m.get("offset"), f"{w}.offset"),
            minimum=_number(m.get("minimum"), f"{w}.minimum", optional=True),
            maximum=_number(m.get("maximum"), f"{w}.maximum", optional=True),
            choices=choices,
        )
    return out

