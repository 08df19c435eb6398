"""A live bus that fails to read starts a gap, is reopened with backoff, and goes on.

No kernel needed: the bus is python-can's real ``virtual`` interface; the
"link" is a switch that makes reads raise ``CanOperationError`` (ENETDOWN) and
opens fail while it is down, as a socketcan bus does on ``ip link set down``.
The stop event's ``wait`` records the backoff and returns at once, so the
exact sequence is asserted without sleeping. The real kernel does the same in
``tests/vcan/test_vcan_source.py``.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
import uuid
from typing import Any

import can
import pytest

from agent.errors import SourceError
from agent.frames import Frame
from agent.sources.can_bus import CanBusSource, backoff_delays, bus_absent

WATCHDOG = 10.0


class Link:
    def __init__(self) -> None:
        self.up = True


class FlakyBus:
    """A virtual bus whose reads fail while ``link`` is down."""

    def __init__(self, bus: Any, link: Link) -> None:
        self.bus, self.link = bus, link
        self.shut = False

    def recv(self, timeout: float) -> Any:
        if not self.link.up:
            raise can.CanOperationError("Error receiving: Network is down", errno.ENETDOWN)
        return self.bus.recv(timeout)

    def shutdown(self) -> None:
        self.shut = True
        self.bus.shutdown()


class FlakySource(CanBusSource):
    link: Link

    def _open_bus(self) -> Any:
        link = getattr(self, "link", None)
        if link is not None and not link.up:
            raise SourceError(f"cannot open {self.where}: [Errno 19] No such device")
        bus = FlakyBus(super()._open_bus(), link or Link())
        self.opened.append(bus)
        return bus

    opened: list[FlakyBus]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.opened = []
        super().__init__(*args, **kwargs)


class RecordingStop(threading.Event):
    """``wait(delay)`` records ``delay``; the link comes back after ``down_waits`` waits."""

    def __init__(self, link: Link, down_waits: int) -> None:
        super().__init__()
        self.link, self.down_waits = link, down_waits
        self.delays: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        if timeout is None or timeout > 1.0:  # only the backoff is faked
            return super().wait(timeout)
        self.delays.append(timeout)
        if len(self.delays) >= self.down_waits:
            self.link.up = True
        return self.is_set()


def test_backoff_doubles_and_is_capped() -> None:
    delays = backoff_delays(0.1, 1.0)
    assert [next(delays) for _ in range(7)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]


def test_a_gap_is_counted_once_and_frames_after_it_arrive(
        caplog: pytest.LogCaptureFixture) -> None:
    channel = f"bavard-reconnect-{uuid.uuid4().hex}"
    link = Link()
    source = FlakySource("veh", interface="virtual", channel=channel, reconnect_initial=0.1,
                         reconnect_max=0.5)
    source.link = link
    source.opened[0].link = link
    stop = RecordingStop(link, down_waits=6)
    idle: list[bool] = []  # link state at each on_idle call
    got: list[Frame] = []

    with can.Bus(interface="virtual", channel=channel) as sender, \
            caplog.at_level(logging.WARNING, logger="agent.sources.can_bus"):

        def on_idle() -> None:
            idle.append(link.up)
            if link.up and len(got) == 1 and len(source.opened) == 2:
                # the reopened bus read cleanly: the link is back, send the next frame
                sender.send(can.Message(arbitration_id=0x102, data=b"\x03"))

        source.on_idle = on_idle
        sender.send(can.Message(arbitration_id=0x100, data=b"\x01"))
        watchdog = threading.Timer(WATCHDOG, stop.set)
        watchdog.start()
        try:
            for frame in source.frames(stop):
                got.append(frame)
                if len(got) == 1:
                    link.up = False  # the next read fails: the gap starts
                    # lost with the bus that goes down (a virtual bus opened later misses it)
                    sender.send(can.Message(arbitration_id=0x101, data=b"\x02"))
                elif len(got) == 2:
                    break
        finally:
            watchdog.cancel()
    assert not stop.is_set(), "the watchdog had to stop the source"
    assert [(f.arbitration_id, f.data) for f in got] == [(0x100, b"\x01"), (0x102, b"\x03")]
    assert source.stats.gaps == 1
    assert not source.stats.in_gap
    assert source.stats.reopens == 6
    assert stop.delays == [0.1, 0.2, 0.4, 0.5, 0.5, 0.5]
    assert source.opened[0].shut  # the failed bus was shut down
    assert len(source.opened) == 2  # five opens failed, the sixth worked
    assert idle[0] is False  # the gap's start handed on what the pipeline held
    assert source.stats.gap_seconds > 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings
    assert "gap 1 started" in warnings[0]
    assert "back after a gap of" in warnings[1]
    source.close()
    assert source.opened[1].shut


def test_stop_during_the_backoff_ends_the_iteration_at_once() -> None:
    channel = f"bavard-reconnect-{uuid.uuid4().hex}"
    link = Link()
    source = FlakySource("veh", interface="virtual", channel=channel, reconnect_initial=30.0,
                         reconnect_max=60.0)
    source.link = link
    source.opened[0].link = link
    link.up = False
    stop = threading.Event()
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    started = time.monotonic()
    try:
        assert list(source.frames(stop)) == []
    finally:
        timer.cancel()
        source.close()
    assert time.monotonic() - started < 5.0  # not the 30 s backoff
    assert source.stats.gaps == 1
    assert source.stats.in_gap
    assert source.stats.reopens == 0


def test_close_from_another_thread_is_not_a_gap() -> None:
    channel = f"bavard-reconnect-{uuid.uuid4().hex}"
    source = CanBusSource("veh", interface="virtual", channel=channel)
    stop = threading.Event()
    timer = threading.Timer(0.3, source.close)
    timer.start()
    watchdog = threading.Timer(WATCHDOG, stop.set)
    watchdog.start()
    try:
        assert list(source.frames(stop)) == []
    finally:
        timer.cancel()
        watchdog.cancel()
    assert not stop.is_set()
    assert source.stats.gaps == 0


class AbsentAtFirst(CanBusSource):
    """A virtual bus whose adapter is unplugged until ``link`` comes up: opening it fails
    as python-can fails on a serial adapter's missing port."""

    def __init__(self, link: Link, *args: Any, **kwargs: Any) -> None:
        self.link = link
        super().__init__(*args, **kwargs)

    def _open_bus(self) -> Any:
        if not self.link.up:
            cause = can.CanInitializationError("could not open port /dev/ttyACM0: [Errno 2] "
                                               "No such file or directory")
            raise SourceError(f"cannot open {self.where}: {cause}") from cause
        return super()._open_bus()


