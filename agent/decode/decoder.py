"""Decode the frames of one channel through its DBC files.

The result is one :class:`~agent.frames.Decoded` record per frame (its
selected signals' values side by side), not one object per signal: cheaper to
make, and already in the per-message columnar shape the store wants.

Fast path: each message is compiled once into a generated function
(:mod:`agent.decode.compile`). For messages whose selected signals are all
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

import functools
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.decode.compile import (
    ChangeFilter,
    CompiledMessage,
    DecodeFn,
    big_word_mask,
    bit_field,
    compile_message,
    multiplexer_mask,
)
from agent.frames import OUT_OF_RANGE, TRUNCATED, Decoded, Frame, SignalInfo
from agent.volatile import Volatility

log = logging.getLogger(__name__)

EXTENDED = 1 << 31  # key bit that separates 29-bit from 11-bit ids
MAX_IGNORED = 1 << 16  # ids remembered as unknown or unselected (a flood of ids is bounded)


@dataclass(slots=True)
class DecodeStats:
    decoded: int = 0
    unchanged: int = 0  # skipped by the change filter: same selected bits as before
    unknown: Counter[int] = field(default_factory=Counter)  # id -> frames
    truncated: Counter[int] = field(default_factory=Counter)  # id -> frames shorter than DBC
    excess: Counter[int] = field(default_factory=Counter)  # id -> frames longer than DBC
    bad_mux: Counter[int] = field(default_factory=Counter)  # id -> unknown multiplexer value
    out_of_range: Counter[tuple[int, str]] = field(default_factory=Counter)  # (id, signal)


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
        self.stats = DecodeStats()
        self._exact: dict[int, CompiledMessage] = {}
        # 11-bit messages, for extended frames with small ids (candump's 8-digit ids)
        self._standard: dict[int, CompiledMessage] = {}
        self._known: set[int] = set()  # ids defined in the DBCs, selected or not
        # key -> True for an unknown id, False for one with no selected signal
        self._ignored: dict[int, bool] = {}
        volatility = volatile if isinstance(volatile, Volatility) else Volatility(volatile)
        for db in databases:
            for message in db.messages:
                key = message.frame_id | (EXTENDED if message.is_extended_frame else 0)
                if key in self._known:
                    log.warning("%s: message %s (0x%X) is defined twice; the first one wins",
                                channel, message.name, message.frame_id)
                    continue
                self._known.add(key)
                compiled = compile_message(
                    message, wanted, _change_filter(message, wanted, change_rule, volatility),
                    functools.partial(self._flag_range, message.frame_id))
                if compiled is None:
                    continue
                self._exact[key] = compiled
                if not message.is_extended_frame:
                    self._standard[message.frame_id] = compiled
        self.decode = self._fast_path()

    def _fast_path(self) -> Callable[[Frame], Decoded | None]:
        """``decode``, specialised: a closure over local names, two dict look-ups for
        the frames that matter; anything unusual goes to :meth:`_decode_checked`."""
        fast: dict[int, tuple[int, DecodeFn, CompiledMessage]] = {
            key: (c.length, c.decode, c) for key, c in self._exact.items()}
        ignored = self._ignored
        stats = self.stats
        unknown = stats.unknown
        checked = self._decode_checked
        bad_mux = self._bad_mux

        def decode(frame: Frame) -> Decoded | None:
            """The selected signals of ``frame``; None when unknown, unselected or unchanged."""
            fid = frame[2]
            key = fid | EXTENDED if frame[3] else fid
            entry = fast.get(key)
            if entry is not None:
                data = frame[5]
                if len(data) == entry[0]:
                    try:
                        decoded = entry[1](data, frame[0], frame[1])
                    except KeyError as exc:
                        bad_mux(fid, entry[2].name, exc)
                        return None
                    if decoded is None:
                        stats.unchanged += 1
                    else:
                        stats.decoded += 1
                    return decoded
            else:
                is_unknown = ignored.get(key)
                if is_unknown is not None:
                    if is_unknown:
                        unknown[fid] += 1
                    return None
            return checked(frame)

        return decode

    def _decode_checked(self, frame: Frame) -> Decoded | None:
        """``decode`` for any frame: first sight of an unknown or unselected id, an
        extended frame for an 11-bit message, a wrong length."""
        fid = frame.arbitration_id
        key = fid | EXTENDED if frame.is_extended else fid
        compiled = self._exact.get(key)
        if compiled is None:
            # candump marks an 8-hex-digit id extended even when the DBC says 11-bit
            compiled = self._standard.get(fid) if frame.is_extended else None
            if compiled is None:
                is_unknown = not self.is_known(frame)
                if is_unknown:
                    self.stats.unknown[fid] += 1
                if len(self._ignored) < MAX_IGNORED:
                    self._ignored[key] = is_unknown
                return None
        data = frame.data
        if len(data) != compiled.length:
            if len(data) < compiled.length:
                return self._decode_short(frame, compiled)
            self.stats.excess[fid] += 1
            data = data[: compiled.length]
        try:
            decoded = compiled.decode(data, frame.timestamp, frame.channel)
        except KeyError as exc:
            self._bad_mux(fid, compiled.name, exc)
            return None
        if decoded is None:
            self.stats.unchanged += 1
        else:
            self.stats.decoded += 1
        return decoded

    def is_known(self, frame: Frame) -> bool:
        fid = frame.arbitration_id
        return (fid | EXTENDED if frame.is_extended else fid) in self._known or (
            frame.is_extended and fid in self._known)

    def _flag_range(self, fid: int, decoded: Decoded) -> Decoded:
        return decoded._replace(flags=self._range_flags(fid, decoded.signals, decoded.values, 0))

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

    def _decode_short(self, frame: Frame, compiled: CompiledMessage) -> Decoded | None:
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
            self._bad_mux(fid, compiled.name, exc)
            return None
        keep = [i for i, info in enumerate(infos) if info.needed_bytes <= available]
        if not keep:
            return None
        infos = tuple(infos[i] for i in keep)
        values = tuple(values[i] for i in keep)
        labels = tuple(labels[i] for i in keep) if labels is not None else None
        self.stats.decoded += 1
        return Decoded(frame.timestamp, frame.channel, compiled.name, infos, values, labels,
                       self._range_flags(fid, infos, values, TRUNCATED))

    def _bad_mux(self, fid: int, name: str, exc: KeyError) -> None:
        if not self.stats.bad_mux[fid]:
            log.warning("%s: %s (0x%X): unknown multiplexer value %s", self.channel, name, fid,
                        exc.args[0] if exc.args else "?")
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
