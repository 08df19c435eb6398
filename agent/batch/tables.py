"""The body's tables besides the samples: events, raw frames and signal metadata.

Events and frames are stored column by column (``count``, timestamps as in
:mod:`.timestamps`, then one array per field); frames keep their channel names once in
``channels``, their flags only when one is set, and their data concatenated in ``data``
with a ``length`` each. Signal metadata is a list of maps, one per signal.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agent.batch.exact import as_float
from agent.batch.model import SignalKey, SignalMeta
from agent.batch.timestamps import decode_times, encode_times
from agent.batch.validate import as_map, count_of, fail, get, int_list, number, str_list
from agent.errors import BatchFormatError
from agent.frames import Event, Frame

MAX_CAN_ID = (1 << 29) - 1
MAX_FRAME_DATA = 64
FRAME_EXTENDED, FRAME_FD = 1, 2


# -- encode ----------------------------------------------------------------------------------


def encode_signals(signals: dict[SignalKey, SignalMeta]) -> list[dict[str, Any]]:
    out = []
    for key, meta in signals.items():
        if not (isinstance(key, tuple) and len(key) == 3 and all(isinstance(k, str) for k in key)):
            raise BatchFormatError(f"signal metadata key must be (channel, message, signal), "
                                   f"not {key!r}")
        if not isinstance(meta, SignalMeta):
            raise BatchFormatError(f"signal metadata of {key!r} must be a SignalMeta")
        numbers = (("scale", meta.scale, False), ("offset", meta.offset, False),
                   ("minimum", meta.minimum, True), ("maximum", meta.maximum, True))
        for name, x, optional in numbers:
            if not (type(x) in (int, float) or (optional and x is None)):
                raise BatchFormatError(f"signal metadata of {key!r}: {name} must be a number, "
                                       f"not {x!r}")
        if not isinstance(meta.unit, str) or (meta.choices is not None and not (
                isinstance(meta.choices, dict) and all(
                    type(r) is int and type(lbl) is str for r, lbl in meta.choices.items()))):
            raise BatchFormatError(f"signal metadata of {key!r}: unit must be a str, choices "
                                   f"a dict of int to str")
        out.append({
            "channel": key[0], "message": key[1], "signal": key[2], "unit": meta.unit,
            "scale": meta.scale, "offset": meta.offset,
            "minimum": meta.minimum, "maximum": meta.maximum,
            "choices": None if meta.choices is None else [[r, lbl] for r, lbl in
                                                          meta.choices.items()],
        })
    return out


def encode_events(events: Sequence[Event]) -> dict[str, Any]:
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
        for col, x in zip(cols, (as_float(ts, f"event {n}: timestamp"), channel, kind, detail,
                                 priority), strict=True):
            col.append(x)
    return {"count": len(events), **encode_times(cols[0]), "channel": cols[1],
            "kind": cols[2], "detail": cols[3], "priority": cols[4]}


def encode_frames(frames: Sequence[Frame]) -> dict[str, Any]:
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
        times.append(as_float(ts, f"frame {n}: timestamp"))
        if not isinstance(ch, str):
            raise BatchFormatError(f"frame {n}: channel must be a str")
        if type(fid) is not int or not 0 <= fid <= MAX_CAN_ID:
            raise BatchFormatError(f"frame {n}: arbitration id must be an int in 0..2**29-1, "
                                   f"not {fid!r}")
        if (not isinstance(payload, bytes | bytearray | memoryview)
                or len(payload) > MAX_FRAME_DATA):
            raise BatchFormatError(f"frame {n}: data must be at most 64 bytes")
        channel.append(channels.setdefault(ch, len(channels)))
        ids.append(fid)
        flags.append((FRAME_EXTENDED if is_extended else 0) | (FRAME_FD if is_fd else 0))
        lengths.append(len(payload))
        data += payload
    out: dict[str, Any] = {"count": len(frames), **encode_times(times),
                           "channels": list(channels), "channel": channel, "id": ids}
    if any(flags):
        out["flags"] = flags
    out["length"] = lengths
    out["data"] = bytes(data)
    return out


# -- decode ----------------------------------------------------------------------------------


def decode_events(m: dict[str, Any]) -> list[Event]:
    w = "body.events"
    n = count_of(m, "count", w)
    times = decode_times(m, n, w)
    channel = str_list(m, "channel", w, n)
    kind = str_list(m, "kind", w, n)
    detail = str_list(m, "detail", w, n)
    priority = get(m, "priority", list, w)
    if len(priority) != n or not all(type(p) is int for p in priority):
        fail(f"{w}.priority", f"expected {n} ints")
    return [Event(*e) for e in zip(times, channel, kind, detail, priority, strict=True)]


def decode_frames(m: dict[str, Any]) -> list[Frame]:
    w = "body.frames"
    n = count_of(m, "count", w)
    times = decode_times(m, n, w)
    channels = get(m, "channels", list, w)
    if not all(type(c) is str for c in channels):
        fail(f"{w}.channels", "expected strings")
    channel = int_list(m, "channel", w, length=n, lo=0, hi=max(len(channels) - 1, 0))
    if n and not channels:
        fail(f"{w}.channels", "empty, but there are frames")
    ids = int_list(m, "id", w, length=n, lo=0, hi=MAX_CAN_ID)
    flags = int_list(m, "flags", w, length=n, lo=0, hi=FRAME_EXTENDED | FRAME_FD,
                     optional=True) or [0] * n
    lengths = int_list(m, "length", w, length=n, lo=0, hi=MAX_FRAME_DATA)
    data = get(m, "data", bytes, w)
    if sum(lengths) != len(data):
        fail(f"{w}.data", f"{len(data)} bytes, the lengths add up to {sum(lengths)}")
    out = []
    pos = 0
    for ts, c, fid, fl, length in zip(times, channel, ids, flags, lengths, strict=True):
        out.append(Frame(ts, channels[c], fid, bool(fl & FRAME_EXTENDED), bool(fl & FRAME_FD),
                         data[pos:pos + length]))
        pos += length
    return out


def decode_signals(entries: list[Any]) -> dict[SignalKey, SignalMeta]:
    out: dict[SignalKey, SignalMeta] = {}
    for i, raw in enumerate(entries):
        w = f"body.signals[{i}]"
        m = as_map(raw, w)
        key = (get(m, "channel", str, w), get(m, "message", str, w), get(m, "signal", str, w))
        choices_raw = get(m, "choices", (list, type(None)), w)
        choices = None
        if choices_raw is not None:
            choices = {}
            for pair in choices_raw:
                if not (type(pair) is list and len(pair) == 2 and type(pair[0]) is int
                        and type(pair[1]) is str):
                    fail(f"{w}.choices", "expected [int, string] pairs")
                choices[pair[0]] = pair[1]
        if key in out:
            fail(w, f"metadata of {key} given twice")
        out[key] = SignalMeta(
            unit=get(m, "unit", str, w),
            scale=number(m.get("scale"), f"{w}.scale"),
            offset=number(m.get("offset"), f"{w}.offset"),
            minimum=number(m.get("minimum"), f"{w}.minimum", optional=True),
            maximum=number(m.get("maximum"), f"{w}.maximum", optional=True),
            choices=choices,
        )
    return out
