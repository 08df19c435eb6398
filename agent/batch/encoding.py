"""Encoding a batch: its samples grouped into rows and columns, the other tables, the
envelope, all framed by :mod:`.container`.

Samples are grouped per (channel, message) into rows (one row per timestamp, typically
one frame) and per (signal, unit) into columns (:mod:`.columns`) with a presence bitmap
over the rows. The columns of a group come in the order the frame's signals do, as far
as the rows agree on one. When the samples are not in the canonical order
(:mod:`.order`), ``order`` gives each sample's place in it, delta-encoded.
"""

from __future__ import annotations

import heapq
import itertools
import math
import struct
from collections.abc import Sequence
from typing import Any

import zstandard

from agent.batch.columns import deltas, encode_column
from agent.batch.container import ZSTD_MIN_LEVEL, build
from agent.batch.exact import as_float
from agent.batch.ids import batch_id, check_seq
from agent.batch.limits import records_of
from agent.batch.model import Batch, SignalKey, SignalMeta, time_range
from agent.batch.order import Position, canonical_order, is_canonical
from agent.batch.tables import encode_events, encode_frames, encode_signals
from agent.batch.timestamps import encode_times
from agent.errors import BatchFormatError
from agent.frames import Sample


def encode(batch: Batch, level: int = 3) -> bytes:
    """The batch as bytes. ``level``: zstd level (1..22, negative = faster);
    0 stores the body uncompressed. Raises BatchFormatError for a batch that does not
    fit the format (a timestamp that is not a number, a CAN id over 29 bits...)."""
    if type(level) is not int or not ZSTD_MIN_LEVEL <= level <= zstandard.MAX_COMPRESSION_LEVEL:
        raise ValueError(f"zstd level must be an int in {ZSTD_MIN_LEVEL}..22, not {level!r}")
    check_seq(batch.seq_first, batch.seq_last)
    records_of(len(batch.samples), len(batch.events), len(batch.frames))
    for name in ("vehicle_id", "dbc_fingerprint"):
        if not isinstance(getattr(batch, name), str):
            raise BatchFormatError(f"{name} must be a str")
    body = {
        **_encode_samples(batch.samples, batch.signals),
        "signals": encode_signals(batch.signals),
        "events": encode_events(batch.events),
        "frames": encode_frames(batch.frames),
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
    return build(envelope, body, level)


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
    __slots__ = ("channel", "columns", "follows", "index", "last_col", "message", "times")

    def __init__(self, index: int, channel: str, message: str) -> None:
        self.index, self.channel, self.message = index, channel, message
        self.times: list[float] = []
        self.columns: dict[tuple[str, str], _Column] = {}
        self.last_col = -1  # the column of the row's latest sample, -1 in a new row
        self.follows: set[tuple[int, int]] = set()  # (a, b): b came after a in a row

    def ordered_columns(self) -> list[_Column]:
        """The columns in the order their values come in a row (the frame's signal order),
        as far as the rows agree on one; else in order of first appearance."""
        columns = list(self.columns.values())
        if not self.follows:
            return columns
        before: list[set[int]] = [set() for _ in columns]
        after: list[list[int]] = [[] for _ in columns]
        for a, b in self.follows:
            before[b].add(a)
            after[a].append(b)
        ready = [c for c in range(len(columns)) if not before[c]]
        heapq.heapify(ready)
        order: list[int] = []
        while ready:
            a = heapq.heappop(ready)
            order.append(a)
            for b in after[a]:
                before[b].discard(a)
                if not before[b]:
                    heapq.heappush(ready, b)
        if len(order) < len(columns):  # the rows disagree: keep first appearance
            return columns
        return [columns[c] for c in order]


def _same_time(row_ts: float, ts: float) -> bool:
    """``same`` for the hot loop: also True for two NaNs with the same bits."""
    if row_ts == ts:
        return ts != 0.0 or math.copysign(1.0, ts) == math.copysign(1.0, row_ts)
    return ts != ts and row_ts != row_ts and struct.pack(">d", ts) == struct.pack(">d", row_ts)


def _encode_samples(samples: Sequence[Sample], signals: dict[SignalKey, SignalMeta]
                    ) -> dict[str, Any]:
    """``groups`` (and ``order`` when the samples are not in canonical order)."""
    groups: dict[tuple[str, str], _Group] = {}
    # (group, row, column, index in column) of each sample, in the batch's order
    positions: list[Position] = []
    append_position = positions.append
    group: _Group | None = None
    n = 0
    try:
        for n, sample in enumerate(samples):  # noqa: B007  (n names the sample in errors)
            ts, channel, message, signal, value, unit, label, flags = sample
            if type(ts) is not float:
                ts = as_float(ts, "timestamp")
            if group is None or message != group.message or channel != group.channel:
                group = groups.get((channel, message))
                if group is None:
                    _check_str(channel, "channel")
                    _check_str(message, "message")
                    group = groups[(channel, message)] = _Group(len(groups), channel, message)
            column = group.columns.get((signal, unit))
            if column is None:
                _check_str(signal, "signal")
                _check_str(unit, "unit")
                column = group.columns[(signal, unit)] = _Column(len(group.columns), signal,
                                                                 unit)
            times = group.times
            row = len(times) - 1
            if row < 0 or column.last_row == row or not _same_time(times[row], ts):
                times.append(ts)
                row += 1
            elif group.last_col >= 0:
                group.follows.add((group.last_col, column.index))
            column.last_row = row
            group.last_col = column.index
            rows = column.rows
            append_position((group.index, row, column.index, len(rows)))
            rows.append(row)
            column.values.append(value)
            column.labels.append(label)
            column.flags.append(flags)
    except BatchFormatError as exc:
        raise BatchFormatError(f"sample {n}: {exc}") from None
    except (TypeError, ValueError):
        raise BatchFormatError(f"sample {n}: not a Sample: {samples[n]!r}") from None
    group_list = list(groups.values())
    encoded: list[dict[str, Any]] = []
    ordered: list[list[_Column]] = []
    renumber: list[list[int]] = []  # group -> column index -> index in encoded order
    for group in group_list:
        columns = group.ordered_columns()
        ordered.append(columns)
        new_index = [0] * len(columns)
        for i, column in enumerate(columns):
            new_index[column.index] = i
        renumber.append(new_index)
        try:
            encoded.append(_encode_group(group, columns, signals))
        except BatchFormatError as exc:
            raise BatchFormatError(f"{group.channel} {group.message}: {exc}") from None
    out: dict[str, Any] = {"groups": encoded}
    if any(new_index != sorted(new_index) for new_index in renumber):
        positions = [(g, r, renumber[g][c], k) for g, r, c, k in positions]
    all_times = [g.times for g in group_list]
    if not is_canonical(positions, all_times):
        canonical = canonical_order(all_times,
                                    [[c.rows for c in columns] for columns in ordered])
        index = {pos: i for i, pos in enumerate(canonical)}
        out["order"] = deltas([index[pos] for pos in positions])
    return out


def _check_str(x: Any, what: str) -> None:
    if type(x) is not str:
        raise BatchFormatError(f"{what} must be a str, not {x!r}")


def _encode_group(group: _Group, ordered: list[_Column], signals: dict[SignalKey, SignalMeta]
                  ) -> dict[str, Any]:
    n = len(group.times)
    columns = [encode_column(column.signal, column.unit, column.rows, n, column.values,
                             column.labels, column.flags,
                             signals.get((group.channel, group.message, column.signal)))
               for column in ordered]
    return {"channel": group.channel, "message": group.message, "rows": n,
            **encode_times(group.times), "columns": columns}
