"""The batch wire format: round trips (property tests), corruption, identifiers, size."""

from __future__ import annotations

import argparse
import hashlib
import hmac
import io
import json
import math
import re
import struct
import tracemalloc
import zlib
from collections.abc import Callable
from contextlib import redirect_stdout, suppress
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zstandard
from helpers.receiver_batches import amplifying_batch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.batch import (
    Batch,
    BatchFormatError,
    SignalMeta,
    batch_id,
    container,
    dbc_fingerprint,
    decode,
    encode,
    limits,
    pseudonymous_vehicle_id,
    read_envelope,
    signal_metadata,
)
from agent.cli import batch_cmd
from agent.errors import BavardError
from agent.frames import OUT_OF_RANGE, Event, Frame, Sample
from tests.conftest import corpus

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tests" / "data" / "sample_drive.log"
DEMO_DBC = ROOT / "dbc" / "demo_vehicle.dbc"
VEHICLE = "3f2c9a0e5b7d41c8a6e2f90b1d4c7e35"
BATCH_SECONDS = 60.0
MAX_BYTES_PER_FRAME = 3.0


def bits(x: float) -> bytes:
    return struct.pack(">d", x)


# -- strategies ---------------------------------------------------------------------------

NAMES = st.sampled_from(["can0", "can1", "vcan-ü", "Steuergerät", "後退", ""])
LABELS = st.one_of(st.none(), st.sampled_from(["Rückwärtsgang", "後退", "P", "", "🚗 drive"]),
                   st.text(max_size=12))
US_TIMESTAMPS = st.integers(-(10**15), 4 * 10**15).map(lambda us: us / 1e6)
TIMESTAMPS = st.one_of(US_TIMESTAMPS, st.floats(allow_nan=True, allow_infinity=True),
                       st.sampled_from([0.0, -0.0, math.nan, -math.nan, math.inf, -math.inf,
                                        1767225600.000064, 5e-324]))
INTS = st.one_of(st.integers(-(2**63), 2**63 - 1), st.integers(-(2**80), 2**80),
                 st.sampled_from([2**63 - 1, -(2**63), 2**64 - 1, 2**64, -(2**63) - 1, 0]))
FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                   st.integers(-(2**20), 2**20).map(lambda r: r * 0.1),
                   st.integers(-(2**20), 2**20).map(lambda r: r * 0.25 - 40.0),
                   st.sampled_from([math.nan, -math.nan, math.inf, -math.inf, -0.0, 0.0,
                                    struct.unpack(">d", b"\x7f\xf8\x00\x00\x00\x00\x00\x2a")[0]]))
VALUES = st.one_of(INTS, FLOATS, st.booleans())
FLAGS = st.one_of(st.just(0), st.sampled_from([1, 2, 3]), st.integers(-(2**63), 2**63 - 1))


@st.composite
def samples(draw: st.DrawFn) -> list[Sample]:
    """Samples as the pipeline makes them (frames of several signals at one timestamp,
    one column type per signal) mixed with anything a Sample can hold."""
    out: list[Sample] = []
    for _ in range(draw(st.integers(0, 6))):
        channel, message = draw(NAMES), draw(st.sampled_from(["Engine", "Gear", "Ünits"]))
        signals = draw(st.lists(st.sampled_from(["Rpm", "Gang", "Temp", "後退"]), min_size=1,
                                max_size=3, unique=True))
        kinds = {s: draw(st.sampled_from([INTS, FLOATS, VALUES])) for s in signals}
        ts = draw(TIMESTAMPS)
        for _ in range(draw(st.integers(1, 8))):
            if draw(st.booleans()):
                ts = draw(TIMESTAMPS)
            for signal in signals:
                if draw(st.integers(0, 3)) == 0:
                    continue  # on change: not every signal in every frame
                out.append(Sample(ts, channel, message, signal, draw(kinds[signal]),
                                  draw(st.sampled_from(["", "rpm", "°C"])), draw(LABELS),
                                  draw(FLAGS)))
    if draw(st.booleans()):
        out = draw(st.permutations(out))
    return out


EVENTS = st.lists(st.builds(Event, TIMESTAMPS, NAMES, st.text(max_size=10),
                            st.text(max_size=30), INTS), max_size=5)


@st.composite
def frames(draw: st.DrawFn) -> Frame:
    extended = draw(st.booleans())
    fd = draw(st.booleans())
    return Frame(draw(TIMESTAMPS), draw(NAMES),
                 draw(st.integers(0, 0x1FFFFFFF if extended else 0x7FF)), extended, fd,
                 draw(st.binary(max_size=64 if fd else 8)))


METAS = st.builds(
    SignalMeta, unit=st.text(max_size=5),
    scale=st.one_of(st.sampled_from([1, 0.1, 0.25, 0.0155168902]), st.floats()),
    offset=st.one_of(st.sampled_from([0, -40, 6.315]), st.floats()),
    minimum=st.one_of(st.none(), st.floats()), maximum=st.one_of(st.none(), st.integers()),
    choices=st.one_of(st.none(), st.dictionaries(st.integers(-(2**63), 2**63 - 1), LABELS.filter(
        lambda x: x is not None), max_size=4)))


@st.composite
def batches(draw: st.DrawFn) -> Batch:
    first = draw(st.integers(0, 2**64 - 1))
    last = draw(st.integers(first, 2**64 - 1))
    sample_list = draw(samples())
    keys = sorted({(s.channel, s.message, s.signal) for s in sample_list})
    signals = {key: draw(METAS) for key in keys if draw(st.booleans())}
    return Batch(draw(st.text(max_size=40)), first, last, draw(st.text(max_size=70)),
                 sample_list, draw(EVENTS), draw(st.lists(frames(), max_size=6)), signals)


