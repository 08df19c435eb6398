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
once in the source's stats (``gaps``, ``in_gap``, ``gap_seconds``; the
reopen attempts in ``reopens``) and logged twice at warning level: when it
starts, and when it ends with its start and length.

The first open, in the constructor, is treated the same way when the error
says that the bus is not there *now* (:func:`bus_absent`: a python-can
``CanError`` such as an adapter's port that does not exist, an ``OSError``
with an errno such as ENODEV): the source starts in a gap and opens the bus
on the same backoff once it appears, so an adapter unplugged at start or at
a reload is a ``bus.down`` for the service, not a failure. An error that no
wait can cure (an unknown interface name, a vendor library or kernel support
that is missing, a bad option) raises :class:`~agent.errors.SourceError`: a
configuration error.

Stopping: the iteration ends at the stop request; :meth:`~Source.drain` then
reads what the receive queue already holds (frames received before the stop,
at most :data:`DRAIN_MAX`), so that a reader that fell behind does not throw
them away with the socket.

Taking over from another source on the same bus (the service's reload opens
the new sources before it stops the old ones; SocketCAN and python-can's
``virtual`` interface let two readers share a bus, and both sockets see the
same receive timestamp on a frame): :meth:`CanBusSource.take_over` makes the
new source drop the frames it queued that the old one read (drained
included), recognised by their timestamps (the old source remembers its last
:data:`RECENT` ones). A frame the old one never read (its socket's queue
overflowed, or its filter did not select it) is kept. The skipping ends at the
first frame newer than the old source's last one, or at the first quiet read.

Readers: the bus is read through a small reader object (``reader``):
``"python-can"`` (:mod:`agent.sources.can_readers`, any interface),
``"raw"`` (:mod:`agent.sources.socketcan_raw`: a CAN_RAW socket without
python-can, the same frames for less CPU) or ``"bcm"``
(:mod:`agent.sources.bcm`: the kernel hands over a selected message only when
its selected bits changed, from ``bcm_plan``). ``"auto"``: on SocketCAN,
``"bcm"`` when a plan is given, else ``"raw"``; any other interface
python-can. Each read is a burst (what is queued once the first frame came),
which the source yields one by one; what a stop leaves unyielded is
returned by the drain. A BCM that the kernel refuses (EINVAL on the first
``RX_SETUP``: a 32-bit user space on a 64-bit kernel) is replaced by a raw
reader with the CAN_RAW filters, said in one warning line.

Sources yield frames only, so a gap is not an :class:`~agent.frames.Event`
here; its counters are in ``stats``. A message that the BCM says went silent
for longer than its timeout is one (``can.message_missing``, then
``can.message_back``), handed to ``on_event`` and counted in ``stats``.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from agent.errors import SourceError
from agent.frames import Event, Frame
from agent.sources.base import Source, SourceStats
from agent.sources.bcm_plan import BcmMessage
from agent.sources.can_readers import (
    PythonCanReader,
    event_detail,
    open_socket_reader,
    read_errors,
    resolve_reader,
)

log = logging.getLogger(__name__)

RECV_TIMEOUT = 0.2  # seconds: how soon a stop request is noticed on a quiet bus
RECONNECT_INITIAL = 0.1  # seconds before the first reopen after a read error
# seconds: the backoff between reopen attempts is capped here. Reopening a socket is
# cheap, and every second of backoff after the link is back is a second of bus lost.
RECONNECT_MAX = 1.0
RECENT = 16_384  # timestamps of the last frames read, for a source that takes over
DRAIN_MAX = 4_096  # frames read from the receive queue at a stop (a full one: 550 by
# default, 2,700 in the 1 MiB a raw or BCM reader asks for)
DRAIN_WAIT = 0.001  # seconds a read of the drain waits: the queue is empty after it
# seconds a socket reader (raw, bcm) lets frames gather in the kernel's queue after a
# burst of fewer than COALESCE_BELOW frames: each wake-up of the reading thread costs
# more CPU than reading a frame, so a busy bus is read in bursts of tens of frames. The
# queue never holds much more than COALESCE_BELOW frames for it (a faster bus gives
# bigger bursts, read without a pause), against 550 in Linux's default queue. The
# pipeline hands frames on every 50 ms (CHUNK_SECONDS) anyway: at most that much later.
COALESCE = 0.05
COALESCE_BELOW = 128  # frames: a burst this large goes straight back to reading
# errnos of an open that no wait cures: the kernel has no CAN support at all
_NEVER = frozenset({errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT})


@dataclass
class CanBusStats(SourceStats):
    """:class:`SourceStats` (with its gap counters) plus the reopen attempts."""

    reopens: int = 0  # attempts to open the bus again, successful or not
    messages_missing: int = 0  # BCM: a message silent for longer than its timeout
    messages_back: int = 0  # ... and back again


def backoff_delays(initial: float, maximum: float) -> Iterator[float]:
    """``initial``, doubling, capped at ``maximum``, forever."""
    delay = initial
    while True:
        yield min(delay, maximum)
        delay = min(delay * 2, maximum)


