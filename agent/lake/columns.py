"""A batch as Arrow tables: its samples, events and frames, one table per kind and UTC day.

The columns (docs/lake.md has the same, with example queries)::

    samples  batch_id, timestamp, channel, message, signal, value, raw, unit, label,
             flags
    events   batch_id, timestamp, channel, event, detail, priority
    frames   batch_id, timestamp, channel, id, is_extended, is_fd, data

- ``timestamp`` is ``timestamp[us, UTC]``: the batch's float seconds rounded to the
  nearest microsecond. A timestamp that is NaN, infinite or outside the years
  1 to 9999 is null, and its row goes to the day of the batch's first valid timestamp
  (1970-01-01 when it has none), so that a batch always lands in the same places.
- ``value`` is float64: ints and bools as floats (an int beyond float64's range as
  ±inf).
- ``raw`` is the DBC's raw integer where the batch has it: the int ``r`` with
  ``float64(r) * scale + offset`` equal to the value bit for bit (docs/batch-format.md
  §4.6), with ``scale`` and ``offset`` from the batch's signal metadata. Null without
  metadata, for a value no raw integer gives, or one beyond int64.
- ``flags`` is the sample's flag bits (1 out of range, 2 truncated), ``label`` the DBC
  value label. An event's kind is the ``event`` column (``kind`` is the partition).
- Names are plain strings in Arrow; the Parquet writer dictionary-encodes them.
- Rows are sorted: samples by channel, message, signal, then time; events and frames
  by time (:data:`SORT_KEYS`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from agent.batch import Batch, SignalKey, SignalMeta
from agent.batch.exact import INT64_MAX, INT64_MIN, MAX_EXACT, same

KINDS = ("samples", "events", "frames")
TIMESTAMP = pa.timestamp("us", tz="UTC")
SECONDS_PER_DAY = 86_400
EPOCH_DAY = date(1970, 1, 1)
MAX_RAW = float(2**63 - 1024)  # the largest float64 below 2**63: a raw that fits int64
# datetime's range (years 1..9999): what every engine can show as a date
MIN_TS = datetime(1, 1, 1, tzinfo=UTC).timestamp()
MAX_TS = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()

SCHEMAS = {
    "samples": pa.schema([
        ("batch_id", pa.string()), ("timestamp", TIMESTAMP), ("channel", pa.string()),
        ("message", pa.string()), ("signal", pa.string()), ("value", pa.float64()),
        ("raw", pa.int64()), ("unit", pa.string()), ("label", pa.string()),
        ("flags", pa.int32())]),
    "events": pa.schema([
        ("batch_id", pa.string()), ("timestamp", TIMESTAMP), ("channel", pa.string()),
        ("event", pa.string()), ("detail", pa.string()), ("priority", pa.int64())]),
    "frames": pa.schema([
        ("batch_id", pa.string()), ("timestamp", TIMESTAMP), ("channel", pa.string()),
        ("id", pa.int64()), ("is_extended", pa.bool_()), ("is_fd", pa.bool_()),
        ("data", pa.binary())]),
}
# how the Parquet writer encodes columns: names (and on-change values, flags) from a
# dictionary; times and raw integers as deltas (sorted per signal, they barely move)
DICTIONARY_COLUMNS = ["batch_id", "channel", "message", "signal", "unit", "label", "value",
                      "flags", "event", "detail"]
DELTA_COLUMNS = ["timestamp", "raw"]
# the order of rows in a file: samples per signal, then in time (a query for a few
# signals reads only their pages, and each signal's values and times compress as a run);
# events and frames in time. Stable: equal keys keep the batch's order.
SORT_KEYS = {
    "samples": [("channel", "ascending"), ("message", "ascending"), ("signal", "ascending"),
                ("timestamp", "ascending")],
    "events": [("timestamp", "ascending")],
    "frames": [("timestamp", "ascending")],
}


def batch_tables(batch: Batch, batch_id: str) -> dict[tuple[str, str], pa.Table]:
    """``{(kind, "YYYY-MM-DD"): table}`` for every kind the batch has rows of."""
    built = {"samples": _samples(batch, batch_id), "events": _events(batch, batch_id),
             "frames": _frames(batch, batch_id)}
    tables = {kind: table for kind, table in built.items() if table.num_rows}
    if not tables:
        return {}
    default_day = _first_day(tables.values())
    out: dict[tuple[str, str], pa.Table] = {}
    for kind, table in tables.items():
        for day, part in split_by_day(table.sort_by(SORT_KEYS[kind]), default_day):
            out[(kind, day_name(day))] = part
    return out


def split_by_day(table: pa.Table, default_day: int) -> list[tuple[int, pa.Table]]:
    """The table's rows per UTC day (days since 1970), in day order; rows without a
    timestamp go to ``default_day``."""
    days = pc.fill_null(pc.cast(pc.cast(table.column("timestamp"), pa.date32()), pa.int32()),
                        default_day)
    unique = sorted(pc.unique(days).to_pylist())
    if len(unique) == 1:
        return [(unique[0], table)]
    return [(d, table.filter(pc.equal(days, d))) for d in unique]


def day_name(day: int) -> str:
    return (EPOCH_DAY + timedelta(days=day)).isoformat()


def day_number(name: str) -> int:
    """``YYYY-MM-DD`` as days since 1970; ValueError when it is not such a date."""
    d = datetime.strptime(name, "%Y-%m-%d").replace(tzinfo=UTC)
    if d.date().isoformat() != name:
        raise ValueError(f"not a YYYY-MM-DD date: {name!r}")
    return int(d.timestamp()) // SECONDS_PER_DAY


def _first_day(tables: Any) -> int:
    firsts = [pc.min(t.column("timestamp").cast(pa.int64())).as_py() for t in tables]
    valid = [m for m in firsts if m is not None]
    return min(valid) // (SECONDS_PER_DAY * 1_000_000) if valid else 0


def timestamps(seconds: Sequence[float]) -> pa.Array:
    """Float seconds as ``timestamp[us, UTC]``, null where there is no such instant."""
    ts = pa.array(seconds, pa.float64())
    valid = pc.and_kleene(pc.greater_equal(ts, MIN_TS), pc.less_equal(ts, MAX_TS))
    micros = pc.round(pc.multiply(pc.if_else(valid, ts, 0.0), 1e6))
    return pc.if_else(valid, pc.cast(micros, pa.int64()), None).cast(TIMESTAMP)


def _samples(batch: Batch, bid: str) -> pa.Table:
    samples = batch.samples
    n = len(samples)
    if not n:
        return SCHEMAS["samples"].empty_table()
    ts, channel, message, signal, values, unit, label, flags = zip(*samples, strict=True)
    value = _float_values(values)
    return pa.Table.from_arrays([
        pa.array([bid] * n, pa.string()), timestamps(ts), pa.array(channel, pa.string()),
        pa.array(message, pa.string()), pa.array(signal, pa.string()), value,
        _raws(samples, value, batch.signals), pa.array(unit, pa.string()),
        pa.array(label, pa.string()), pa.array(flags, pa.int32()),
    ], schema=SCHEMAS["samples"])


def _events(batch: Batch, bid: str) -> pa.Table:
    events = batch.events
    if not events:
        return SCHEMAS["events"].empty_table()
    ts, channel, kind, detail, priority = zip(*events, strict=True)
    return pa.Table.from_arrays([
        pa.array([bid] * len(events), pa.string()), timestamps(ts),
        pa.array(channel, pa.string()), pa.array(kind, pa.string()),
        pa.array(detail, pa.string()), pa.array([_int64(p) for p in priority], pa.int64()),
    ], schema=SCHEMAS["events"])


def _frames(batch: Batch, bid: str) -> pa.Table:
    frames = batch.frames
    if not frames:
        return SCHEMAS["frames"].empty_table()
    ts, channel, ids, ext, fd, data = zip(*frames, strict=True)
    return pa.Table.from_arrays([
        pa.array([bid] * len(frames), pa.string()), timestamps(ts),
        pa.array(channel, pa.string()), pa.array(ids, pa.int64()),
        pa.array([bool(x) for x in ext], pa.bool_()), pa.array([bool(x) for x in fd], pa.bool_()),
        pa.array([bytes(d) for d in data], pa.binary()),
    ], schema=SCHEMAS["frames"])


def _float_values(values: Sequence[Any]) -> pa.Array:
    """The values as float64; the slow path only for ints beyond float64's range."""
    try:
        return pa.array(values, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        pass
    floats = []
    for v in values:
        try:
            floats.append(float(v))
        except OverflowError:
            floats.append(math.inf if v > 0 else -math.inf)
    return pa.array(floats, pa.float64())


def _raws(samples: Sequence[Any], value: pa.Array,
          signals: dict[SignalKey, SignalMeta]) -> pa.Array:
    """The raw column: :func:`raw_of` for every sample, computed on whole columns (ints
    beyond 2**53, which float64 does not hold exactly, one by one)."""
    n = len(samples)
    conversions = [(key, m.scale, m.offset) for key, m in signals.items() if m.scale]
    if not conversions:
        return pa.nulls(n, pa.int64())
    index = {key: i for i, (key, _s, _o) in enumerate(conversions)}
    which = pa.array([index.get((s[1], s[2], s[3])) for s in samples], pa.int32())
    scale = pc.take(pa.array([float(c[1]) for c in conversions], pa.float64()), which)
    offset = pc.take(pa.array([float(c[2]) for c in conversions], pa.float64()), which)
    r = pc.round(pc.divide(pc.subtract(value, offset), scale))
    fits = pc.and_kleene(pc.greater_equal(r, -MAX_RAW), pc.less_equal(r, MAX_RAW))
    r = pc.if_else(fits, r, None)
    back = pc.add(pc.multiply(r, scale), offset)
    # equal bit for bit: == says 0.0 == -0.0, so a -0.0 value needs a -0.0 back
    negative_zero = pc.and_(pc.equal(value, 0.0), pc.less(pc.divide(1.0, value), 0.0))
    back_negative_zero = pc.and_(pc.equal(back, 0.0), pc.less(pc.divide(1.0, back), 0.0))
    exact = pc.and_(pc.equal(back, value), pc.equal(negative_zero, back_negative_zero))
    raws = pc.if_else(exact, pc.cast(pc.if_else(exact, r, 0.0), pa.int64()), None)
    big = [i for i, s in enumerate(samples)
           if isinstance(s[4], int) and not -MAX_EXACT <= s[4] <= MAX_EXACT]
    if not big:
        return raws
    fixed = raws.to_pylist()
    for i in big:
        c = conversions[index[key]] if (key := samples[i][1:4]) in index else None
        fixed[i] = None if c is None else raw_of(samples[i][4], c[1], c[2])
    return pa.array(fixed, pa.int64())


def raw_of(value: Any, scale: int | float, offset: int | float) -> int | None:
    """The int r with ``float64(r) * scale + offset`` equal to ``value`` (for an int value
    and int scaling: ``r * scale + offset == value``), within int64; None otherwise."""
    if isinstance(value, int):  # bool too
        if isinstance(scale, int) and isinstance(offset, int):
            r, rest = divmod(int(value) - offset, scale)
            return r if not rest and INT64_MIN <= r <= INT64_MAX else None
        value = float(value) if abs(value) < 2**63 else math.nan
    if not isinstance(value, float) or not math.isfinite(value):
        return None
    q = (value - offset) / scale
    if not -MAX_RAW <= q <= MAX_RAW:  # an overflow to inf included
        return None
    r = round(q)
    return r if same(float(r) * scale + offset, value) else None


def _int64(x: Any) -> int | None:
    return x if isinstance(x, int) and INT64_MIN <= x <= INT64_MAX else None
