"""What ``bavard record`` records from: the service's ``frames`` tap, or a bus.

Both loops write into a :class:`~agent.console.candump_writer.CandumpWriter` until
the stop event is set (Ctrl-C, SIGTERM), ``duration`` seconds passed on the
injected clock, or the source ends; they call ``progress(recording)`` about every
``every`` seconds, and return why they ended (see :data:`ENDED`).

* From the service: ``subscribe frames`` on its control socket, read by a thread
  into a bounded queue (:data:`QUEUE_MESSAGES`): when the disk is slower than the
  bus, the service drops frames for us and says how many (``dropped``), it never
  waits; nothing opens a second socket on the bus. Frames are written in the
  order the service sends them: one channel's in bus order; with several channels,
  chunks of each in turn (``--channel`` records one).
* From a bus: not the service's source. SocketCAN through a raw socket as candump
  opens it (:mod:`.socketcan_raw`: the kernel's own microseconds, CAN FD flags and
  drop counter, so the file is candump's line for line); any other interface
  through python-can (a CAN FD frame's flags from its BRS and ESI). Remote frames
  are written as candump writes them (``123#R4``; the project's log reader skips
  them). A read error ends the recording (the file keeps what came).
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from agent.console.candump_writer import BRS, ESI, FDF, CandumpWriter, Stamp, classic_tail
from agent.control.client import ControlClient
from agent.errors import ControlError, SourceError

QUEUE_MESSAGES = 256  # stream lines waiting for the disk (each up to a few hundred frames)
POLL = 0.2  # seconds between looks at the stop event and the clock
BURST = 256  # frames python-can gives in one read once the first one came
RATE_WINDOW = 3.0  # seconds of the progress line's frames/s
#: why a recording ended
ENDED = ("duration", "interrupted", "source ended")


@dataclass
class Recording:
    """What was recorded so far (the progress line, the summary)."""

    source: str
    started: float  # clock at the start
    frames: int = 0
    dropped: int = 0  # frames lost before we read them: the service's count, or the socket's
    unreadable: int = 0  # stream items that were not frames
    elapsed: float = 0.0
    ended: str = ""
    error: str | None = None  # why the source ended, when it failed
    #: (clock, frames) of the progress calls of the last RATE_WINDOW seconds
    _seen: deque[tuple[float, int]] = field(default_factory=deque, repr=False)

    def recent_rate(self, now: float) -> float:
        """Frames per second over the last :data:`RATE_WINDOW` seconds (since the start
        at first): a service hands frames on in chunks, a rate per half second jumps."""
        seen = self._seen
        if not seen:
            seen.append((self.started, 0))
        seen.append((now, self.frames))
        while seen[1][0] <= now - RATE_WINDOW:  # the newest point a window ago or before
            seen.popleft()
        then, frames = seen[0]
        return (self.frames - frames) / (now - then) if now > then else 0.0


Progress = Callable[[Recording], None]


def record_service(client: ControlClient, writer: CandumpWriter, recording: Recording,
                   stop: threading.Event, *, channel: str | None = None,
                   duration: float | None = None, progress: Progress | None = None,
                   every: float = 0.5, clock: Callable[[], float] = time.monotonic) -> str:
    """Record the service's frames (see the module docstring)."""
    lines: queue.Queue[dict[str, Any] | BaseException | None] = queue.Queue(QUEUE_MESSAGES)

    def read() -> None:  # the subscription too: a refusal comes through the queue
        try:
            for message in client.stream("frames", channel=channel):
                lines.put(message)
            lines.put(None)
        except BaseException as exc:  # handed to the main thread
            lines.put(exc)

    recording.source = f"service {client.path}" + (f" channel {channel}" if channel else "")
    reader = threading.Thread(target=read, name="record-reader", daemon=True)
    recording.started = clock()
    reader.start()
    try:
        return _loop(recording, stop, duration, progress, every, clock,
                     lambda timeout: _take(lines, timeout, writer, recording))
    finally:
        client.close()  # wakes the reader's read; what it still queues is past the end
        deadline = clock() + POLL * 5
        while reader.is_alive() and clock() < deadline:
            with contextlib.suppress(queue.Empty):
                while True:
                    lines.get_nowait()  # room for a reader blocked on a full queue
            reader.join(POLL / 4)


def _take(lines: queue.Queue[dict[str, Any] | BaseException | None], timeout: float,
          writer: CandumpWriter, recording: Recording) -> bool:
    """Write what the reader queued (waiting at most ``timeout``); False at the end."""
    try:
        message = lines.get(timeout=timeout)
    except queue.Empty:
        return True
    while True:
        if message is None:
            return False
        if isinstance(message, BaseException):
            if isinstance(message, ControlError) and not message.code:
                recording.error = str(message)  # the connection ended: keep what came
                return False
            raise message  # an error answer (a refused subscription) or a bug
        _write_items(message, writer, recording)
        try:
            message = lines.get_nowait()
        except queue.Empty:
            return True