# -- round trips --------------------------------------------------------------------------


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches(), st.sampled_from([0, 1, 3, 19]))
def test_decode_encode_is_identity(batch: Batch, level: int) -> None:
    data = encode(batch, level=level)
    back = decode(data)
    assert back == batch
    # equality is bit for bit: check it does not hide anything
    for a, b in zip(back.samples, batch.samples, strict=True):
        assert bits(a.timestamp) == bits(float(b.timestamp))
        assert type(a.value) is type(b.value)
        assert (bits(a.value) == bits(b.value)) if isinstance(a.value, float) else (
            a.value == b.value)
    assert read_envelope(data).batch_id == batch.batch_id


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(-(2**31), 2**31), min_size=1, max_size=200),
       st.sampled_from([(0.1, 0.0), (0.25, -40.0), (0.0155168902, 0.0), (2.155, 6.315),
                        (0.39215686274509803, 0.0)]))
def test_scaled_floats_are_stored_as_raw_integers_and_come_back_exact(
        raws: list[int], scaling: tuple[float, float]) -> None:
    scale, offset = scaling
    values = [r * scale + offset for r in raws]
    ss = [Sample(1000.0 + i / 100, "can0", "M", "S", v, "km/h") for i, v in enumerate(values)]
    batch = Batch(VEHICLE, 0, 1, samples=ss,
                  signals={("can0", "M", "S"): SignalMeta("km/h", scale, offset)})
    (column,) = body_of(encode(batch, level=0))["groups"][0]["columns"]
    assert column["kind"] == "scaled"
    assert "exc_index" not in column
    assert (column["scale"], column["offset"]) == (scale, offset)
    back = decode(encode(batch))
    assert [bits(s.value) for s in back.samples] == [bits(v) for v in values]


def test_edge_values_round_trip() -> None:
    ts = 1767225600.000064
    values: list[Any] = [math.nan, -math.nan, math.inf, -math.inf, -0.0, 0.0, 5e-324,
                         1.7976931348623157e308, 2**63 - 1, -(2**63), 2**64 - 1, 2**64,
                         -(2**200), 0, -1, True, 0.1, 1]
    ss = [Sample(ts + i * 0.01, "can0", "Edge", f"s{i % 3}", v, "", None, 0)
          for i, v in enumerate(values)]
    ss += [Sample(ts, "can1", "Gear", "CurrentGear", 7, "", "Rückwärtsgang", OUT_OF_RANGE),
           Sample(ts + 1, "can1", "Gear", "CurrentGear", 8, "", "後退", 0),
           Sample(ts + 2, "can1", "Gear", "CurrentGear", 7, "", "Rückwärtsgang", 0),
           Sample(ts + 3, "can1", "Gear", "CurrentGear", 0, "", None, 2**62)]
    events = [Event(ts, "can0", "dtc", "P0301 Zylinder 1 Fehlzündung", 2**70),
              Event(math.nan, "", "", "", -1)]
    frame_list = [Frame(ts, "can0", 0x1FFFFFFF, True, True, bytes(range(64))),
                  Frame(ts, "can0", 0x7FF, False, False, b""),
                  Frame(-0.0, "vcan1", 0, False, True, b"\x00" * 12)]
    batch = Batch(VEHICLE, 0, 2**64 - 1, "ab" * 32, ss, events, frame_list)
    assert decode(encode(batch)) == batch


def test_equality_sees_nan_bits_signed_zero_and_int_versus_float() -> None:
    def one(value: Any, ts: float = 1.0) -> Batch:
        return Batch(VEHICLE, 0, 0, samples=[Sample(ts, "c", "m", "s", value)])

    assert one(math.nan) == one(math.nan)
    assert one(0.0) != one(-0.0)
    assert one(1) != one(1.0)
    assert one(1.0, ts=0.0) != one(1.0, ts=-0.0)
    assert one(1) != "not a batch"


def test_empty_batch() -> None:
    batch = Batch(VEHICLE, 7, 7)
    data = encode(batch)
    assert decode(data) == batch
    envelope = read_envelope(data)
    assert (envelope.samples, envelope.events, envelope.frames) == (0, 0, 0)
    assert envelope.time_first is None and envelope.time_last is None
    assert len(data) < 400  # header, envelope (ids in hex), empty tables, CRC


def test_samples_out_of_time_order_keep_their_order() -> None:
    ss = [Sample(2.0, "can1", "B", "x", 1), Sample(1.0, "can0", "A", "y", 2),
          Sample(1.0, "can0", "A", "z", 3), Sample(1.0, "can0", "A", "y", 4),
          Sample(0.5, "can1", "B", "x", 5)]
    batch = Batch(VEHICLE, 0, 4, samples=ss)
    assert "order" in body_of(encode(batch, level=0))
    assert decode(encode(batch)) == batch
    in_order = Batch(VEHICLE, 0, 4, samples=[ss[4], ss[1], ss[2], ss[3], ss[0]])
    assert "order" not in body_of(encode(in_order, level=0))
    assert decode(encode(in_order)) == in_order


def test_time_range_and_counts_are_in_the_envelope() -> None:
    batch = Batch(VEHICLE, 10, 12,
                  samples=[Sample(5.5, "c", "m", "s", 1), Sample(math.nan, "c", "m", "s", 2)],
                  events=[Event(1.25, "c", "k", "d")],
                  frames=[Frame(9.0, "c", 1, False, False, b"")])
    envelope = read_envelope(encode(batch))
    assert (envelope.time_first, envelope.time_last) == (1.25, 9.0)
    assert (envelope.samples, envelope.events, envelope.frames) == (2, 1, 1)
    assert (envelope.seq_first, envelope.seq_last) == (10, 12)
    assert batch.time_range == (1.25, 9.0)


