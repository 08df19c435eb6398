"""Frames from a live bus through any python-can interface.

python-can keeps its own name-keyed registry of interfaces (socketcan,
virtual, slcan, pcan, kvaser, ...) and imports each lazily, so a missing
vendor library only fails when that interface is chosen.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from agent.errors import SourceError
from agent.frames import Frame
from agent.sources.base import Source

RECV_TIMEOUT = 0.2  # seconds: how soon a stop request is noticed on a quiet bus


class CanBusSource(Source):
    """A python-can bus, opened on construction.

    ``on_idle``, when set, is called in the reading thread each time the bus
    has been quiet for :data:`RECV_TIMEOUT` (the pipeline hands on what it holds).
    """

    live = True
    on_idle: Callable[[], None] | None = None

    def __init__(
        self,
        name: str,
        *,
        interface: str,
        channel: str | int,
        bitrate: int | None = None,
        fd: bool = False,
        data_bitrate: int | None = None,
        can_filters: list[dict[str, Any]] | None = None,
        **bus_options: Any,
    ) -> None:
        super().__init__(name)
        import can

        options = dict(bus_options)
        if bitrate is not None:
            options["bitrate"] = bitrate
        if fd:
            options["fd"] = True
            if data_bitrate is not None:
                options["data_bitrate"] = data_bitrate
        self.where = f"{interface}:{channel}"
        try:
            self.bus = can.Bus(interface=interface, channel=channel, can_filters=can_filters,
                               **options)
        except (can.CanError, OSError, ValueError, ImportError, NotImplementedError) as exc:
            raise SourceError(f"channel {name!r}: cannot open {self.where}: {exc}") from exc

    def _frames(self, stop: threading.Event) -> Iterator[Frame]:
        import can

        recv = self.bus.recv
        name = self.name
        skipped = self.stats.skipped
        while not stop.is_set():
            try:
                msg = recv(RECV_TIMEOUT)
            except (can.CanError, OSError) as exc:
                raise SourceError(f"channel {name!r}: {self.where}: {exc}") from exc
            if msg is None:
                if self.on_idle is not None:
                    self.on_idle()
                continue
            if msg.is_error_frame:
                skipped["error_frame"] += 1
                continue
            if msg.is_remote_frame:
                skipped["remote"] += 1
                continue
            yield Frame(msg.timestamp, name, msg.arbitration_id, msg.is_extended_id,
                        msg.is_fd, bytes(msg.data))

    def _close(self) -> None:
        self.bus.shutdown()