def _write_items(message: dict[str, Any], writer: CandumpWriter, recording: Recording) -> None:
    dropped = message.get("dropped")
    if isinstance(dropped, int):
        recording.dropped += dropped
    items = message.get("items")
    for item in items if isinstance(items, list) else ():
        try:
            fd = bool(item.get("fd"))
            writer.write(float(item["t"]), str(item["ch"]), int(item["id"]), bool(item["ext"]),
                         bytes.fromhex(item["data"]), fd, FDF)
        except (KeyError, TypeError, ValueError, AttributeError):
            recording.unreadable += 1
            continue
        recording.frames += 1


class BusReader(Protocol):
    """A bus read for recording: ``read(timeout)`` gives :data:`Line` tuples (waiting
    at most ``timeout`` s for the first; OSError or CanError when the bus fails),
    ``dropped`` counts frames lost before we read them, when the bus says."""

    where: str
    dropped: int

    def read(self, timeout: float) -> list[Line]: ...

    def close(self) -> None: ...


#: what CandumpWriter.write takes: timestamp, channel, id, extended, data, fd, flags, tail
Line = tuple[Stamp, str, int, bool, bytes, bool, int, str]


def record_bus(reader: BusReader, writer: CandumpWriter, recording: Recording,
               stop: threading.Event, *, duration: float | None = None,
               progress: Progress | None = None, every: float = 0.5,
               clock: Callable[[], float] = time.monotonic) -> str:
    """Record what ``reader`` receives."""
    def take(timeout: float) -> bool:
        try:
            lines = reader.read(timeout)
        except Exception as exc:  # OSError, a python-can CanError: the bus failed
            if stop.is_set():
                return False
            recording.error = f"{reader.where}: read failed: {exc}"
            return False
        for line in lines:
            writer.write(*line)
        recording.frames += len(lines)
        recording.dropped = reader.dropped
        return True

    recording.started = clock()
    return _loop(recording, stop, duration, progress, every, clock, take)


def _loop(recording: Recording, stop: threading.Event, duration: float | None,
          progress: Progress | None, every: float, clock: Callable[[], float],
          take: Callable[[float], bool]) -> str:
    """Call ``take(timeout)`` until stopped, out of time, or it says the end."""
    started = recording.started
    next_progress = started + every
    while True:
        now = clock()
        recording.elapsed = now - started
        if stop.is_set():
            recording.ended = "interrupted"
            break
        if duration is not None and recording.elapsed >= duration:
            recording.ended = "duration"
            break
        if progress is not None and now >= next_progress:
            progress(recording)
            next_progress = now + every
        left = POLL if duration is None else min(POLL, max(0.0, duration - recording.elapsed))
        if not take(left):
            recording.ended = "source ended"
            break
    recording.elapsed = clock() - started
    return recording.ended


def open_bus(interface: str, channel: str, bitrate: int | None, fd: bool) -> BusReader:
    """The bus to record: a raw socket as candump's for socketcan (the kernel's exact
    microseconds and drop counter), python-can for any other interface. SourceError
    naming it when it cannot be opened."""
    if interface == "socketcan":
        from agent.console.socketcan_raw import RawCanSocket

        return _RawReader(RawCanSocket(channel))
    return _PythonCanReader(interface, channel, bitrate, fd)


class _RawReader:
    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.where = f"socketcan:{sock.interface}"
        self.dropped = 0

    def read(self, timeout: float) -> list[Line]:
        name = self.sock.interface
        lines: list[Line] = [((f.seconds, f.microseconds), name, f.can_id, f.extended,
                              f.data, f.fd, f.flags, f.tail) for f in self.sock.read(timeout)]
        self.dropped = self.sock.dropped
        return lines

    def close(self) -> None:
        self.sock.close()


class _PythonCanReader:
    """python-can's messages; a CAN FD frame's flags from its BRS and ESI."""

    def __init__(self, interface: str, channel: str, bitrate: int | None, fd: bool) -> None:
        import can

        options: dict[str, Any] = {}
        if bitrate is not None:
            options["bitrate"] = bitrate
        if fd:
            options["fd"] = True
        self.where = f"{interface}:{channel}"
        self.channel = channel
        self.dropped = 0
        try:
            self.bus = can.Bus(interface=interface, channel=channel, **options)
        except Exception as exc:  # a foreign library: whatever it raises
            raise SourceError(f"cannot open {self.where}: {exc}") from exc

    def read(self, timeout: float) -> list[Line]:
        lines: list[Line] = []
        msg = self.bus.recv(timeout)
        while msg is not None:
            if not msg.is_error_frame:
                can_id = msg.arbitration_id
                flags = FDF | (BRS if msg.bitrate_switch else 0) | \
                    (ESI if msg.error_state_indicator else 0)
                remote = bool(msg.is_remote_frame)
                tail = "" if msg.is_fd else classic_tail(remote, msg.dlc)
                lines.append((msg.timestamp, self.channel, can_id,
                              bool(msg.is_extended_id) or can_id > 0x7FF,
                              b"" if remote else bytes(msg.data), bool(msg.is_fd), flags, tail))
            msg = self.bus.recv(0) if len(lines) < BURST else None
        return lines

    def close(self) -> None:
        self.bus.shutdown()