def test_encode_rejects_what_the_format_cannot_hold() -> None:
    def bad(**kwargs: Any) -> Batch:
        fields: dict[str, Any] = {"vehicle_id": VEHICLE, "seq_first": 0, "seq_last": 0}
        fields.update(kwargs)
        return Batch(**fields)

    cases: list[tuple[Batch, str]] = [
        (bad(seq_first=5, seq_last=4), "seq_first 5 > seq_last 4"),
        (bad(seq_first=-1), "seq_first must be an int"),
        (bad(seq_last=2**64), "seq_last must be an int"),
        (bad(samples=[Sample("x", "c", "m", "s", 1)]),  # type: ignore[arg-type]
         "sample 0: timestamp must be a float"),
        (bad(samples=[Sample(1.0, "c", "m", "s", "one")]),  # type: ignore[arg-type]
         "a value must be an int or a float"),
        (bad(samples=[Sample(1.0, "c", 3, "s", 1)]),  # type: ignore[arg-type]
         "sample 0: message must be a str"),
        (bad(samples=[Sample(1.0, "c", "m", "s", 1, "", None, 2**64)]), "flags must be int64"),
        (bad(samples=[Sample(1.0, "c", "m", "s", 1, "", 5)]),  # type: ignore[arg-type]
         "a label must be a str or None"),
        (bad(frames=[Frame(1.0, "c", 2**29, True, False, b"")]), "frame 0: arbitration id"),
        (bad(frames=[Frame(1.0, "c", 1, False, True, bytes(65))]), "at most 64 bytes"),
        (bad(events=[Event(1.0, "c", "k", "d", 1.5)]),  # type: ignore[arg-type]
         "event 0: priority must be an int"),
        (bad(signals={("c", "m", "s"): SignalMeta(scale="0.1")}),  # type: ignore[arg-type]
         "signal metadata of ('c', 'm', 's'): scale must be a number"),
        (bad(signals={("c", "m", "s"): SignalMeta(choices={"1": "x"})}),  # type: ignore[dict-item]
         "choices a dict of int to str"),
        (bad(signals={("c", "m"): SignalMeta()}),
         "key must be"),
    ]
    for batch, message in cases:
        with pytest.raises(BatchFormatError, match=re.escape(message)):
            encode(batch)
    with pytest.raises(ValueError, match="zstd level"):
        encode(bad(), level=23)


# -- corruption ---------------------------------------------------------------------------


def small_batch() -> Batch:
    ss = [Sample(1767225600.0 + i / 100, "can0", "Engine", "Rpm", 800 + i * 0.25, "rpm")
          for i in range(50)]
    ss += [Sample(1767225600.5, "can0", "Gear", "Gear", 3, "", "D")]
    return Batch(VEHICLE, 100, 150, "ab" * 32, ss,
                 [Event(1767225600.1, "can0", "dtc", "P0301")],
                 [Frame(1767225600.2, "can0", 0x7DF, False, False, b"\x02\x01\x0c")],
                 {("can0", "Engine", "Rpm"): SignalMeta("rpm", 0.25, 0)})


def parts(data: bytes) -> tuple[dict[str, Any], bytes]:
    """(envelope, body bytes as stored) of an encoded batch."""
    (length,) = struct.unpack_from(">I", data, 6)
    return msgpack.unpackb(data[10:10 + length]), data[10 + length:-4]


def body_of(data: bytes) -> dict[str, Any]:
    _, body = parts(data)
    if data[5] == 1:
        body = zstandard.ZstdDecompressor().decompress(body)
    result: dict[str, Any] = msgpack.unpackb(body, ext_hook=container.ext_hook)
    return result


def rebuild(data: bytes, change: Callable[[dict[str, Any], dict[str, Any]], None]) -> bytes:
    """The batch with its envelope and body changed by ``change``, CRC made right again."""
    envelope, _ = parts(data)
    body = body_of(data)
    change(envelope, body)
    packed = msgpack.packb(body, default=container.pack_default)
    return container.assemble(1, 1, msgpack.packb(envelope),
                           zstandard.ZstdCompressor().compress(packed))


def with_crc(data: bytes) -> bytes:
    return data[:-4] + struct.pack(">I", zlib.crc32(data[:-4]))


GOOD = encode(small_batch())
ENVELOPE = msgpack.packb(parts(GOOD)[0])
BODY = msgpack.packb(body_of(GOOD), default=container.pack_default)
GOOD_RECORDS = sum(parts(GOOD)[0][k] for k in ("samples", "events", "frames"))


def column(body: dict[str, Any], message: str = "Engine") -> dict[str, Any]:
    group = next(g for g in body["groups"] if g["message"] == message)
    result: dict[str, Any] = group["columns"][0]
    return result


def set_in(path: str, value: Any) -> Callable[[dict[str, Any], dict[str, Any]], None]:
    def change(envelope: dict[str, Any], body: dict[str, Any]) -> None:
        target: Any = {"envelope": envelope, "body": body}
        keys = path.split(".")
        for key in keys[:-1]:
            target = target[int(key)] if isinstance(target, list) else target[key]
        if value is DELETE:
            del target[keys[-1]]
        else:
            target[keys[-1]] = value(target[keys[-1]]) if callable(value) else value
    return change


DELETE = object()


def row_without_values(envelope: dict[str, Any], body: dict[str, Any]) -> None:
    gear = body["groups"][1]
    gear["rows"] = 2
    gear["time_us"].append(0)
    gear["columns"][0]["present"] = b"\x01"

