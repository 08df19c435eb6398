"""Decode the frames of one channel through its DBC files.

The result is one :class:`~agent.frames.Decoded` record per frame (its
selected signals' values side by side), not one object per signal: cheaper to
make, and already in the per-message columnar shape the store wants.

Fast path: each message is compiled once into a generated function
(:mod:`agent.decode.compile`). For messages whose selected signals are all
kept only on change, a frame whose selected bits did not change since the
last frame with the same multiplexer value is skipped before decoding;
counters and checksums ("volatile" signals) are masked out of that test.

Nothing is dropped silently: unknown ids, frames shorter than the DBC says,
unknown multiplexer values and values outside the DBC's range are counted per
id in :class:`DecodeStats`; short frames and out-of-range values are still
decoded, their values flagged ``TRUNCATED`` / ``OUT_OF_RANGE``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.decode.compile import CompiledMessage, big_word_mask, bit_field, compile_message
from agent.frames import OUT_OF_RANGE, TRUNCATED, Decoded, Frame, SignalInfo
from agent.policy.selection import any_matches

log = logging.getLogger(__name__)

EXTENDED = 1 << 31  # key bit that separates 29-bit from 11-bit ids


@dataclass
class DecodeStats:
    frames: int = 0
    decoded: int = 0
    unchanged: int = 0  # skipped by the change filter: same selected bits as before
    samples: int = 0
    unknown: Counter[int] = field(default_factory=Counter)  # id -> frames
    truncated: Counter[int] = field(default_factory=Counter)  # id -> frames shorter than DBC
    excess: Counter[int] = field(default_factory=Counter)  # id -> frames longer than DBC
    bad_mux: Counter[int] = field(default_factory=Counter)  # id -> unknown multiplexer value
    out_of_range: Counter[tuple[int, str]] = field(default_factory=Counter)  # (id, signal)


@dataclass
class _Entry:
    compiled: CompiledMessage
    skippable: bool
    change_mask: int
    selector_mask: int
    refresh: float | None  # decode an unchanged frame anyway after this long (heartbeats)
    last: dict[int, tuple[int, float]] = field(default_factory=dict)  # selector -> (bits, ts)


# rule(message, signal) -> (on_change, min_period, max_period) or None when not on-change
ChangeRule = Callable[[str, str], tuple[bool, float, float | None]]


class ChannelDecoder:
    """Turns frames of one channel into samples.

    ``databases``: cantools databases, earlier ones win on duplicate ids.
    ``wanted(message, signal)``: the selection. ``change_rule``: tells which
    signals are kept only on change, which enables the change filter.
    """

    def __init__(
        self,
        channel: str,
        databases: Sequence[Any],
        wanted: Callable[[str, str], bool] = lambda m, s: True,
        change_rule: ChangeRule | None = None,
        volatile: Iterable[str] = (),
    ) -> None:
        self.channel = channel
        self.stats = DecodeStats()
        self._exact: dict[int, _Entry] = {}
        # 11-bit messages, for extended frames with small ids (candump's 8-digit ids)
        self._standard: dict[int, _Entry] = {}
        self._known: set[int] = set()  # ids defined in the DBCs, selected or not
        volatile = tuple(volatile)
        for db in databases:
            for message in db.messages:
                key = message.frame_id | (EXTENDED if message.is_extended_frame else 0)
                if key in self._known:
                    log.warning("%s: message %s (0x%X) is defined twice; the first one wins",
                                channel, message.name, message.frame_id)
                    continue
                self._known.add(key)
                compiled = compile_message(message, wanted)
                if compiled is None:
                    continue
                entry = self._entry(message, compiled, wanted, change_rule, volatile)
                self._exact[key] = entry
                if not message.is_extended_frame:
                    self._standard[message.frame_id] = entry

    @staticmethod
    def _entry(message: Any, compiled: CompiledMessage, wanted: Callable[[str, str], bool],
               change_rule: ChangeRule | None, volatile: tuple[str, ...]) -> _Entry:
        selected = [s for s in message.signals if wanted(message.name, s.name)]
        rules = [change_rule(message.name, s.name) for s in selected] if change_rule else []
        skippable = bool(rules) and all(on and min_period == 0 for on, min_period, _ in rules)
        refresh_periods = [r[2] for r in rules if r[2] is not None]
        change_mask = compiled.selector_mask
        for s in selected:
            if not any_matches(volatile, message.name, s.name):
                change_mask |= big_word_mask(bit_field(s, message.length), message.length)
        return _Entry(compiled, skippable, change_mask, compiled.selector_mask,
                      min(refresh_periods) if refresh_periods else None)

    def is_known(self, frame: Frame) -> bool:
        fid = frame.arbitration_id
        return (fid | EXTENDED if frame.is_extended else fid) in self._known or (
            frame.is_extended and fid in self._known)

    def decode(self, frame: Frame) -> Decoded | None:
        """The selected signals of ``frame``; None when unknown, unselected or unchanged."""
        stats = self.stats
        stats.frames += 1
        fid = frame.arbitration_id
        entry = self._exact.get(fid | EXTENDED if frame.is_extended else fid)
        if entry is None:
            # candump marks an 8-hex-digit id extended even when the DBC says 11-bit
            entry = self._standard.get(fid) if frame.is_extended else None
            if entry is None:
                if not self.is_known(frame):
                    stats.unknown[fid] += 1
                return None
        data = frame.data
        compiled = entry.compiled
        if len(data) != compiled.length:
            if len(data) < compiled.length:
                return self._decode_short(frame, entry)
            stats.excess[fid] += 1
            data = data[: compiled.length]
        if entry.skippable:
            ts = frame.timestamp
            word = int.from_bytes(data, "big")
            selector = word & entry.selector_mask
            bits = word & entry.change_mask
            previous = entry.last.get(selector)
            if previous is not None and previous[0] == bits and (
                entry.refresh is None or ts - previous[1] < entry.refresh
            ):
                stats.unchanged += 1
                return None
            entry.last[selector] = (bits, ts)
        try:
            infos, values, labels, in_range = compiled.decode(data)
        except KeyError as exc:
            self._bad_mux(fid, compiled.name, exc)
            return None
        stats.decoded += 1
        stats.samples += len(values)
        if in_range:
            return Decoded(frame.timestamp, frame.channel, compiled.name, infos, values, labels,
                           None)
        return Decoded(frame.timestamp, frame.channel, compiled.name, infos, values, labels,
                       self._range_flags(fid, infos, values, 0))

    def _range_flags(self, fid: int, infos: tuple[SignalInfo, ...], values: tuple[Any, ...],
                     base: int) -> tuple[int, ...]:
        flags = []
        for info, value in zip(infos, values, strict=True):
            lo, hi = info.minimum, info.maximum
            if lo is not None and hi is not None and not lo <= value <= hi:
                self.stats.out_of_range[(fid, info.name)] += 1
                flags.append(base | OUT_OF_RANGE)
            else:
                flags.append(base)
        return tuple(flags)

    def _decode_short(self, frame: Frame, entry: _Entry) -> Decoded | None:
        """A frame shorter than the DBC says: the signals that fit, flagged TRUNCATED."""
        compiled = entry.compiled
        fid = frame.arbitration_id
        self.stats.truncated[fid] += 1
        available = len(frame.data)
        if available < compiled.selector_bytes:
            return None
        try:
            infos, values, labels, _ = compiled.decode(frame.data.ljust(compiled.length, b"\0"))
        except KeyError as exc:
            self._bad_mux(fid, compiled.name, exc)
            return None
        keep = [i for i, info in enumerate(infos) if info.needed_bytes <= available]
        if not keep:
            return None
        infos = tuple(infos[i] for i in keep)
        values = tuple(values[i] for i in keep)
        labels = tuple(labels[i] for i in keep) if labels is not None else None
        self.stats.decoded += 1
        self.stats.samples += len(values)
        return Decoded(frame.timestamp, frame.channel, compiled.name, infos, values, labels,
                       self._range_flags(fid, infos, values, TRUNCATED))

    def _bad_mux(self, fid: int, name: str, exc: KeyError) -> None:
        if not self.stats.bad_mux[fid]:
            log.warning("%s: %s (0x%X): unknown multiplexer value %s", self.channel, name, fid,
                        exc.args[0] if exc.args else "?")
        self.stats.bad_mux[fid] += 1