def test_a_bus_absent_at_start_is_a_gap_opened_on_the_backoff(
        caplog: pytest.LogCaptureFixture) -> None:
    """Regression: the first open raised SourceError, so an adapter unplugged when the
    service started (or reloaded) stopped it; now it is a gap until the bus appears."""
    channel = f"bavard-reconnect-{uuid.uuid4().hex}"
    link = Link()
    link.up = False
    with caplog.at_level(logging.WARNING, logger="agent.sources.can_bus"):
        source = AbsentAtFirst(link, "veh", interface="virtual", channel=channel,
                               reconnect_initial=0.1, reconnect_max=0.5)
    assert source.bus is None
    assert source.stats.gaps == 1 and source.stats.in_gap
    stop = RecordingStop(link, down_waits=4)
    got: list[Frame] = []
    with can.Bus(interface="virtual", channel=channel) as sender, \
            caplog.at_level(logging.WARNING, logger="agent.sources.can_bus"):

        def on_idle() -> None:  # the bus is open and read cleanly: a frame comes
            if not got:
                sender.send(can.Message(arbitration_id=0x100, data=b"\x01"))

        source.on_idle = on_idle
        watchdog = threading.Timer(WATCHDOG, stop.set)
        watchdog.start()
        try:
            for frame in source.frames(stop):
                got.append(frame)
                break
        finally:
            watchdog.cancel()
            source.close()
    assert not stop.is_set(), "the watchdog had to stop the source"
    assert [(f.arbitration_id, f.data) for f in got] == [(0x100, b"\x01")]
    assert stop.delays == [0.1, 0.2, 0.4, 0.5]  # the reads' backoff
    assert source.stats.reopens == 4 and source.stats.gaps == 1
    assert not source.stats.in_gap and source.stats.gap_seconds > 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings
    assert "cannot open the bus" in warnings[0] and "gap 1 started" in warnings[0]
    assert "back after a gap of" in warnings[1]


def test_what_no_wait_cures_is_still_a_configuration_error() -> None:
    assert bus_absent(can.CanInitializationError("no such port"))
    assert bus_absent(OSError(errno.ENODEV, "No such device"))
    assert not bus_absent(can.CanInterfaceNotImplementedError("Unknown interface"))
    assert not bus_absent(ImportError("no vendor module"))
    assert not bus_absent(OSError("pcanbasic library not found."))  # no errno: a library
    assert not bus_absent(OSError(errno.EAFNOSUPPORT, "Address family not supported"))
    assert not bus_absent(NameError("canGetNumberOfChannels"))  # python-can's own surprise
    with pytest.raises(SourceError, match="cannot open no_such_interface:x"):
        CanBusSource("veh", interface="no_such_interface", channel="x")