CORRUPTIONS: list[tuple[str, Callable[[], bytes], str]] = [
    ("empty", lambda: b"", "too short for a batch: 0 bytes"),
    ("bad magic", lambda: b"PK\x03\x04" + GOOD[4:], "not a bavard batch: magic b'PK"),
    ("unknown version", lambda: GOOD[:4] + b"\x07" + GOOD[5:],
     "unsupported batch format version 7"),
    ("flipped byte", lambda: GOOD[:40] + bytes([GOOD[40] ^ 0x10]) + GOOD[41:], "CRC mismatch"),
    ("truncated file", lambda: GOOD[:-10], "truncated or corrupted"),
    ("unknown compression", lambda: with_crc(GOOD[:5] + b"\x09" + GOOD[6:]),
     "unknown compression 9"),
    ("envelope past the end", lambda: with_crc(GOOD[:6] + struct.pack(">I", 10**6) + GOOD[10:]),
     "envelope length 1000000 runs past the end"),
    ("envelope not msgpack", lambda: container.assemble(1, 0, b"\xc1", BODY),
     "envelope: not valid msgpack"),
    ("envelope not a map", lambda: container.assemble(1, 0, msgpack.packb([1, 2]), BODY),
     "envelope: expected a map, got an array"),
    ("truncated zstd", lambda: container.assemble(
        1, 1, ENVELOPE, zstandard.ZstdCompressor().compress(BODY)[:-7]), "body: zstd: "),
    ("zstd with trailing bytes", lambda: container.assemble(
        1, 1, ENVELOPE, zstandard.ZstdCompressor().compress(BODY) + b"\0\0"), "body: zstd: "),
    ("not zstd", lambda: container.assemble(1, 1, ENVELOPE, b"hello world, not zstd"),
     "body: not a zstd frame"),
    ("zstd bomb", lambda: container.assemble(1, 1, ENVELOPE, zstandard.ZstdCompressor().compress(
        bytes(limits.body_limit(GOOD_RECORDS) + 1))),
     f"more than the {limits.body_limit(GOOD_RECORDS)} allowed for {GOOD_RECORDS} records"),
    ("msgpack garbage", lambda: container.assemble(1, 0, ENVELOPE, b"\x93\x01\xc1\xff"),
     "body: not valid msgpack"),
    ("msgpack trailing data", lambda: container.assemble(1, 0, ENVELOPE, BODY + b"\x01"),
     "body: not valid msgpack: ExtraData"),
    ("unknown ext type", lambda: container.assemble(1, 0, ENVELOPE, msgpack.packb(
        msgpack.ExtType(42, b"x"))), "unknown msgpack ext type 42"),
    ("body not a map", lambda: container.assemble(1, 0, ENVELOPE, msgpack.packb("x")),
     "body: expected a map, got a str"),
    ("short value column", lambda: rebuild(GOOD, set_in("body.groups.0.columns.0.values",
                                                        lambda v: v[:-1])),
     r"body.groups\[0\].columns\[0\].values: 49 entries where 50 are needed"),
    ("short label list", lambda: rebuild(GOOD, set_in("body.groups.1.columns.0.labels",
                                                      ["D", "D"])),
     r"body.groups\[1\].columns\[0\].labels: expected 1 strings or nils"),
    ("short time column", lambda: rebuild(GOOD, set_in("body.groups.0.time_us",
                                                       lambda v: v[:-1])),
     r"body.groups\[0\].time_us: 50 entries for 50 timestamps \(expected 51\)"),
    ("presence bitmap of the wrong size", lambda: rebuild(GOOD, set_in(
        "body.groups.0.columns.0.present", b"\xff")), r"present: 1 bytes for 50 rows"),
    ("row count", lambda: rebuild(GOOD, set_in("body.groups.0.rows", 51)),
     r"time_us: 51 entries for 51 timestamps \(expected 52\)"),
    ("row without values", lambda: rebuild(GOOD, row_without_values),
     r"body.groups\[1\]: row 1 has no value in any column"),
    ("unknown value kind", lambda: rebuild(GOOD, set_in("body.groups.0.columns.0.kind",
                                                        "complex")),
     "unknown value kind 'complex'"),
    ("value of the wrong type", lambda: rebuild(GOOD, set_in("body.groups.0.columns.0.values",
                                                             lambda v: ["x", *v[1:]])),
     r"values: expected ints in .*, got 'x'"),
    ("missing key", lambda: rebuild(GOOD, set_in("body.frames.data", DELETE)),
     "body.frames: missing key 'data'"),
    ("frame data short", lambda: rebuild(GOOD, set_in("body.frames.data", b"\x02")),
     "body.frames.data: 1 bytes, the lengths add up to 3"),
    ("29-bit id overflow", lambda: rebuild(GOOD, set_in("body.frames.id", [2**29])),
     r"body.frames.id: expected ints in 0..536870911"),
    ("order not a permutation", lambda: rebuild(GOOD, set_in("body.order", [0] * 51)),
     "not a permutation of the 51 samples"),
    ("sample count", lambda: rebuild(GOOD, set_in("envelope.samples", 52)),
     "body: 51 samples, the envelope says 52"),
    ("batch id", lambda: rebuild(GOOD, set_in("envelope.batch_id", "0" * 32)),
     "does not match the vehicle id and sequence range"),
    ("sequence range", lambda: rebuild(GOOD, set_in("envelope.seq_last", 99)),
     "seq_first 100 > seq_last 99"),
    ("time range", lambda: rebuild(GOOD, set_in("envelope.time_last", 0.0)),
     "time range .* does not match the records'"),
    ("duplicate group", lambda: rebuild(GOOD, set_in(
        "body.groups", lambda g: [g[0], g[0], *g[1:]])), "appears in two groups"),
    ("bad choices", lambda: rebuild(GOOD, set_in("body.signals.0.choices", [["x", 1]])),
     r"body.signals\[0\].choices: expected \[int, string\] pairs"),
]


@pytest.mark.parametrize(("make", "message"), [pytest.param(m, msg, id=name)
                                               for name, m, msg in CORRUPTIONS])
def test_corruption_gives_a_clear_batch_format_error(make: Callable[[], bytes],
                                                     message: str) -> None:
    with pytest.raises(BatchFormatError, match=message):
        decode(make())


def test_the_rebuild_helper_itself_gives_a_valid_batch() -> None:
    assert decode(rebuild(GOOD, lambda envelope, body: None)) == small_batch()


