"""Decoding a batch: the body read back into samples, events, frames and metadata.

:func:`decode` trusts nothing: whatever the bytes, it returns a Batch or raises
:class:`BatchFormatError` saying what is wrong and where. Every count, index and length
is checked against the others and against the envelope.
"""

from __future__ import annotations

import itertools
from typing import Any

from agent.batch.columns import DecodedColumn, decode_column
from agent.batch.container import Envelope, read_body
from agent.batch.exact import same
from agent.batch.model import Batch
from agent.batch.order import canonical_order
from agent.batch.tables import decode_events, decode_frames, decode_signals
from agent.batch.timestamps import decode_times
from agent.batch.validate import as_map, count_of, fail, get, int_list
from agent.errors import BatchFormatError
from agent.frames import Sample

# (channel, message, timestamps, columns)
_DecodedGroup = tuple[str, str, list[float], list[DecodedColumn]]


def decode(data: bytes | bytearray | memoryview) -> Batch:
    """The batch encoded in ``data``; BatchFormatError for anything else."""
    envelope, body = read_body(data)
    try:
        batch = _decode_body(body, envelope)
    except BatchFormatError:
        raise
    except (TypeError, ValueError, KeyError, IndexError, OverflowError, AttributeError) as exc:
        # a case the checks below missed: still a format error, never a crash
        raise BatchFormatError(f"body: malformed: {type(exc).__name__}: {exc}") from None
    return batch


def _decode_body(raw: Any, env: Envelope) -> Batch:
    body = as_map(raw, "body")
    groups = get(body, "groups", list, "body")
    decoded = [_decode_group(g, f"body.groups[{i}]") for i, g in enumerate(groups)]
    keys = [(g[0], g[1]) for g in decoded]
    if len(set(keys)) != len(keys):
        fail("body.groups", "a (channel, message) appears in two groups")
    samples = _samples_in_order(decoded)
    if "order" in body:
        order = list(itertools.accumulate(int_list(body, "order", "body")))
        if sorted(order) != list(range(len(samples))):
            fail("body.order", f"not a permutation of the {len(samples)} samples")
        samples = [samples[i] for i in order]
    events = decode_events(as_map(get(body, "events", dict, "body"), "body.events"))
    frames = decode_frames(as_map(get(body, "frames", dict, "body"), "body.frames"))
    signals = decode_signals(get(body, "signals", list, "body"))
    for what, got, stated in (("samples", len(samples), env.samples),
                              ("events", len(events), env.events),
                              ("frames", len(frames), env.frames)):
        if got != stated:
            fail("body", f"{got} {what}, the envelope says {stated}")
    batch = Batch(env.vehicle_id, env.seq_first, env.seq_last, env.dbc_fingerprint,
                  samples, events, frames, signals)
    span = batch.time_range
    first, last = env.time_first, env.time_last
    if span is None:
        matches = first is None and last is None
    else:
        matches = (first is not None and last is not None and same(first, span[0])
                   and same(last, span[1]))
    if not matches:
        fail("envelope", f"time range ({first}, {last}) does not match the records' {span}")
    return batch


def _decode_group(raw: Any, where: str) -> _DecodedGroup:
    g = as_map(raw, where)
    channel = get(g, "channel", str, where)
    message = get(g, "message", str, where)
    n = count_of(g, "rows", where)
    if n == 0:
        fail(where, "a group without rows")
    times = decode_times(g, n, where)
    columns = []
    covered = bytearray(n)
    seen: set[tuple[str, str]] = set()
    for i, raw_col in enumerate(get(g, "columns", list, where)):
        cw = f"{where}.columns[{i}]"
        col = decode_column(as_map(raw_col, cw), n, cw)
        if (col[0], col[1]) in seen:
            fail(cw, f"signal {col[0]!r} with unit {col[1]!r} appears twice")
        seen.add((col[0], col[1]))
        for r in col[2]:
            covered[r] = 1
        columns.append(col)
    if not all(covered):
        fail(where, f"row {covered.index(0)} has no value in any column")
    return channel, message, times, columns


def _samples_in_order(groups: list[_DecodedGroup]) -> list[Sample]:
    out: list[Sample] = []
    append = out.append
    for g, r, c, k in canonical_order([g[2] for g in groups],
                                      [[c[2] for c in g[3]] for g in groups]):
        channel, message, times, columns = groups[g]
        signal, unit, _, values, labels, flags = columns[c]
        append(Sample(times[r], channel, message, signal, values[k], unit, labels[k], flags[k]))
    return out
