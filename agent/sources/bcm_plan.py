"""What the kernel's broadcast manager (CAN_BCM) filters for a decoded channel.

One :class:`BcmMessage` per message with a selected signal (the decoder's
``selected``), turned by :mod:`agent.sources.bcm` into one ``RX_SETUP``:

* **a content mask** where the decoder has a change filter (all the message's
  selected signals kept only on change, no period): the kernel then hands a
  frame over only when a masked bit differs from the last frame it handed
  over. The mask is the change filter's common | page | selector bits, ONE
  mask over the whole frame. Why one: a frame the kernel drops then has every
  masked bit equal to the last frame the decoder saw, so the decoder's own
  change filter would skip it too (its memory holds that frame's bits, or
  bits equal to them): the stored samples are the same, with or without the
  kernel (``tests/test_bcm_plan.py`` checks it over random frame sequences
  against a model of the kernel's compare). Per-page masks (the kernel's
  multiplex mode: frame 0 the multiplexer's bits, then one frame per page,
  its multiplexer value | the content bits) only where no common bit is
  selected: with common bits, a page compared with its own last frame misses
  a common bit that changed and changed back on another page, which the
  decoder, comparing common bits with the last frame of any page, keeps. The
  page mask is the decoder's (every selected page's bits), so the kernel's
  per-page compare is exactly the decoder's. Counters and checksums are out
  of the masks (the change filter leaves them out), or every frame would
  differ;
* **every frame** (``mask`` None, ``RX_FILTER_ID``) otherwise: a rule with a
  period or a heartbeat needs the frames whatever their bits;
* **a timeout**: the smallest ``max_period`` of its selected signals: a message
  silent for longer than its heartbeat is an event (``can.message_missing``);
* **a throttle**: the smallest ``min_period`` when every selected signal has
  one and none feeds the insights (the kernel's throttle hands over the last
  frame of each period and can lose a state change in between).

Limits: the kernel compares a multiplexer within the first 8 bytes and takes
at most 256 frames per message; past them, the one whole-frame mask.
A classic message longer than 8 bytes (a broken DBC) gets every frame.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.decode.compile import ChangeFilter, bit_field
from agent.sources.socketcan_abi import CAN_EFF_FLAG, MAX_NFRAMES

EXTENDED = 1 << 31  # the decoder's key bit for a 29-bit id (the same bit as CAN_EFF_FLAG)

# rule_for(message, signal) -> (on_change, min_period, max_period)
RuleFor = Callable[[str, str], tuple[bool, float, float | None]]


@dataclass(frozen=True)
class BcmMessage:
    """One message's kernel filter."""

    can_id: int  # the frame id, with CAN_EFF_FLAG for a 29-bit one
    length: int  # bytes of the message (the masks' length)
    fd: bool  # a CAN FD message: canfd_frame, CAN_FD_FRAME
    mask: bytes | None  # the content bits; None: every frame (RX_FILTER_ID)
    pages: tuple[bytes, ...] | None  # multiplexer mask, then each page (value | content)
    timeout: float | None  # seconds without a frame that make it missing
    throttle: float | None  # at most one frame per this many seconds
    name: str

    @property
    def frame_id(self) -> int:
        return self.can_id & ~CAN_EFF_FLAG

    @property
    def extended(self) -> bool:
        return bool(self.can_id & CAN_EFF_FLAG)


def bcm_plan(decoder: Any, rule_for: RuleFor,
             feeds_events: Callable[[str, str], bool]) -> list[BcmMessage]:
    """The kernel filters of ``decoder``'s selected messages (a
    :class:`~agent.decode.decoder.ChannelDecoder`), in id order."""
    wanted = getattr(decoder, "wanted", None) or (lambda m, s: True)
    plan = []
    for key, (message, change) in sorted(decoder.selected.items()):
        signals = [s.name for s in message.signals if wanted(message.name, s.name)]
        rules = [rule_for(message.name, s) for s in signals]
        heartbeats = [mx for _, _, mx in rules if mx is not None and mx > 0]
        periods = [mn for _, mn, _ in rules]
        throttle = None
        if periods and all(p > 0 for p in periods) and not any(
                feeds_events(message.name, s) for s in signals):
            throttle = min(periods)
        fd = bool(getattr(message, "is_fd", False))
        mask, pages = _masks(message, change, fd)
        plan.append(BcmMessage(
            can_id=(key & ~EXTENDED) | (CAN_EFF_FLAG if key & EXTENDED else 0),
            length=message.length, fd=fd, mask=mask, pages=pages,
            timeout=min(heartbeats) if heartbeats else None, throttle=throttle,
            name=message.name))
    return plan


def _masks(message: Any, change: ChangeFilter | None, fd: bool
           ) -> tuple[bytes | None, tuple[bytes, ...] | None]:
    """(mask, pages) of a message: see the module's docstring."""
    length = message.length
    if change is None or length > (64 if fd else 8):
        return None, None
    whole = change.common_mask | change.page_mask | change.selector_mask
    if not whole:  # only volatile signals selected: any frame is "unchanged"
        return bytes(length), None
    mask = whole.to_bytes(length, "big")
    if change.common_mask or not change.page_mask:
        return mask, None
    pages = _pages(message, change)
    return (mask, None) if pages is None else (None, pages)


def _pages(message: Any, change: ChangeFilter) -> tuple[bytes, ...] | None:
    """The multiplex frames (selector mask, then value | page mask per page), or None
    when the kernel cannot compare them (see the module's docstring)."""
    length = message.length
    selector = change.selector_mask.to_bytes(length, "big")
    if any(selector[8:]):
        return None
    multiplexers = [s for s in message.signals if s.is_multiplexer]
    if len(multiplexers) != 1:
        return None
    field = bit_field(multiplexers[0], length)
    if field.shift < 0:
        return None
    values = sorted({v for s in message.signals for v in (s.multiplexer_ids or ())})
    if not values or len(values) + 1 > MAX_NFRAMES:
        return None
    frames = [selector]
    for value in values:
        raw = (value & field.mask) << field.shift
        placed = (raw.to_bytes(length, "big") if field.word == "B"
                  else raw.to_bytes(length, "little"))
        frames.append((int.from_bytes(placed, "big") | change.page_mask).to_bytes(length, "big"))
    return tuple(frames)
