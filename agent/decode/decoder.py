"""Decode the frames of one channel through its DBC files.

The result is one :class:`~agent.frames.Decoded` record per frame (its
selected signals' values side by side), not one object per signal: cheaper to
make, and already in the per-message columnar shape the store wants.

Fast path: each message is compiled once into a generated function
(:mod:`agent.decode.compile`); ``decode_many(frames)`` decodes a chunk of frames
(what the pipeline hands on) with one dict look-up and one call per frame, and
makes the chunk's records and counts at once; ``decode(frame)`` does the same
for one frame. For messages whose selected signals are all
kept only on change (no heartbeat), a frame whose selected bits did not
change since the last frame with the same multiplexer value is skipped before
decoding; counters and checksums ("volatile" signals: recognised by name, by
the DBC attribute ``BavardVolatile`` or by ``selection.volatile``, see
:mod:`agent.volatile`) are masked out of that test, or no frame that carries
one would ever be unchanged.

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
from itertools import repeat
from operator import itemgetter
from typing import Any

from agent.decode.compile import (
    ChangeFilter,
    CompiledMessage,
    DecodeFn,
    Hooks,
    Record,
    big_word_mask,
    bit_field,
    compile_message,
    multiplexer_mask,
)
from agent.frames import OUT_OF_RANGE, TRUNCATED, Decoded, Frame, SignalInfo
from agent.volatile import Volatility

log = logging.getLogger(__name__)

EXTENDED = 1 << 31  # key bit that separates 29-bit from 11-bit ids
_ID = itemgetter(2)  # a Frame's arbitration_id
MAX_IGNORED = 1 << 16  # ids remembered as unknown or unselected (a flood of ids is bounded)


@dataclass(slots=True, repr=False, eq=False)
class DecodeStats:
    """What a decoder did with its frames, per id where it matters. ``unchanged`` and
    ``out_of_range`` read counts that the compiled decoders keep up themselves."""

    decoded: int = 0
    unknown: Counter[int] = field(default_factory=Counter)  # id -> frames
    truncated: Counter[int] = field(default_factory=Counter)  # id -> frames shorter than DBC
    excess: Counter[int] = field(default_factory=Counter)  # id -> frames longer than DBC
    bad_mux: Counter[int] = field(default_factory=Counter)  # id -> unknown multiplexer value
    _out_of_range: Counter[tuple[int, str]] = field(default_factory=Counter)
    # frames skipped by the change filter (same selected bits as before), in a list that
    # the compiled decoders add to themselves
    _unchanged: list[int] = field(default_factory=lambda: [0])
    # (id, signal names, their out-of-range counts) that compiled decoders keep up
    _counted: list[tuple[int, tuple[str, ...], list[int]]] = field(default_factory=list)

    @property
    def unchanged(self) -> int:
        """Frames skipped by the change filter: same selected bits as before."""
        return self._unchanged[0]

    @unchanged.setter
    def unchanged(self, value: int) -> None:
        self._unchanged[0] = value

    @property
    def out_of_range(self) -> Counter[tuple[int, str]]:
        """(id, signal) -> values outside the DBC's range, the compiled decoders' counts
        included (they count in a list of their own: cheaper per frame than a Counter)."""
        for fid, names, counts in self._counted:
            for i, n in enumerate(counts):
                if n:
                    self._out_of_range[(fid, names[i])] += n
                    counts[i] = 0
        return self._out_of_range

    def count_out_of_range(self, fid: int, names: tuple[str, ...], counts: list[int]) -> None:
        """Read ``counts[i]`` as the out-of-range values of ``(fid, names[i])`` from now on."""
        if names:
            self._counted.append((fid, names, counts))

    def _fields(self) -> tuple[Any, ...]:
        return (self.decoded, self.unchanged, self.unknown, self.truncated, self.excess,
                self.bad_mux, self.out_of_range)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DecodeStats):
            return NotImplemented
        return self._fields() == other._fields()

    def __repr__(self) -> str:
        return ("DecodeStats(decoded={!r}, unchanged={!r}, unknown={!r}, truncated={!r}, "
                "excess={!r}, bad_mux={!r}, out_of_range={!r})".format(*self._fields()))


# rule(message, signal) -> (on_change, min_period, max_period)
ChangeRule = Callable[[str, str], tuple[bool, float, float | None]]


class ChannelDecoder:
    """Turns frames of one channel into :class:`Decoded` records.

    ``databases``: cantools databases, earlier ones win on duplicate ids.
    ``wanted(message, signal)``: the selection. ``change_rule``: tells which
    signals are kept only on change, which enables the change filter.
    ``volatile``: which signals the change filter ignores, as a
    :class:`~agent.volatile.Volatility` or its patterns (``selection.volatile``);
    counters and checksums are recognised by name and DBC attribute either way.
    """

    def __init__(
        self,
        channel: str,
        databases: Sequence[Any],
        wanted: Callable[[str, str], bool] = lambda m, s: True,
        change_rule: ChangeRule | None = None,
        volatile: Volatility | Iterable[str] = (),
    ) -> None:
        self.channel = channel
        self.wanted = wanted  # the selection (agent.sources.bcm_plan reads it)
        self.stats = DecodeStats()
        self._exact: dict[int, CompiledMessage] = {}
        # 11-bit messages, for extended frames with small ids (candump's 8-digit ids)
        self._standard: dict[int, CompiledMessage] = {}
        self._known: set[int] = set()  # ids defined in the DBCs, selected or not
        #: key -> (cantools message, its change filter or None) for every message with a
        #: selected signal: what a kernel-side content filter (CAN_BCM) is built from
        self.selected: dict[int, tuple[Any, ChangeFilter | None]] = {}
        volatility = volatile if isinstance(volatile, Volatility) else Volatility(volatile)
        hooks = Hooks(other_length=self._decode_checked, bad_mux=self._bad_mux,
                      unchanged=self.stats._unchanged)
        for db in databases:
            for message in db.messages:
                key = message.frame_id | (EXTENDED if message.is_extended_frame else 0)
                if key in self._known:
                    log.warning("%s: message %s (0x%X) is defined twice; the first one wins",
                                channel, message.name, message.frame_id)
                    continue
                self._known.add(key)
                change = _change_filter(message, wanted, change_rule, volatility)
                compiled = compile_message(message, wanted, change, hooks)
                if compiled is None:
                    continue
                self.stats.count_out_of_range(message.frame_id, compiled.range_names,
                                              compiled.range_counts)
                self.selected[key] = (message, change)
                self._exact[key] = compiled
                if not message.is_extended_frame:
                    self._standard[message.frame_id] = compiled
        self._unknown: list[Frame] = []  # frames of unknown ids, counted once per chunk
        self._unselected: list[Frame] = []  # frames of ids with no selected signal
        # key -> what decodes the frames with that key: a compiled decoder, or (learnt
        # from the frames, bounded) the append of one of the lists above
        self._table: dict[int, DecodeFn] = {
            key: c.decode for key, c in self._exact.items()}
        self.decode, self.decode_many = self._fast_paths()

    def _fast_paths(self) -> tuple[Callable[[Frame], Decoded | None],
                                   Callable[[Sequence[Frame]], list[Decoded]]]:
        """``decode`` and ``decode_many``, specialised: closures over local names, one
        dict look-up and one call for each frame. What the call does not decode
        itself (first sight of an id, a wrong length) goes to :meth:`_decode_checked`."""
        get = self._table.get
        stats = self.stats
        unknown = stats.unknown
        unknown_frames = self._unknown
        unselected = self._unselected
        first_sight = self._decode_checked
        new = tuple.__new__

        def flush() -> None:
            unknown.update(map(_ID, unknown_frames))
            unknown_frames.clear()
            unselected.clear()

        def decode(frame: Frame) -> Decoded | None:
            """The selected signals of ``frame``; None when unknown, unselected or unchanged."""
            fid = frame[2]
            record = get(fid | EXTENDED if frame[3] else fid, first_sight)(frame)
            if record is not None:
                stats.decoded += 1
                return new(Decoded, record)
            if unknown_frames or unselected:
                flush()
            return None

        def decode_many(frames: Sequence[Frame]) -> list[Decoded]:
            """The records of a chunk of frames, in the frames' order: ``decode`` of
            each, counted once for the chunk."""
            # a Python loop: its calls of the (Python) decoders are cheaper than map's;
            # then the records made in one C loop (see agent.decode.compile.Record)
            records = [r for frame in frames if (r := get(
                frame[2] | EXTENDED if frame[3] else frame[2], first_sight)(frame)) is not None]
            stats.decoded += len(records)
            if unknown_frames or unselected:
                flush()
            return list(map(new, repeat(Decoded), records))

        return decode, decode_many

    def _decode_checked(self, frame: Frame) -> Record | None:
        """``decode`` for any frame: first sight of an unknown or unselected id, an
        extended frame for an 11-bit message, a wrong length. Counts all but the
        records (the caller counts those)."""
        fid = frame.arbitration_id
        key = fid | EXTENDED if frame.is_extended else fid
        compiled = self._exact.get(key)
        if compiled is None:
            # candump marks an 8-hex-digit id extended even when the DBC says 11-bit
            compiled = self._standard.get(fid) if frame.is_extended else None
            if compiled is None:
                if self.is_known(frame):
                    self._learn(key, self._unselected.append)
                else:
                    self.stats.unknown[fid] += 1
                    self._learn(key, self._unknown.append)
                return None
            self._learn(key, compiled.decode)
        data = frame.data
        if len(data) != compiled.length:
            if len(data) < compiled.length:
                return self._decode_short(frame, compiled)
            self.stats.excess[fid] += 1
            frame = frame._replace(data=data[: compiled.length])
        return compiled.decode(frame)

    def _learn(self, key: int, entry: DecodeFn) -> None:
        """Remember what frames with ``key`` are, up to :data:`MAX_IGNORED` keys that
        the DBCs do not give (a flood of ids is bounded)."""
        if len(self._table) < len(self._exact) + MAX_IGNORED:
            self._table[key] = entry

    def is_known(self, frame: Frame) -> bool:
        fid = frame.arbitration_id
        return (fid | EXTENDED if frame.is_extended else fid) in self._known or (
            frame.is_extended and fid in self._known)

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

    def _decode_short(self, frame: Frame, compiled: CompiledMessage) -> Record | None:
        """A frame shorter than the DBC says: the signals that fit, flagged TRUNCATED."""
        fid = frame.arbitration_id
        self.stats.truncated[fid] += 1
        compiled.forget()  # the rules see this frame's values: compare the next one with them
        available = len(frame.data)
        if available < compiled.selector_bytes:
            return None
        try:
            infos, values, labels, _ = compiled.values(frame.data.ljust(compiled.length, b"\0"))
        except KeyError as exc:
            self._bad_mux(frame, exc.args[0] if exc.args else "?")
            return None
        keep = [i for i, info in enumerate(infos) if info.needed_bytes <= available]
        if not keep:
            return None
        infos = tuple(infos[i] for i in keep)
        values = tuple(values[i] for i in keep)
        labels = tuple(labels[i] for i in keep) if labels is not None else None
        return (frame.timestamp, frame.channel, compiled.name, infos, values, labels,
                self._range_flags(fid, infos, values, TRUNCATED))

    def _bad_mux(self, frame: Frame, value: object) -> None:
        """A frame whose multiplexer value the DBC does not define: counted, a warning
        for the first one of each id."""
        fid = frame.arbitration_id
        if not self.stats.bad_mux[fid]:
            compiled = self._exact.get(fid | EXTENDED if frame.is_extended else fid) or (
                self._standard.get(fid))
            log.warning("%s: %s (0x%X): unknown multiplexer value %s", self.channel,
                        compiled.name if compiled is not None else "?", fid, value)
        self.stats.bad_mux[fid] += 1


def _change_filter(message: Any, wanted: Callable[[str, str], bool],
                   change_rule: ChangeRule | None, volatile: Volatility
                   ) -> ChangeFilter | None:
    """The change filter of a message whose selected signals are all kept only on change,
    without a minimum period or a heartbeat: then a frame with the same bits as the last
    one holding its signals can only give samples that the rules drop.

    None otherwise, and when the filter could not tell the last frame holding a signal:
    nested multiplexers, a signal on several pages. (A heartbeat is due some time after
    the signal's last *kept* sample, which only the rules know: skipping on bits alone
    would delay it.)
    """
    if change_rule is None:
        return None
    selected = [s for s in message.signals if wanted(message.name, s.name)]
    rules = [change_rule(message.name, s.name) for s in selected]
    if not rules or not all(on and min_period == 0 and max_period is None
                            for on, min_period, max_period in rules):
        return None
    if sum(1 for s in message.signals if s.is_multiplexer) > 1:
        return None
    common = page = 0
    for s in selected:
        if volatile.of(message, s):
            continue
        bits = big_word_mask(bit_field(s, message.length), message.length)
        if not s.multiplexer_ids:
            common |= bits
        elif len(s.multiplexer_ids) == 1:
            page |= bits
        else:
            return None
    return ChangeFilter(common, page, multiplexer_mask(message) if page else 0)