def test_decode_accepts_only_bytes() -> None:
    with pytest.raises(BatchFormatError, match="a batch is bytes, not str"):
        decode("BVRD")  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_damage_gives_a_batch_format_error_and_nothing_else(data: st.DataObject) -> None:
    stored = data.draw(st.sampled_from(["file", "body"]))
    # a damaged file: the CRC catches it, or the checks after it; a damaged body behind a
    # correct CRC: the structure checks must catch it
    raw = bytearray(GOOD if stored == "file" else BODY)
    for _ in range(data.draw(st.integers(1, 4))):
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        pos = data.draw(st.integers(0, max(len(raw) - 1, 0)))
        if action == "flip" and raw:
            raw[pos] ^= data.draw(st.integers(1, 255))
        elif action == "cut":
            del raw[pos:pos + data.draw(st.integers(1, 8))]
        else:
            raw[pos:pos] = data.draw(st.binary(min_size=1, max_size=4))
    blob = bytes(raw) if stored == "file" else container.assemble(1, 0, ENVELOPE, bytes(raw))
    with suppress(BatchFormatError):
        decode(blob)


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers(-(2**64), 2**64) | st.floats()
                    | st.text(max_size=5) | st.binary(max_size=5),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.sampled_from(
                        ["groups", "columns", "values", "kind", "rows", "time_us", "present",
                         "count", "events", "frames", "signals", "order", "label_map",
                         "channel", "message", "signal", "unit", "scale", "offset"]),
                        inner, max_size=5), max_leaves=30))
def test_any_msgpack_body_gives_a_batch_format_error_or_a_batch(body: Any) -> None:
    try:
        packed = msgpack.packb(body)
    except (OverflowError, ValueError):
        return
    with suppress(BatchFormatError):
        decode(container.assemble(1, 0, ENVELOPE, packed))


def rich_batch() -> Batch:
    """Every part of the format in one batch: all value kinds, exceptions, labels both
    ways, flags, presence bitmaps, ``time_s``, ``order``, metadata, events, frames."""
    ss = [Sample(100.0 + i / 100, "can0", "Engine", "Rpm", 800 + i * 0.25, "rpm",
                 None, OUT_OF_RANGE if i == 3 else 0) for i in range(8)]
    ss[5] = ss[5]._replace(value=math.nan)
    ss += [Sample(100.0 + i / 100, "can0", "Engine", "Gear", i % 3, "", "PRN"[i % 3])
           for i in range(0, 8, 2)]
    ss += [Sample(100.005, "can1", "Mix", "x", v, "", lbl) for v, lbl in
           ((1, "a"), (2.5, None), (2**70, "b"), (1, "c"))]
    ss += [Sample(1e-7 * i, "can1", "Odd", "y", i, "") for i in range(3)]
    ss.insert(0, ss.pop())  # out of canonical order
    return Batch(VEHICLE, 1, 40, "ff" * 32, ss,
                 [Event(100.1, "can0", "dtc", "P0301", 2), Event(1e-7, "can1", "k", "", -1)],
                 [Frame(100.2, "can0", 0x18DAF110, True, True, bytes(range(12))),
                  Frame(100.3, "can1", 0x7E8, False, False, b"\x03\x41\x0c")],
                 {("can0", "Engine", "Rpm"): SignalMeta("rpm", 0.25, 0, 0, 8000),
                  ("can0", "Engine", "Gear"): SignalMeta("", 1, 0, None, None,
                                                         {0: "P", 1: "R", 2: "N"})})


RICH = encode(rich_batch(), level=0)
RICH_BODY = body_of(RICH)
JUNK = st.one_of(st.none(), st.booleans(), st.integers(-(2**64), 2**64), st.floats(),
                 st.text(max_size=4), st.binary(max_size=4),
                 st.lists(st.integers(-3, 3), max_size=3), st.just({}))


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += paths(v, (*prefix, i))
    return out


RICH_PATHS = paths(RICH_BODY)


def test_the_rich_batch_uses_every_part_of_the_format() -> None:
    assert decode(RICH) == rich_batch()
    keys = {p[-1] for p in RICH_PATHS if isinstance(p[-1], str)}
    assert {"order", "time_s", "present", "exc_index", "label_map", "labels", "flag_index",
            "flags"} <= keys
    kinds = {c["kind"] for g in RICH_BODY["groups"] for c in g["columns"]}
    assert kinds == {"int", "scaled", "plain"}


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_changed_field_gives_a_batch_format_error_or_a_batch(data: st.DataObject) -> None:
    import copy

    body = copy.deepcopy(RICH_BODY)
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(RICH_PATHS))
        target: Any = body
        try:
            for key in path[:-1]:
                target = target[key]
            if data.draw(st.booleans()) and isinstance(target, dict):
                target.pop(path[-1], None)
            else:
                target[path[-1]] = data.draw(JUNK)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change removed the way there
    try:
        packed = msgpack.packb(body, default=container.pack_default)
    except (OverflowError, ValueError, TypeError):
        return
    envelope = msgpack.packb(parts(RICH)[0])
    with suppress(BatchFormatError):
        decode(container.assemble(1, 0, envelope, packed))


# -- identifiers --------------------------------------------------------------------------


def test_batch_id_is_stable_and_derived_from_vehicle_and_sequence_range_only() -> None:
    expected = hashlib.sha256(b"bavard-batch\0" + VEHICLE.encode() + b"\0"
                              + (100).to_bytes(8, "big") + (150).to_bytes(8, "big")
                              ).hexdigest()[:32]
    assert batch_id(VEHICLE, 100, 150) == expected
    assert small_batch().batch_id == expected
    assert read_envelope(GOOD).batch_id == expected
    # a retry re-encodes at another level, maybe with other records: the same id
    retry = small_batch()
    retry.samples.pop()
    assert read_envelope(encode(retry, level=19)).batch_id == expected
    assert batch_id(VEHICLE, 100, 151) != expected
    assert batch_id(VEHICLE, 101, 150) != expected
    assert batch_id(VEHICLE + "x", 100, 150) != expected
    assert batch_id("a", 0, 0) == "044ff7947586322d7d4c819512576918"  # pinned: never changes


