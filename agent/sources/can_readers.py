"""The readers of :class:`~agent.sources.can_bus.CanBusSource`: which one a channel
uses, and a python-can bus behind their interface.

A reader (this one, :class:`~agent.sources.socketcan_raw.RawReader`,
:class:`~agent.sources.bcm.BcmReader`) has ``read(timeout, limit)``: None when
nothing at all came within ``timeout`` (a quiet bus), else the frames of what
came, possibly none (error and remote frames are only counted); it raises
``OSError`` (or python-can's ``CanError``) when the bus fails. And ``close()``.
The source keeps the gaps, the reconnects, the drain and the take-over in one
place above them.
"""

from __future__ import annotations

import errno
import logging
from collections import Counter
from typing import Any

from agent.errors import SourceError
from agent.frames import Frame
from agent.sources.bcm_plan import BcmMessage
from agent.sources.pycan import frame_from_message

log = logging.getLogger("agent.sources.can_bus")  # the source's voice

READERS = ("auto", "python-can", "raw", "bcm")

BURST = 64  # messages taken without waiting once the first one came


class PythonCanReader:
    """Frames of channel ``name`` from a python-can ``bus`` (shut down by ``close``)."""

    kind = "python-can"

    def __init__(self, bus: Any, name: str, skipped: Counter[str]) -> None:
        self.bus = bus
        self.name = name
        self.skipped = skipped

    def read(self, timeout: float, limit: int = BURST) -> list[Frame] | None:
        """What came within ``timeout`` s (None: nothing), then what is queued, up to
        ``limit`` messages."""
        recv = self.bus.recv
        msg = recv(timeout)
        if msg is None:
            return None
        out: list[Frame] = []
        name, skipped = self.name, self.skipped
        count = 1
        while True:
            frame = frame_from_message(msg, name, skipped)
            if frame is not None:
                out.append(frame)
            if count >= limit:
                break
            # an interface that filters in Python gives up at a filtered message:
            # that only ends the burst early
            msg = recv(0)
            if msg is None:
                break
            count += 1
        return out

    def close(self) -> None:
        self.bus.shutdown()


def resolve_reader(reader: str, interface: str, plan: list[BcmMessage] | None,
                   name: str) -> str:
    """The reader a channel uses: ``"auto"`` resolved (see the module's docstring);
    SourceError for one that cannot read this interface."""
    if reader == "auto":
        if interface != "socketcan":
            return "python-can"
        return "bcm" if plan else "raw"
    if reader not in READERS:
        raise SourceError(f"channel {name!r}: unknown reader {reader!r} "
                          f"(one of {', '.join(READERS)})")
    if reader in ("raw", "bcm") and interface != "socketcan":
        raise SourceError(f"channel {name!r}: reader {reader!r} reads SocketCAN only, "
                          f"not interface {interface!r}")
    if reader == "bcm" and plan is None:
        raise SourceError(f"channel {name!r}: reader 'bcm' needs the decoder's plan "
                          "(a decoded channel)")
    return reader


def read_errors(kind: str) -> tuple[type[BaseException], ...]:
    """What a read of this kind of reader raises when the bus fails."""
    if kind == "python-can":
        import can

        return (can.CanError, OSError)
    return (OSError,)


def open_socket_reader(source: Any, kind: str) -> Any:
    """A raw or BCM reader for ``source`` (a CanBusSource: its name, channel, fd, id
    filters, plan, counters). A BCM whose first RX_SETUP the kernel refuses (EINVAL: a
    32-bit user space on a 64-bit kernel), or a kernel without CAN_BCM
    (EPROTONOSUPPORT), gives way to a raw reader with the id filters, said in one
    warning line; OSError for anything else."""
    from agent.sources.socketcan_raw import RawReader

    if kind == "bcm":
        from agent.sources.bcm import BcmReader
        from agent.sources.socketcan_abi import bcm_head, compat_mismatch

        try:
            # CAN FD messages only on a CAN FD channel, as the raw reader sees them
            plan = [m for m in source.bcm_plan if source.fd or not m.fd]
            return BcmReader(source.name, str(source.channel), plan,
                             source.stats.skipped, source._message_event,
                             layout=source.bcm_layout)
        except OSError as exc:
            if exc.errno == errno.EPROTONOSUPPORT:  # CAN_RAW may still be there
                why = "this kernel has no CAN_BCM (the can-bcm module)"
            elif exc.errno != errno.EINVAL:
                raise
            else:
                why = ("a 32-bit user space on a 64-bit kernel"
                       if compat_mismatch(bcm_head(source.bcm_layout)) else "EINVAL")
        log.warning("channel %s: %s: the kernel refuses CAN_BCM filters (%s): reading "
                    "CAN_RAW with id filters instead (every frame of a selected message)",
                    source.name, source.where, why)
    return RawReader(source.name, str(source.channel), source.stats.skipped, fd=source.fd,
                     can_filters=source.can_filters)


def event_detail(kind: str, message: BcmMessage) -> str:
    """The sentence of a ``can.message_missing`` / ``can.message_back`` event."""
    ident = f"0x{message.frame_id:X}{' (29-bit)' if message.extended else ''}"
    if kind == "can.message_missing":
        return (f"message {message.name} ({ident}) missing: no frame for "
                f"{message.timeout:g} s (its max_period)")
    return f"message {message.name} ({ident}) back after it went missing"