def bus_absent(exc: BaseException | None) -> bool:
    """True when an error opening a bus says it is not there now (it may appear: a gap),
    False when no wait can cure it (a configuration error)."""
    import can

    if isinstance(exc, NotImplementedError):  # unknown interface, vendor library missing
        return False
    if isinstance(exc, can.CanError):  # e.g. CanInitializationError: no such serial port
        return True
    if isinstance(exc, OSError):  # ENODEV, ENXIO, ENETDOWN...; not a missing library
        return exc.errno is not None and exc.errno not in _NEVER
    return False


class CanBusSource(Source):
    """A bus, opened on construction (or, when it is absent then, on the backoff of a
    gap), opened again after read errors.

    ``on_idle``, when set, is called in the reading thread each time the bus
    has been quiet for :data:`RECV_TIMEOUT`, and when a gap starts (the
    pipeline hands on what it holds).
    ``reader``: see the module's docstring; ``bcm_plan``: the kernel content
    filters (:func:`agent.sources.bcm_plan.bcm_plan`); ``bcm_layout``: the
    ``bcm_msg_head`` layout written (``"native"``; ``"ilp32"`` forces a 32-bit
    user space's, which a 64-bit kernel refuses: to test the fallback).
    """

    live = True
    bursts = True
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
        reader: str = "auto",
        bcm_plan: list[BcmMessage] | None = None,
        bcm_layout: str = "native",
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
        self.fd = fd
        self.can_filters = can_filters
        self.options = options
        self.reconnect_initial = reconnect_initial
        self.reconnect_max = reconnect_max
        self.clock = clock
        self.where = f"{interface}:{channel}"
        self.reader_kind = resolve_reader(reader, interface, bcm_plan, name)
        self.bcm_plan = list(bcm_plan) if bcm_plan is not None else None
        self.bcm_layout = bcm_layout
        self.coalesce = COALESCE  # a socket reader's pause after a small burst (0: none)
        #: receive timestamps of the last RECENT frames yielded, oldest first
        self.recent: deque[float] = deque(maxlen=RECENT)
        # what take_over() says was read already: up to this timestamp, these timestamps
        self._read_through: float | None = None
        self._read: frozenset[float] = frozenset()
        self._lock = threading.Lock()  # the reader is closed by close() from another thread
        self._gap_started = 0.0  # clock() when the current gap began
        self._gap_wall = 0.0  # time.time() of the same moment, for the log
        self._pending: deque[Frame] = deque()  # read in a burst, not yielded yet
        self.reader: Any | None = None
        try:
            self.reader = self._open_reader()
        except SourceError as exc:
            if not bus_absent(exc.__cause__):
                raise
            self._start_gap(f"cannot open the bus ({exc.__cause__})")

    @property
    def bus(self) -> Any | None:
        """The python-can bus (the python-can reader), else the reader itself; None in a
        gap."""
        reader = self.reader
        return reader.bus if isinstance(reader, PythonCanReader) else reader

    def take_over(self, previous: CanBusSource) -> None:
        """Skip what ``previous`` (on the same bus, open at the same time as this one,
        stopped now) read already. Call before reading."""
        recent = tuple(previous.recent)  # one step under the GIL, even if its reader lags
        self._read = frozenset(recent)
        self._read_through = recent[-1] if recent else None

    def _open_reader(self) -> Any:
        """A new reader of the kind chosen; SourceError when it cannot be opened. A BCM
        that the kernel refuses is replaced by a raw reader, from now on."""
        if self.reader_kind == "python-can":
            return PythonCanReader(self._open_bus(), self.name, self.stats.skipped)
        try:
            reader = open_socket_reader(self, self.reader_kind)
        except OSError as exc:
            raise SourceError(f"channel {self.name!r}: cannot open {self.where} "
                              f"({self.reader_kind}): {exc.strerror or exc}") from exc
        if reader.kind != self.reader_kind:
            self.reader_kind = reader.kind
            self.stats.skipped["bcm_refused"] += 1
        return reader

    def _message_event(self, kind: str, timestamp: float, message: BcmMessage) -> None:
        """A BCM timeout (``can.message_missing``) or the frame after it (``...back``)."""
        if kind == "can.message_missing":
            self.stats.messages_missing += 1
        else:
            self.stats.messages_back += 1
        if self.on_event is not None:
            self.on_event(Event(timestamp, self.name, kind, event_detail(kind, message)))

    def _open_bus(self) -> Any:
        """A new python-can bus; SourceError when it cannot be opened."""
        import can

        try:
            return can.Bus(interface=self.interface, channel=self.channel,
                           can_filters=self.can_filters, **self.options)
        except Exception as exc:  # a foreign library: whatever it raises (even NameError)
            raise SourceError(f"channel {self.name!r}: cannot open {self.where}: {exc}") from exc

    def _start_gap(self, why: str) -> None:
        stats = self.stats
        stats.in_gap = True
        stats.gaps += 1
        self._gap_started = self.clock()
        self._gap_wall = time.time()
        log.warning("channel %s: %s: %s: gap %d started, reopening with backoff", self.name,
                    self.where, why, stats.gaps)

    def _end_gap(self) -> None:
        stats = self.stats
        stats.in_gap = False
        length = self.clock() - self._gap_started
        stats.gap_seconds += length
        log.warning("channel %s: %s: back after a gap of %.3f s that started at %s "
                    "(gap %d, %d reopen attempts so far)", self.name, self.where, length,
                    time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self._gap_wall)),
                    stats.gaps, stats.reopens)

    def _frames(self, stop: threading.Event) -> Iterator[Frame]:
        # a frame at a time: what the consumer did not take at a stop stays in
        # ``_pending``, for drain()
        pending = self._pending
        next_frame = pending.popleft
        for burst in self._batches(stop):
            pending.extend(burst)
            while pending:
                yield next_frame()

    def _batches(self, stop: threading.Event) -> Iterator[list[Frame]]:
        errors = read_errors(self.reader_kind)
        coalesce = 0.0 if self.reader_kind == "python-can" else self.coalesce
        name = self.name
        stats = self.stats
        recent = self.recent
        delays = backoff_delays(self.reconnect_initial, self.reconnect_max)
        while not stop.is_set() and not self._closed:
            reader = self.reader
            if reader is None:  # in a gap: wait, then try to open the bus again
                if stop.wait(next(delays)):
                    break
                stats.reopens += 1
                try:
                    reader = self._open_reader()
                except SourceError as exc:
                    log.debug("%s", exc)
                    continue
                with self._lock:
                    if self._closed:  # closed while we were opening it
                        reader.close()
                        break
                    self.reader = reader
            try:
                frames = reader.read(RECV_TIMEOUT)
            except errors as exc:
                if stop.is_set() or self._closed:
                    break  # the bus was shut down under us on purpose
                if not stats.in_gap:
                    self._start_gap(f"read failed ({exc})")
                    if self.on_idle is not None:
                        self.on_idle()
                else:
                    log.debug("channel %s: %s: still failing: %s", name, self.where, exc)
                self._drop_reader()
                continue
            if stats.in_gap:
                self._end_gap()
                delays = backoff_delays(self.reconnect_initial, self.reconnect_max)
            if frames is None:
                self._read_through = None  # what was queued before is read: the rest is new
                if self.on_idle is not None:
                    self.on_idle()
                continue
            if self._read_through is not None:  # taking over: skip what the other one read
                frames = [f for f in frames if self._read_through is None or not self._taken(f)]
            if frames:
                recent.extend([f[0] for f in frames])
                yield frames
            if coalesce and len(frames) < COALESCE_BELOW and stop.wait(coalesce):
                break

    def _taken(self, frame: Frame) -> bool:
        """True for a frame the source this one took over from read already."""
        assert self._read_through is not None
        if frame.timestamp > self._read_through:
            self._read_through = None  # newer than anything it read: the skipping is over
            return False
        return frame.timestamp in self._read

    def _drain(self) -> list[Frame]:
        """The frames read but not yielded at the stop, then those the receive queue
        holds, received before now: what came while the reader was busy, and, at a
        reload, what the source that takes over may have missed (it opened later). At
        most :data:`DRAIN_MAX` from the queue."""
        out: list[Frame] = []
        for frame in self._pending:
            if self._read_through is None or not self._taken(frame):
                self.recent.append(frame.timestamp)
                out.append(frame)
        self._pending.clear()
        reader = self.reader
        if reader is None or self._closed:
            return out
        errors = read_errors(self.reader_kind)
        now = time.time()  # the kernel stamps frames with the same clock
        # python-can: not 0, an interface that filters in Python gives up at a filtered
        # frame; a socket of ours: no wait, the queue is what it holds
        wait = DRAIN_WAIT if isinstance(reader, PythonCanReader) else 0.0
        left = DRAIN_MAX
        while left > 0:
            try:
                frames = reader.read(wait, min(left, 64))
            except errors:
                break
            if not frames:
                if frames is None:
                    break
                continue  # only error or remote frames: more may be queued
            left -= len(frames)
            past = False
            for frame in frames:
                if self._read_through is not None and self._taken(frame):
                    continue
                self.recent.append(frame.timestamp)
                out.append(frame)
                past = past or frame.timestamp > now
            if past:  # a busy bus refills the queue: not past the stop
                break
        return out

    def _drop_reader(self) -> None:
        with self._lock:
            reader, self.reader = self.reader, None
        if reader is not None:
            try:
                reader.close()
            except Exception as exc:  # a broken bus may fail to close too: it is gone anyway
                log.debug("channel %s: closing %s: %s", self.name, self.where, exc)

    def _close(self) -> None:
        # the reference stays: a closed python-can bus refuses to read, as it should
        with self._lock:
            reader = self.reader
        if reader is not None:
            reader.close()