def test_pseudonymous_vehicle_id() -> None:
    secret = b"fleet secret, 32 bytes long....."
    vin = "WVWZZZ1JZXW000001"
    pseudonym = pseudonymous_vehicle_id(vin, secret)
    expected = hmac.new(secret, b"bavard-vehicle\0" + vin.encode(), hashlib.sha256
                        ).hexdigest()[:32]
    assert pseudonym == expected
    assert len(pseudonym) == 32 and vin.lower() not in pseudonym
    assert pseudonymous_vehicle_id(f"  {vin.lower()}\n", secret) == pseudonym
    assert pseudonymous_vehicle_id(vin, secret + b"!") != pseudonym
    assert pseudonymous_vehicle_id("WVWZZZ1JZXW000002", secret) != pseudonym
    with pytest.raises(ValueError, match="at least 16 bytes"):
        pseudonymous_vehicle_id(vin, b"short")
    with pytest.raises(ValueError, match="empty VIN"):
        pseudonymous_vehicle_id("  ", secret)


def test_dbc_fingerprint(tmp_path: Path) -> None:
    a, b = tmp_path / "a.dbc", tmp_path / "b.dbc"
    a.write_bytes(b'VERSION "a"\n')
    b.write_bytes(b'VERSION "b"\n')
    digests = sorted(hashlib.sha256(p.read_bytes()).digest() for p in (a, b))
    expected = hashlib.sha256(b"".join(digests)).hexdigest()
    assert dbc_fingerprint([a, b]) == dbc_fingerprint([str(b), a]) == expected
    renamed = tmp_path / "renamed.dbc"
    renamed.write_bytes(a.read_bytes())
    assert dbc_fingerprint([renamed, b]) == expected
    b.write_bytes(b'VERSION "b"\r\n')
    assert dbc_fingerprint([a, b]) != expected
    assert dbc_fingerprint([]) == hashlib.sha256(b"").hexdigest()
    with pytest.raises(BavardError, match="cannot read"):
        dbc_fingerprint([tmp_path / "missing.dbc"])


# -- bavard batch inspect -----------------------------------------------------------------


def inspect(path: Path, *extra: str) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser()
    batch_cmd.add_arguments(parser)
    args = parser.parse_args(["inspect", str(path), *extra])
    out = io.StringIO()
    with redirect_stdout(out):
        assert batch_cmd.run(args) == 0
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_inspect_prints_the_batch_as_jsonl(tmp_path: Path) -> None:
    batch = small_batch()
    batch.samples.append(Sample(1767225601.0, "can0", "Gear", "Gear", math.nan, "", "後退",
                                OUT_OF_RANGE))
    batch.seq_last = 151
    path = tmp_path / "b.bvb"
    path.write_bytes(encode(batch))
    lines = inspect(path)
    head = lines[0]
    assert head["type"] == "batch" and head["format"] == 1 and head["compression"] == "zstd"
    assert head["batch_id"] == batch.batch_id and head["vehicle_id"] == VEHICLE
    assert (head["seq_first"], head["seq_last"]) == (100, 151)
    assert (head["samples"], head["events"], head["frames"]) == (52, 1, 1)
    assert head["bytes"] == path.stat().st_size
    types = [line["type"] for line in lines[1:]]
    assert types == ["signal"] + ["sample"] * 52 + ["event", "frame"]
    assert lines[1] == {"type": "signal", "channel": "can0", "message": "Engine",
                        "signal": "Rpm", "unit": "rpm", "scale": 0.25, "offset": 0,
                        "minimum": None, "maximum": None, "choices": None}
    assert lines[2] == {"type": "sample", "timestamp": 1767225600.0, "channel": "can0",
                        "message": "Engine", "signal": "Rpm", "value": 800.0, "unit": "rpm"}
    assert lines[-3] == {"type": "sample", "timestamp": 1767225601.0, "channel": "can0",
                         "message": "Gear", "signal": "Gear", "value": "NaN", "unit": "",
                         "label": "後退", "flags": ["out_of_range"]}
    assert lines[-2] == {"type": "event", "timestamp": 1767225600.1, "channel": "can0",
                         "kind": "dtc", "detail": "P0301", "priority": 0}
    assert lines[-1] == {"type": "frame", "timestamp": 1767225600.2, "channel": "can0",
                         "arbitration_id": 0x7DF, "is_extended": False, "is_fd": False,
                         "data": "02010c"}
    assert inspect(path, "--envelope") == [head]


def test_inspect_of_a_damaged_file_is_a_bavard_error(tmp_path: Path) -> None:
    path = tmp_path / "b.bvb"
    path.write_bytes(GOOD[:-1])
    with pytest.raises(BatchFormatError, match=f"{path}: CRC mismatch"):
        inspect(path)
    with pytest.raises(BavardError, match="cannot read"):
        inspect(tmp_path / "missing.bvb")


# -- size on the sample drive -------------------------------------------------------------


def log_batches(log: Path, dbc: Path) -> list[tuple[Batch, list[Frame]]]:
    """``log`` decoded through ``dbc`` with every signal on change (counters and checksums
    not selected, as the demo configures it), cut into 60 s batches: (batch, bus frames)."""
    from agent.config import SelectionConfig, SignalRule
    from agent.decode.dbc_files import load_dbc
    from agent.decode.decoder import ChannelDecoder
    from agent.policy.rules import RuleSet
    from agent.policy.selection import Selector
    from agent.sources.replay import ReplaySource

    db = load_dbc(dbc)
    rules = RuleSet([SignalRule("*", on_change=True)])

    def change_rule(message: str, signal: str) -> tuple[bool, float, float | None]:
        return (True, 0.0, None)

    decoder = ChannelDecoder("can0", [db], Selector.from_config(SelectionConfig(), [db]),
                             change_rule)
    meta = signal_metadata("can0", [db])
    fingerprint = dbc_fingerprint([dbc])
    out: list[tuple[Batch, list[Frame]]] = []
    current: list[Sample] = []
    frames_in: list[Frame] = []
    start: float | None = None
    seq = 0

    def close() -> None:
        nonlocal seq
        batch = Batch(VEHICLE, seq, seq + max(len(current), 1) - 1, fingerprint, list(current))
        out.append((batch.with_metadata(meta), frames_in))
        seq += max(len(current), 1)

    with ReplaySource("log", log, speed=0, channel="can0") as source:
        for frame in source.frames():
            if start is None:
                start = frame.timestamp
            if frame.timestamp - start >= BATCH_SECONDS:
                close()
                current, frames_in, start = [], [], frame.timestamp
            frames_in.append(frame)
            decoded = decoder.decode(frame)
            if decoded is not None:
                current.extend(rules.filter_decoded(decoded))
    close()
    return out


