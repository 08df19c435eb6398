"""Frames from a live bus through any python-can interface.

python-can keeps its own name-keyed registry of interfaces (socketcan,
virtual, slcan, pcan, ...) and imports each lazily, so a missing vendor
library only fails when that interface is chosen.

Kernel filters: ``can_filters`` (see :mod:`agent.sources.can_filters`, built by
the pipeline from the selected messages of a decoded channel) is handed to
python-can, whose socketcan interface installs it as ``CAN_RAW_FILTER``:
frames nobody selected never reach Python.

Reconnect: a service that runs for months sees its interface go away and
come back (``ip link set can0 down`` by a bus-off restart script, a USB
adapter unplugged, a driver reload). A read error (``can.CanError`` or
``OSError``, e.g. ENETDOWN, ENODEV) does not end the source: it starts a
*gap*. The bus is shut down and opened again after a capped exponential
backoff (``reconnect_initial`` doubling up to ``reconnect_max`` seconds),
waited with ``stop.wait(delay)`` so that a stop request ends it at once. The
gap ends at the first read after a reopen that raises nothing (a frame or a
quiet timeout): Linux reports ENETDOWN to a socket bound to a down interface
at its first read, so a clean read means the link is up. Each gap is counted
once in :class:`CanBusStats` and logged twice at warning level: when it
starts, and when it ends with its start and length. Only the first open, in
the constructor, raises :class:`~agent.errors.SourceError` (a wrong interface
name is a configuration error, not a gap).

Sources yield frames only, so a gap is not an :class:`~agent.frames.Event`
here; its counters are in ``stats``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from agent.errors import SourceError
from agent.frames import Frame
from agent.sources.base import Source, SourceStats

log = logging.getLogger(__name__)

RECV_TIMEOUT = 0.2  # seconds: how soon a stop request is noticed on a quiet bus
RECONNECT_INITIAL = 0.1  # seconds before the first reopen after a read error
# seconds: the backoff between reopen attempts is capped here. Reopening a socket is
# cheap, and every second of backoff after the link is back is a second of bus lost.
RECONNECT_MAX = 1.0


@dataclass
class CanBusStats(SourceStats):
    """:class:`SourceStats` plus the bus's gaps (read errors until the bus read again)."""

    gaps: int = 0  # gaps started (counted once each, however many reopen attempts)
    gap_seconds: float = 0.0  # total length of the gaps that ended
    reopens: int = 0  # attempts to open the bus again, successful or not
    in_gap: bool = False  # a gap is going on now


def backoff_delays(initial: float, maximum: float) -> Iterator[float]:
    """``initial``, doubling, capped at ``maximum``, forever."""
    delay = initial
    while True:
        yield min(delay, maximum)
        delay = min(delay * 2, maximum)


class CanBusSource(Source):
    """A python-can bus, opened on construction, opened again after read errors.

    ``on_idle``, when set, is called in the reading thread each time the bus
    has been quiet for :data:`RECV_TIMEOUT`, and when a gap starts (the
    pipeline hands on what it holds).
    """

    live = True
    on_idle: Callable[[], None] | None = None
    stats: CanBusStats

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
        reconnect_initial: float = RECONNECT_INITIAL,
        reconnect_max: float = RECONNECT_MAX,
        clock: Callable[[], float] = time.monotonic,
        **bus_options: Any,
    ) -> None:
        super().__init__(name)
        self.stats = CanBusStats()
        options = dict(bus_options)
        if bitrate is not None:
            options["bitrate"] = bitrate
        if fd:
            options["fd"] = True
            if data_bitrate is not None:
                options["data_bitrate"] = data_bitrate
        self.interface = interface
        self.channel = channel
        self.can_filters = can_filters
        self.options = options
        self.reconnect_initial = reconnect_initial
        self.reconnect_max = reconnect_max
        self.clock = clock
        self.where = f"{interface}:{channel}"
        self._lock = threading.Lock()  # the bus is shut down by close() from another thread
        self.bus: Any | None = self._open_bus()

    def _open_bus(self) -> Any:
        """A new python-can bus; SourceError when it cannot be opened."""
        import can

        try:
            return can.Bus(interface=self.interface, channel=self.channel,
                           can_filters=self.can_filters, **self.options)
        except (can.CanError, OSError, ValueError, ImportError, NotImplementedError) as exc:
            raise SourceError(f"channel {self.name!r}: cannot open {self.where}: {exc}") from exc

    def _frames(self, stop: threading.Event) -> Iterator[Frame]:
        import can

        name = self.name
        stats = self.stats
        skipped = stats.skipped
        gap_started = 0.0  # clock() when the current gap began
        gap_wall = 0.0  # time.time() of the same moment, for the log
        delays = backoff_delays(self.reconnect_initial, self.reconnect_max)
        while not stop.is_set() and not self._closed:
            bus = self.bus
            if bus is None:  # in a gap: wait, then try to open the bus again
                if stop.wait(next(delays)):
                    break
                stats.reopens += 1
                try:
                    bus = self._open_bus()
                except SourceError as exc:
                    log.debug("%s", exc)
                    continue
                with self._lock:
                    if self._closed:  # closed while we were opening it
                        bus.shutdown()
                        break
                    self.bus = bus
            try:
                msg = bus.recv(RECV_TIMEOUT)
            except (can.CanError, OSError) as exc:
                if stop.is_set() or self._closed:
                    break  # the bus was shut down under us on purpose
                if not stats.in_gap:
                    stats.in_gap = True
                    stats.gaps += 1
                    gap_started = self.clock()
                    gap_wall = time.time()
                    log.warning("channel %s: %s: read failed (%s): gap %d started, reopening "
                                "with backoff", name, self.where, exc, stats.gaps)
                    if self.on_idle is not None:
                        self.on_idle()
                else:
                    log.debug("channel %s: %s: still failing: %s", name, self.where, exc)
                self._drop_bus()
                continue
            if stats.in_gap:
                stats.in_gap = False
                length = self.clock() - gap_started
                stats.gap_seconds += length
                delays = backoff_delays(self.reconnect_initial, self.reconnect_max)
                log.warning("channel %s: %s: back after a gap of %.3f s that started at %s "
                            "(gap %d, %d reopen attempts so far)", name, self.where, length,
                            time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(gap_wall)),
                            stats.gaps, stats.reopens)
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

    def _drop_bus(self) -> None:
        with self._lock:
            bus, self.bus = self.bus, None
        if bus is not None:
            try:
                bus.shutdown()
            except Exception as exc:  # a broken bus may fail to close too: it is gone anyway
                log.debug("channel %s: shutting down %s: %s", self.name, self.where, exc)

    def _close(self) -> None:
        # the reference stays: a closed python-can bus refuses to read, as it should
        with self._lock:
            bus = self.bus
        if bus is not None:
            bus.shutdown()
