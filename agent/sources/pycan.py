"""python-can's ``Message`` -> :class:`~agent.frames.Frame`, the one conversion.

Used by the live bus (agent.sources.can_bus) and by the ASC, BLF and TRC
readers of agent.sources.replay, so that both treat a message the same way:

* error frames and remote frames carry no data: they are not frames here,
  only counted (``error_frame``, ``remote``) in the caller's skipped counter;
* an identifier above 0x7FF is a 29-bit one whatever the message's
  ``is_extended_id`` says (python-can marks some as 11-bit: seen in BLF files;
  an 11-bit id cannot exceed 0x7FF on any bus), so a decoder keyed by
  (id, extended) finds its message;
* the data are copied into ``bytes`` (python-can gives a ``bytearray``).

python-can itself is not imported here: a message is anything with its
attributes.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from agent.frames import Frame

CAN_SFF_MASK = 0x7FF  # the largest 11-bit identifier


def frame_from_message(msg: Any, channel: str, skipped: Counter[str]) -> Frame | None:
    """The frame of a python-can message on ``channel``; None for an error or remote
    frame, counted in ``skipped``."""
    if msg.is_error_frame:
        skipped["error_frame"] += 1
        return None
    if msg.is_remote_frame:
        skipped["remote"] += 1
        return None
    can_id = msg.arbitration_id
    return Frame(msg.timestamp, channel, can_id, bool(msg.is_extended_id) or can_id > CAN_SFF_MASK,
                 bool(msg.is_fd), bytes(msg.data))