def test_sample_drive_batches_are_lossless_and_small() -> None:
    batches_ = log_batches(SAMPLE, DEMO_DBC)
    assert sum(len(f) for _, f in batches_) == 84_240
    full = [(b, len(f)) for b, f in batches_ if len(f) >= 0.9 * 351 * BATCH_SECONDS]
    assert len(full) == 4
    sizes = []
    for batch, frames_in in full:
        data = encode(batch, level=3)
        assert decode(data) == batch  # lossless, every sample
        sizes.append((len(data), frames_in))
    per_frame = sum(s for s, _ in sizes) / sum(n for _, n in sizes)
    worst = max(s / n for s, n in sizes)
    print(f"\nsample drive, 60 s batches: {per_frame:.2f} bytes per bus frame "
          f"(worst batch {worst:.2f})")
    assert per_frame <= MAX_BYTES_PER_FRAME
    assert worst <= MAX_BYTES_PER_FRAME


# -- the documentation --------------------------------------------------------------------

DOC = ROOT / "docs" / "batch-format.md"


def doc_reader(data: bytes) -> dict[str, Any]:
    """A second reader, written from docs/batch-format.md alone (no agent code): what a
    backend in another language would do. Returns the envelope and the records."""
    assert len(data) >= 14 and data[:4] == b"BVRD" and data[4] == 1
    assert zlib.crc32(data[:-4]) == int.from_bytes(data[-4:], "big")
    e = int.from_bytes(data[6:10], "big")
    envelope = msgpack.unpackb(data[10:10 + e])
    body_bytes = data[10 + e:-4]
    if data[5] == 1:
        body_bytes = zstandard.ZstdDecompressor().decompress(body_bytes)

    def ext(code: int, payload: bytes) -> int:
        assert code == 1
        return int.from_bytes(payload, "big", signed=True)

    body = msgpack.unpackb(body_bytes, ext_hook=ext)

    def times(table: dict[str, Any], n: int) -> list[float]:
        if "time_s" in table:
            return list(table["time_s"])
        t = table["time_us"]
        if n == 0:
            return []
        us = [t[0]]
        for r in t[2:]:
            us.append(us[-1] + t[1] + r)
        return [u / 1e6 for u in us]

    def running_sum(xs: list[int]) -> list[int]:
        out, acc = [], 0
        for x in xs:
            acc += x
            out.append(acc)
        return out

    rows_out = []  # (time key, group, row, column, sample)
    for g, group in enumerate(body["groups"]):
        n = group["rows"]
        ts = times(group, n)
        for c, col in enumerate(group["columns"]):
            present = col.get("present")
            rows = [i for i in range(n) if present is None or present[i // 8] >> (i % 8) & 1]
            if col["kind"] == "plain":
                values = list(col["values"])
            else:
                acc = running_sum(col["values"])
                values = acc if col["kind"] == "int" else [
                    float(r) * col["scale"] + col["offset"] for r in acc]
                for j, i in enumerate(col.get("exc_index", [])):
                    values[i] = col["exc_value"][j]
            if "labels" in col:
                labels = col["labels"]
            else:
                pairs = col.get("label_map", [])
                labels = [next((lbl for v, lbl in pairs if v == x), None) for x in values]
            flags = [0] * len(values)
            for j, i in enumerate(col.get("flag_index", [])):
                flags[i] = col["flag_value"][j]
            for k, row in enumerate(rows):
                key = struct.unpack(">q", struct.pack(">d", ts[row]))[0]
                key = key ^ 0x7FFF_FFFF_FFFF_FFFF if key < 0 else key  # IEEE totalOrder
                rows_out.append(((key, g, row, c), Sample(
                    ts[row], group["channel"], group["message"], col["signal"], values[k],
                    col["unit"], labels[k], flags[k])))
    canonical = [s for _, s in sorted(rows_out, key=lambda x: x[0])]
    if "order" in body:
        canonical = [canonical[p] for p in running_sum(body["order"])]
    ev = body["events"]
    events = list(zip(times(ev, ev["count"]), ev["channel"], ev["kind"], ev["detail"],
                      ev["priority"], strict=True))
    fr = body["frames"]
    frame_list, pos = [], 0
    for i, t in enumerate(times(fr, fr["count"])):
        flags = fr.get("flags", [0] * fr["count"])[i]
        length = fr["length"][i]
        frame_list.append(Frame(t, fr["channels"][fr["channel"][i]], fr["id"][i],
                                bool(flags & 1), bool(flags & 2),
                                fr["data"][pos:pos + length]))
        pos += length
    return {"envelope": envelope, "samples": canonical,
            "events": [Event(*e) for e in events], "frames": frame_list}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches())
def test_a_reader_written_from_the_documentation_reads_what_encode_writes(batch: Batch) -> None:
    data = encode(batch)
    read = doc_reader(data)
    assert read["envelope"]["batch_id"] == batch.batch_id
    same = Batch(batch.vehicle_id, batch.seq_first, batch.seq_last, batch.dbc_fingerprint,
                 read["samples"], read["events"], read["frames"], batch.signals)
    assert same == batch


def test_the_worked_example_of_the_documentation_is_a_real_batch() -> None:
    text = DOC.read_text(encoding="utf-8")
    block = text.split("The whole file, in hex:\n\n```\n", 1)[1].split("```", 1)[0]
    data = bytes.fromhex("".join(block.split()))
    batch = decode(data)
    t0, t1 = 1767225600.000064, 1767225600.010071
    vehicle = pseudonymous_vehicle_id("WVWZZZ1JZXW000001", b"example fleet secret")
    assert batch == Batch(vehicle, 0, 3, "", [
        Sample(t0, "can0", "Engine", "Rpm", 800.25, "rpm"),
        Sample(t0, "can0", "Engine", "Load", 12, "%"),
        Sample(t1, "can0", "Engine", "Rpm", 800.5, "rpm"),
        Sample(t1, "can0", "Gear", "Lever", 3, "", "D"),
    ])
    assert encode(batch, level=0) == data  # the encoder writes exactly these bytes
    assert decode(encode(batch)) == batch
    assert f"vehicle `{vehicle}`" in text
    assert "647 bytes" in text and f"`{batch_id('a', 0, 0)}`" in text


def test_motec_log_batches_are_under_a_third_of_zstd_candump_text() -> None:
    motec = corpus("motec")
    batches_ = log_batches(motec / "can_sample.log", motec / "sample_can_spec.dbc")
    ours = theirs = 0
    compressor = zstandard.ZstdCompressor(level=3)
    for batch, frames_in in batches_:
        data = encode(batch, level=3)
        assert decode(data) == batch
        ours += len(data)
        text = "".join(f"({f.timestamp:.6f}) {f.channel} {f.arbitration_id:03X}#"
                       f"{f.data.hex().upper()}\n" for f in frames_in)
        theirs += len(compressor.compress(text.encode("ascii")))
    print(f"\nmotec log: {ours} bytes in batches, {theirs} bytes of candump text at zstd-3 "
          f"({ours / theirs:.3f})")
    assert ours * 3 < theirs


# -- limits: what a batch may announce, and cost unpacked (docs/batch-format.md §5.1) -------


@pytest.mark.parametrize("records", [0, 50_000])
def test_a_body_that_would_unpack_to_gigabytes_is_refused_before_it_is_built(
        records: int) -> None:
    arrays = limits.body_limit(records) - 5  # the biggest body allowed: all empty arrays
    data = amplifying_batch(arrays, records)
    assert len(data) < 20_000  # what came over the network
    tracemalloc.start()
    try:
        with pytest.raises(BatchFormatError, match=r"body: would take more than \d+ bytes "
                                                   r"unpacked"):
            decode(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * arrays  # the decompressed body; msgpack built nothing


def test_a_batch_announces_at_most_max_records() -> None:
    too_many = limits.MAX_RECORDS + 1
    forged = rebuild(GOOD, set_in("envelope.frames", too_many - GOOD_RECORDS + 1))
    with pytest.raises(BatchFormatError, match=rf"envelope: .* {too_many} records, more than "
                                               rf"the {limits.MAX_RECORDS} a batch may hold"):
        read_envelope(forged)
    events = [Event(1.0, "can0", "dtc", "P0001")] * too_many
    with pytest.raises(BatchFormatError, match="a batch may hold"):
        encode(Batch(VEHICLE, 1, too_many, "", [], events))


def walk(data: bytes) -> int:
    """check_structure made to look at every item (a budget the whole body could not
    take at the costliest, but more than any real structure costs)."""
    return limits.check_structure(data, len(data) * 256 - 1, "body")


def test_depth_and_cut_short_containers_are_refused_without_unpacking() -> None:
    nested = b"\x91" * (limits.MAX_DEPTH - 1) + b"\xc0"
    assert walk(nested) > 0
    for data, problem in [
            (b"\x91" + nested, f"nested deeper than {limits.MAX_DEPTH} levels"),
            (b"\xdd\xff\xff\xff\xff\xc0", "a container of 4294967295 items in 1 bytes"),
            (b"\xd9\x05abc", "cut short"), (b"\xc1", "byte 0xc1 at 0 starts no msgpack item"),
            (b"\xc0\xc0", "1 bytes after the msgpack object")]:
        with pytest.raises(BatchFormatError, match=problem):
            walk(data)


@pytest.mark.parametrize("payload", [
    [[] for _ in range(100_000)], [{} for _ in range(100_000)], [""] * 100_000,
    [-20] * 100_000, [1.5] * 100_000, ["ab"] * 100_000, ["Rückwärts"] * 50_000,
    [b"xy"] * 100_000, [2**40] * 100_000, [{"k": "vv"} for _ in range(50_000)],
    [[1, -200, 70000, None, True] for _ in range(20_000)],
], ids=["empty arrays", "empty maps", "empty strings", "new small ints", "floats", "strings",
        "non-ASCII strings", "bins", "big ints", "maps", "mixed arrays"])
def test_the_walk_estimates_what_msgpack_builds_from_above(payload: list[Any]) -> None:
    data = msgpack.packb(payload)
    estimate = walk(data)
    tracemalloc.start()
    try:
        unpacked = msgpack.unpackb(data, strict_map_key=False, **limits.unpack_options())
        built = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert unpacked == payload
    assert built <= estimate <= 2 * built + 4096


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
                    | st.text(max_size=40) | st.binary(max_size=300),
                    lambda inner: st.lists(inner, max_size=20)
                    | st.dictionaries(st.text(max_size=3), inner, max_size=5), max_leaves=60),
       st.binary(max_size=8))
def test_the_walk_takes_what_msgpack_takes(obj: Any, noise: bytes) -> None:
    for data in (msgpack.packb(obj), msgpack.packb(obj)[:-1] + noise):
        try:
            msgpack.unpackb(data, strict_map_key=False, ext_hook=lambda c, d: d)
        except Exception:
            with suppress(BatchFormatError):  # it may or may not see what is wrong
                walk(data)
            continue
        walk(data)  # valid msgpack within the depth: never refused
