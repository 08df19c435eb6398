"""Kernel receive filters for a decoded CAN channel.

A ``decoded`` channel only needs the frames of messages that have at least
one selected signal; every other frame would cross into Python (about 100 µs
of CPU each on a small ARM board, see python-can's published figures) just
for the decoder to drop it. SocketCAN can drop them in the kernel instead:
python-can's ``can_filters`` (``{"can_id", "can_mask", "extended"}`` dicts)
are installed by its socketcan interface as ``CAN_RAW_FILTER`` on the socket.
Interfaces without hardware or kernel filtering apply the same list in
python-can itself, which is no worse than decoding and dropping.

Decisions:

* **Exact filters**, one per selected message: ``can_mask`` covers all 11 or
  29 id bits and ``extended`` is always given, so python-can adds
  ``CAN_EFF_FLAG`` to the mask and a 29-bit ``0x00000100`` never passes for the
  11-bit ``0x100`` (on a live bus they are two different frames; only candump
  *text* blurs them, which the replay path handles, not this one).
* **Lossless merges first**: two filters with the same mask whose ids differ
  in one masked bit become one filter with that bit free (the first step of
  Quine-McCluskey, applied greedily). The set of accepted ids is unchanged and
  the kernel walks a shorter list for each frame.
* **Lossy merges only above the limit**: the kernel refuses more than
  ``CAN_RAW_FILTER_MAX`` (512) filters with EINVAL, and python-can then quietly
  falls back to filtering in Python. Above :data:`MAX_FILTERS`, neighbouring
  filters (same frame format, in id order) are merged into their common
  prefix, cheapest first, the cost being the number of ids the merge adds to
  what passes. The result is a superset of the selected ids: the decoder still
  drops the rest (and counts them as unselected, not lost).
* **No filter** (``None``, everything passes) for ``raw`` channels, whose
  frames are all stored, and when no message at all is selected: an empty
  python-can filter list means "accept all" anyway, and a channel that decodes
  nothing is a configuration matter, not a kernel one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

log = logging.getLogger(__name__)

CAN_RAW_FILTER_MAX = 512  # linux/can/raw.h: setsockopt(CAN_RAW_FILTER) refuses more
MAX_FILTERS = CAN_RAW_FILTER_MAX
SFF_MASK = 0x7FF  # 11-bit ids
EFF_MASK = 0x1FFFFFFF  # 29-bit ids


class IdFilter(NamedTuple):
    """``id & mask == can_id`` for frames of one format (11-bit or 29-bit)."""

    can_id: int
    mask: int
    extended: bool

    @property
    def width_mask(self) -> int:
        return EFF_MASK if self.extended else SFF_MASK

    def matches(self, arbitration_id: int, extended: bool) -> bool:
        return extended == self.extended and arbitration_id & self.mask == self.can_id

    def size(self) -> int:
        """How many ids of its format pass this filter."""
        free = bin(self.width_mask & ~self.mask).count("1")
        return 1 << free

    def covers(self, other: IdFilter) -> bool:
        """True when every id ``other`` passes also passes this one."""
        return (other.extended == self.extended and self.mask & ~other.mask == 0
                and other.can_id & self.mask == self.can_id)

    def as_python_can(self) -> dict[str, Any]:
        return {"can_id": self.can_id, "can_mask": self.mask, "extended": self.extended}


def selected_ids(databases: Iterable[Any],
                 wanted: Callable[[str, str], bool]) -> list[tuple[int, bool]]:
    """``(frame_id, extended)`` of each message with at least one signal ``wanted``.

    ``databases`` are cantools databases; ``wanted(message, signal)`` is the
    channel's selection (:class:`agent.policy.selection.Selector`). Sorted, unique.
    """
    ids: set[tuple[int, bool]] = set()
    for db in databases:
        for message in db.messages:
            if any(wanted(message.name, signal.name) for signal in message.signals):
                ids.add((message.frame_id, bool(message.is_extended_frame)))
    return sorted(ids, key=lambda k: (k[1], k[0]))


def build_filters(ids: Iterable[tuple[int, bool]],
                  max_filters: int = MAX_FILTERS) -> list[IdFilter]:
    """Filters that pass every ``(id, extended)`` of ``ids``, at most ``max_filters``.

    Exact when possible (lossless merges only); a superset when the ids need
    more than ``max_filters`` filters. Empty when ``ids`` is empty.
    """
    if max_filters < 2:
        raise ValueError("max_filters must be at least 2 (one per frame format)")
    filters: list[IdFilter] = []
    for fid, extended in sorted(set(ids)):
        width = EFF_MASK if extended else SFF_MASK
        if fid & ~width:
            raise ValueError(f"id 0x{fid:X} does not fit in {29 if extended else 11} bits")
        filters.append(IdFilter(fid, width, extended))
    filters = _merge_lossless(filters)
    if len(filters) > max_filters:
        before = len(filters)
        filters = _merge_lossy(filters, max_filters)
        log.info("CAN filters: %d ids need %d exact filters, more than %d: merged into %d "
                 "(a superset: %d ids pass)", len(set(ids)), before, max_filters, len(filters),
                 sum(f.size() for f in filters))
    return sorted(filters, key=lambda f: (f.extended, f.can_id, f.mask))


def can_filters_for(databases: Sequence[Any], wanted: Callable[[str, str], bool],
                    max_filters: int = MAX_FILTERS) -> list[dict[str, Any]] | None:
    """python-can ``can_filters`` for a decoded channel, or None to pass everything."""
    ids = selected_ids(databases, wanted)
    if not ids:
        return None
    return [f.as_python_can() for f in build_filters(ids, max_filters)]


def _merge_lossless(filters: list[IdFilter]) -> list[IdFilter]:
    """Pair filters that differ in exactly one masked bit, until no pair is left."""
    current = set(filters)
    for _ in range(len(filters)):  # a round that merges nothing ends it; each one that does
        # removes at least one filter
        merged: set[IdFilter] = set()
        used: set[IdFilter] = set()
        for f in sorted(current):
            if f in used:
                continue
            for bit in range(f.width_mask.bit_length()):
                b = 1 << bit
                if not f.mask & b or f.can_id & b:
                    continue  # pair each filter with its partner once, from the 0 side
                partner = IdFilter(f.can_id | b, f.mask, f.extended)
                if partner in current and partner not in used:
                    used.add(f)
                    used.add(partner)
                    merged.add(IdFilter(f.can_id, f.mask & ~b, f.extended))
                    break
        if not used:
            break
        current = (current - used) | merged
    return list(current)


def _combine(a: IdFilter, b: IdFilter) -> IdFilter:
    """The smallest single filter of this form that covers both."""
    mask = a.mask & b.mask & ~(a.can_id ^ b.can_id)
    # keep the mask contiguous from the top: a prefix, so neighbours in id order stay close
    top = a.width_mask
    prefix = 0
    for bit in range(top.bit_length() - 1, -1, -1):
        if not mask & (1 << bit):
            break
        prefix |= 1 << bit
    return IdFilter(a.can_id & prefix, prefix, a.extended)


def _merge_lossy(filters: list[IdFilter], max_filters: int) -> list[IdFilter]:
    """Merge neighbours (same format, id order) into common prefixes, cheapest first."""
    current = sorted(filters, key=lambda f: (f.extended, f.can_id))
    for _ in range(len(filters)):  # every pass removes at least one filter
        excess = len(current) - max_filters
        if excess <= 0:
            break
        candidates: list[tuple[int, int]] = []  # (cost, index of the left one)
        for i in range(len(current) - 1):
            a, b = current[i], current[i + 1]
            if a.extended != b.extended:
                continue
            candidates.append((_combine(a, b).size() - a.size() - b.size(), i))
        candidates.sort()
        taken: set[int] = set()
        merges: dict[int, IdFilter] = {}
        # a part of the excess per pass: the merged prefixes may cover further filters,
        # so merging all of it at once would overshoot the limit by far
        budget = max(1, excess // 4)
        for _cost, i in candidates:
            if len(merges) >= budget:
                break
            if i in taken or i + 1 in taken:
                continue
            taken.update((i, i + 1))
            merges[i] = _combine(current[i], current[i + 1])
        result: list[IdFilter] = []
        for i, f in enumerate(current):
            if i in merges:
                result.append(merges[i])
            elif i not in taken:
                result.append(f)
        # a prefix may now cover other filters (its neighbours' neighbours): drop those
        result.sort(key=lambda f: (f.extended, f.can_id, -f.size()))
        pruned: list[IdFilter] = []
        for f in result:
            if pruned and pruned[-1].covers(f):
                continue
            pruned.append(f)
        current = pruned
    return current