def test_a_source_taking_over_skips_what_the_old_one_read() -> None:
    """The service's reload opens the new source before it stops the old one: both queue
    the same frames for a moment. The new one must not store again what the old one read,
    and must keep what the old one never read (here: a frame its filter left out; on a
    loaded box, frames its socket's full queue dropped)."""
    channel = f"bavard-reconnect-{uuid.uuid4().hex}"
    stop = threading.Event()
    watchdog = threading.Timer(WATCHDOG, stop.set)
    watchdog.start()

    def message(i: int) -> can.Message:
        return can.Message(timestamp=1_700_000_000.0 + i, arbitration_id=0x100 + i,
                           is_extended_id=False, data=bytes([i]))

    every_id_but_0x103 = [{"can_id": 0x100 + i, "can_mask": 0x7FF} for i in (0, 1, 2, 4, 5, 6)]
    try:
        with can.Bus(interface="virtual", channel=channel, preserve_timestamps=True) as sender:
            old = CanBusSource("veh", interface="virtual", channel=channel,
                               can_filters=every_id_but_0x103)
            for i in range(3):
                sender.send(message(i))
            new = CanBusSource("veh", interface="virtual", channel=channel)  # opened now
            for i in range(3, 6):
                sender.send(message(i))
            read = []
            for frame in old.frames(stop):  # the old one reads on until it is stopped
                read.append(frame.arbitration_id)
                if len(read) == 3:
                    break
            read += [f.arbitration_id for f in old.drain()]  # what its queue held at the stop
            old.close()
            assert read == [0x100, 0x101, 0x102, 0x104, 0x105]
            new.take_over(old)
            sender.send(message(6))
            taken = []
            for frame in new.frames(stop):
                taken.append(frame.arbitration_id)
                if len(taken) == 2:
                    break
            new.close()
    finally:
        watchdog.cancel()
    assert not stop.is_set()
    assert taken == [0x103, 0x106]  # 0x104, 0x105 were the old one's; 0x103 it never read


def test_a_stop_keeps_what_the_bus_already_received() -> None:
    """Regression: a reader that fell behind (a busy box, a reload compiling) had frames
    waiting in its socket's queue at the stop; they went with the socket. Now the
    pipeline drains them: at a reload the new source, opened later, may not have them."""
    channel = f"bavard-reconnect-{uuid.uuid4().hex}"
    with CanBusSource("veh", interface="virtual", channel=channel) as source, \
            can.Bus(interface="virtual", channel=channel) as sender:
        for i in range(3):
            sender.send(can.Message(arbitration_id=0x100 + i, is_extended_id=False,
                                    data=bytes([i])))
        stop = threading.Event()
        stop.set()  # stopped before it read them
        assert list(source.frames(stop)) == []
        drained = source.drain()
        assert [(f.arbitration_id, f.data) for f in drained] == [
            (0x100, b"\x00"), (0x101, b"\x01"), (0x102, b"\x02")]
        assert source.stats.frames == 3
        assert list(source.recent) == [f.timestamp for f in drained]
        assert source.drain() == []


def test_a_29_bit_id_marked_11_bit_by_python_can_is_29_bit_on_the_live_bus() -> None:
    """Regression: the live bus kept python-can's flag for an id above 0x7FF (the replay
    readers already fixed it): a decoder keyed by (id, extended) missed the message."""
    channel = f"bavard-reconnect-{uuid.uuid4().hex}"
    stop = threading.Event()
    watchdog = threading.Timer(WATCHDOG, stop.set)
    watchdog.start()
    try:
        with CanBusSource("veh", interface="virtual", channel=channel) as source, \
                can.Bus(interface="virtual", channel=channel) as sender:
            sender.send(can.Message(arbitration_id=0x18FEF521, is_extended_id=False,
                                    data=b"\x01\x02"))
            sender.send(can.Message(arbitration_id=0x7FF, is_extended_id=False, data=b""))
            frames = []
            for frame in source.frames(stop):
                frames.append(frame)
                if len(frames) == 2:
                    break
    finally:
        watchdog.cancel()
    assert [(f.arbitration_id, f.is_extended) for f in frames] == [
        (0x18FEF521, True), (0x7FF, False)]


def test_python_cans_error_for_an_absent_interface_is_heard_only_from_vvv(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The CAN source reports an absent bus once per outage (bus.down); python-can's own
    ERROR on every attempt is dropped by the command's logging below -vvv."""
    from agent.cli.main import configure_logging

    socketcan = logging.getLogger("can.interfaces.socketcan")
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        configure_logging(0, False)
        with caplog.at_level(logging.WARNING):
            socketcan.error("Could not access SocketCAN device %s (%s)", "can0", "No such device")
            socketcan.error("Could not enable error frames (%s)", "EPERM")
        assert [r.getMessage() for r in caplog.records] == ["Could not enable error frames (EPERM)"]
        caplog.clear()
        configure_logging(3, False)
        with caplog.at_level(logging.WARNING):
            socketcan.error("Could not access SocketCAN device %s (%s)", "can0", "No such device")
        assert [r.getMessage() for r in caplog.records] == [
            "Could not access SocketCAN device can0 (No such device)"]
    finally:
        for h in list(root.handlers):
            if h not in handlers:
                root.removeHandler(h)
        root.setLevel(level)
        logging.getLogger("can").setLevel(logging.NOTSET)
