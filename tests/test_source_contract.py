"""One contract, every frame source: replay (candump, ASC), the simulator, a live bus.

``SourceContract`` holds the tests; each ``Test*`` subclass supplies the
``make_source`` fixture (a factory of fresh sources over a known stream) and
says what that stream holds. The live bus is python-can's real ``virtual``
interface: a second bus on the same (unique) channel sends the frames.

Every loop here is bounded: a consumer that never ends is either cut off by a
watchdog that sets the stop event, or run in a thread joined with a timeout.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import can
import cantools
import pytest

from agent.frames import Frame
from agent.obd.settings import ObdSettings
from agent.sources import Source, source_class
from agent.sources.can_bus import RECV_TIMEOUT, CanBusSource
from agent.sources.obd import ObdSource
from agent.sources.replay import ReplaySource
from agent.sources.simulator import SimulatorSource
from agent.sources.simulator.obd_ecu import SimulatedEcus

ROOT = Path(__file__).resolve().parents[1]
DBC = ROOT / "dbc" / "demo_vehicle.dbc"

CHANNEL = "veh0"  # the configured channel name every source must put on its frames
STOP_BOUND = 2.0  # seconds: a stop request must end any iteration within this
WATCHDOG = 10.0  # seconds: no consumer loop here may run longer (a failing test, not a hang)
T0 = 1_700_000_000.0
SPACING = 5.0  # seconds between logged frames: a real-time replay waits this long between them

# The known stream: (id, extended, data), data of every length 0..8, 11- and 29-bit ids.
STREAM: list[tuple[int, bool, bytes]] = [
    (0x18DAF110 + i if i % 3 == 0 else 0x100 + i, i % 3 == 0,
     bytes((i * 7 + k) & 0xFF for k in range(i % 9)))
    for i in range(24)
]

Factory = Callable[..., Source]


def frames_of(source: Source, stop: threading.Event, limit: int) -> list[Frame]:
    """At most ``limit`` frames; a watchdog sets ``stop`` so that the loop always ends."""
    watchdog = threading.Timer(WATCHDOG, stop.set)
    watchdog.daemon = True
    watchdog.start()
    got: list[Frame] = []
    try:
        for frame in source.frames(stop):
            got.append(frame)
            if len(got) >= limit:
                break
    finally:
        watchdog.cancel()
    return got


def count_closes(source: Source) -> list[None]:
    """Record each call of the source's ``_close`` hook (the release of its resources)."""
    calls: list[None] = []
    release = source._close

    def _close() -> None:
        calls.append(None)
        release()

    source._close = _close  # type: ignore[method-assign]
    return calls


class SourceContract:
    """What every Source promises. Subclasses provide ``make_source`` and the class data."""

    #: frames the stream holds (a finite source) or that were sent (the live bus)
    expected_count: ClassVar[int]
    #: (id, extended, data) of those frames in order, when the test knows them
    expected_content: ClassVar[list[tuple[int, bool, bytes]] | None] = None
    #: lines or messages the source skips and counts, per kind
    expected_skipped: ClassVar[dict[str, int]] = {}
    #: False: the stream never ends by itself (a live bus)
    finite: ClassVar[bool] = True
    #: timestamps must be non-decreasing
    ordered: ClassVar[bool] = True

    @pytest.fixture
    def make_source(self, tmp_path: Path) -> Iterator[Factory]:
        """``make_source(realtime=False)``: a fresh source over the known stream.

        ``realtime=True``: a replay or simulator paced at speed 1, far longer
        than any test waits (the live bus is real time anyway).
        """
        raise NotImplementedError
        yield  # pragma: no cover

    def assert_released(self, source: Source) -> None:
        """Hook: check that the source let go of what it held (file, bus)."""

    # -- helpers -----------------------------------------------------------------

    def read_all(self, source: Source) -> list[Frame]:
        """Every frame of the stream: a finite one to its end; the bus until all arrived."""
        stop = threading.Event()
        if self.finite:
            frames = frames_of(source, stop, self.expected_count + 1)
        else:
            frames = frames_of(source, stop, self.expected_count)
        assert not stop.is_set(), "the watchdog had to stop the source"
        return frames

    # -- the contract ------------------------------------------------------------

    def test_yields_frames_with_bytes_data_and_float_timestamps(
        self, make_source: Factory
    ) -> None:
        with make_source() as source:
            frames = self.read_all(source)
        assert len(frames) == self.expected_count
        for frame in frames:
            assert type(frame) is Frame
            assert type(frame.data) is bytes
            assert type(frame.timestamp) is float
            assert math.isfinite(frame.timestamp)
            assert type(frame.arbitration_id) is int
            assert type(frame.is_extended) is bool
            assert type(frame.is_fd) is bool
        if self.expected_content is not None:
            got = [(f.arbitration_id, f.is_extended, f.data) for f in frames]
            assert got == self.expected_content

    def test_stats_count_the_frames_yielded(self, make_source: Factory) -> None:
        with make_source() as source:
            frames = self.read_all(source)
            assert source.stats.frames == len(frames) == self.expected_count
            assert dict(source.stats.skipped) == self.expected_skipped
        with make_source() as source:  # a consumer that leaves early
            partial = frames_of(source, threading.Event(), 5)
            assert len(partial) == 5
            assert source.stats.frames == 5

    def test_declares_what_the_pipeline_relies_on(self, make_source: Factory) -> None:
        """``live``, ``on_idle``, the gap counters and ``drain`` are declared on every
        source (the pipeline and the daemon use them directly, not through getattr)."""
        with make_source() as source:
            # only a live bus does not wait; an endless polled one (OBD) waits for room
            assert source.live is (not self.finite and not source.polled)
            assert source.on_idle is None
            self.read_all(source)
            assert (source.stats.gaps, source.stats.in_gap, source.stats.gap_seconds) == (
                0, False, 0.0)
            assert source.drain() == []  # everything it received was yielded
            assert source.stats.frames == self.expected_count

    def test_frames_carry_the_configured_channel_name(self, make_source: Factory) -> None:
        with make_source() as source:
            frames = self.read_all(source)
        assert frames
        assert {f.channel for f in frames} == {CHANNEL}

    def test_timestamps_do_not_decrease(self, make_source: Factory) -> None:
        if not self.ordered:
            pytest.skip("a live bus stamps frames with the wall clock, which may step back")
        with make_source() as source:
            stamps = [f.timestamp for f in self.read_all(source)]
        assert all(a <= b for a, b in itertools.pairwise(stamps))

    def test_stop_set_by_the_consumer_ends_the_iteration_at_once(
        self, make_source: Factory
    ) -> None:
        stop = threading.Event()
        got: list[Frame] = []
        with make_source() as source:
            for frame in source.frames(stop):
                got.append(frame)
                if len(got) == 3:
                    stop.set()
                assert len(got) <= 3, "a frame came after the stop request"
            assert source.stats.frames == 3
        assert len(got) == 3

    def test_stop_set_before_iterating_yields_at_most_one_frame(
        self, make_source: Factory
    ) -> None:
        # Source.frames checks the event after each frame; a replay at speed 0
        # yields its first frame before that check, the others none at all.
        stop = threading.Event()
        stop.set()
        with make_source() as source:
            started = time.monotonic()
            got = frames_of(source, stop, 10)
            assert time.monotonic() - started < STOP_BOUND
            assert len(got) <= 1
            assert source.stats.frames == len(got)

    def test_stop_from_another_thread_ends_a_waiting_source_promptly(
        self, make_source: Factory
    ) -> None:
        """Real time (or a quiet live bus): the consumer is waiting when stop is set."""
        stop = threading.Event()
        # the live bus: after every sent frame, it waits on a quiet bus; the others
        # are stopped during their first wait (replay) or in full flow (simulator)
        wanted = 1 if self.finite else self.expected_count
        arrived = threading.Event()
        got: list[Frame] = []
        errors: list[BaseException] = []
        source = make_source(realtime=True)

        def consume() -> None:
            try:
                for frame in source.frames(stop):
                    got.append(frame)
                    if len(got) == wanted:
                        arrived.set()
            except BaseException as exc:  # reported by the test thread
                errors.append(exc)

        consumer = threading.Thread(target=consume, daemon=True)
        with source:
            consumer.start()
            try:
                assert arrived.wait(WATCHDOG), f"{wanted} frame(s) did not arrive"
                stopped = time.monotonic()
                stop.set()
                consumer.join(STOP_BOUND)
                elapsed = time.monotonic() - stopped
                assert not consumer.is_alive(), f"still running {STOP_BOUND} s after stop"
            finally:
                stop.set()
                consumer.join(WATCHDOG)
        assert not errors
        assert elapsed < STOP_BOUND
        assert source.stats.frames == len(got) >= wanted

    def test_close_is_idempotent(self, make_source: Factory) -> None:
        source = make_source()
        calls = count_closes(source)
        frames_of(source, threading.Event(), 3)
        source.close()
        source.close()
        assert len(calls) == 1
        self.assert_released(source)

    def test_context_manager_closes_even_on_error(self, make_source: Factory) -> None:
        with make_source() as source:
            calls = count_closes(source)
            frames_of(source, threading.Event(), 3)
        assert len(calls) == 1
        self.assert_released(source)
        source.close()
        assert len(calls) == 1

        source = make_source()
        calls = count_closes(source)
        with pytest.raises(RuntimeError, match="consumer failed"), source:
            for _frame in source.frames():
                raise RuntimeError("consumer failed")
        assert len(calls) == 1
        self.assert_released(source)

    def test_enter_returns_the_source_itself(self, make_source: Factory) -> None:
        source = make_source()
        with source as entered:
            assert entered is source


# ---------------------------------------------------------------------------
# log replay


def write_candump_log(path: Path) -> Path:
    """The known stream as a candump log, with lines the parser must skip and count."""
    lines = ["# recorded by the contract test"]
    for i, (ident, extended, data) in enumerate(STREAM):
        id_text = f"{ident:08X}" if extended else f"{ident:03X}"
        lines.append(f"({T0 + i * SPACING:.6f}) can0 {id_text}#{data.hex().upper()}")
        if i == 5:
            lines.append(f"({T0 + i * SPACING:.6f}) can0 123#R")
        if i == 10:
            lines.append(f"({T0 + i * SPACING:.6f}) can0 20000080#0000000000000000")
    path.write_text("\n".join(lines) + "\n", encoding="ascii")
    return path


def write_asc_log(path: Path) -> Path:
    """The known stream as a Vector ASC file written by python-can, with a remote and an
    error frame among the data frames."""
    writer = can.ASCWriter(str(path))
    try:
        for i, (ident, extended, data) in enumerate(STREAM):
            ts = T0 + i * SPACING
            writer.on_message_received(can.Message(
                timestamp=ts, arbitration_id=ident, is_extended_id=extended, data=data,
                channel=0))
            if i == 5:
                writer.on_message_received(can.Message(
                    timestamp=ts, arbitration_id=0x123, is_remote_frame=True, dlc=2,
                    channel=0))
            if i == 10:
                writer.on_message_received(can.Message(
                    timestamp=ts, is_error_frame=True, channel=0))
    finally:
        writer.stop()
    return path


class _ReplayContract(SourceContract):
    expected_count = len(STREAM)
    expected_content = STREAM
    log_name: ClassVar[str]

    def write_log(self, path: Path) -> Path:
        raise NotImplementedError

    @pytest.fixture
    def make_source(self, tmp_path: Path) -> Iterator[Factory]:
        path = self.write_log(tmp_path / self.log_name)
        made: list[Source] = []

        def make(realtime: bool = False) -> Source:
            source = ReplaySource("replay", path, speed=1.0 if realtime else 0.0,
                                  channel=CHANNEL)
            made.append(source)
            return source

        yield make
        for source in made:
            source.close()

    def assert_released(self, source: Source) -> None:
        assert isinstance(source, ReplaySource)
        assert source._file is None

    def test_close_mid_iteration_closes_the_log_file(self, make_source: Factory) -> None:
        source = make_source()
        assert isinstance(source, ReplaySource)
        frames = source.frames(threading.Event())
        next(frames)
        handle = source._file
        assert handle is not None and not handle.closed
        source.close()
        assert handle.closed
        # the suspended iteration ends cleanly: no frame, no reader error counted
        assert list(frames) == []
        assert "reader_error" not in source.stats.skipped

    def test_timestamps_are_the_logs(self, make_source: Factory) -> None:
        with make_source() as source:
            stamps = [f.timestamp for f in self.read_all(source)]
        gaps = [b - a for a, b in itertools.pairwise(stamps)]
        assert gaps == pytest.approx([SPACING] * (len(STREAM) - 1), abs=1e-6)


class TestReplayCandump(_ReplayContract):
    log_name = "drive.log"
    expected_skipped = {"comment": 1, "remote": 1, "error_frame": 1}

    def write_log(self, path: Path) -> Path:
        return write_candump_log(path)

    def test_candump_timestamps_are_exact(self, make_source: Factory) -> None:
        with make_source() as source:
            stamps = [f.timestamp for f in self.read_all(source)]
        assert stamps == [float(f"{T0 + i * SPACING:.6f}") for i in range(len(STREAM))]


class TestReplayAsc(_ReplayContract):
    log_name = "drive.asc"
    expected_skipped = {"remote": 1, "error_frame": 1}

    def write_log(self, path: Path) -> Path:
        return write_asc_log(path)


# ---------------------------------------------------------------------------
# the simulator


SIM_SECONDS = 1.0


def simulated_frame_count(seconds: float) -> int:
    """Frames the simulator sends in ``seconds``: each cyclic message of the DBC once per
    cycle (its first send falls within its first cycle), computed from the DBC alone."""
    db = cantools.database.load_file(str(DBC))
    return sum(math.ceil(seconds * 1000 / m.cycle_time) for m in db.messages if m.cycle_time)


class TestSimulator(SourceContract):
    expected_count = simulated_frame_count(SIM_SECONDS)  # 352 with the demo DBC

    @pytest.fixture
    def make_source(self, tmp_path: Path) -> Iterator[Factory]:
        made: list[Source] = []

        def make(realtime: bool = False) -> Source:
            # real time: a minute of driving, far longer than a test may wait
            source = SimulatorSource("sim", DBC, speed=1.0 if realtime else 0.0,
                                     duration=60.0 if realtime else SIM_SECONDS,
                                     channel=CHANNEL)
            made.append(source)
            return source

        yield make
        for source in made:
            source.close()

    def test_expected_count(self) -> None:
        assert self.expected_count == 352

    def test_the_channel_defaults_to_the_source_name(self) -> None:
        with SimulatorSource("sim7", DBC, speed=0.0, duration=0.05) as source:
            channels = {f.channel for f in frames_of(source, threading.Event(), 100)}
        assert channels == {"sim7"}


# ---------------------------------------------------------------------------
# a live bus: python-can's virtual interface


def stream_messages() -> list[can.Message]:
    """The known stream as python-can messages, with a remote and an error frame."""
    messages = []
    for i, (ident, extended, data) in enumerate(STREAM):
        messages.append(can.Message(arbitration_id=ident, is_extended_id=extended, data=data))
        if i == 5:
            messages.append(can.Message(arbitration_id=0x123, is_extended_id=False,
                                        is_remote_frame=True, dlc=2))
        if i == 10:
            messages.append(can.Message(is_error_frame=True))
    return messages


class TestCanBusVirtual(SourceContract):
    expected_count = len(STREAM)
    expected_content = STREAM
    expected_skipped = {"remote": 1, "error_frame": 1}
    finite = False
    ordered = False

    @pytest.fixture
    def make_source(self, tmp_path: Path) -> Iterator[Factory]:
        made: list[Source] = []

        def make(realtime: bool = False) -> Source:
            channel = f"bavard-contract-{uuid.uuid4().hex}"
            source = CanBusSource(CHANNEL, interface="virtual", channel=channel)
            made.append(source)
            # the source's bus is open: it queues what another bus on the channel sends
            with can.Bus(interface="virtual", channel=channel) as sender:
                for message in stream_messages():
                    sender.send(message)
            return source

        yield make
        for source in made:
            source.close()

    def assert_released(self, source: Source) -> None:
        assert isinstance(source, CanBusSource)
        with pytest.raises(can.CanOperationError):
            source.bus.recv(0)

    def test_a_quiet_bus_keeps_the_iteration_open_until_stop(self, make_source: Factory) -> None:
        stop = threading.Event()
        with make_source() as source:
            frames = frames_of(source, stop, self.expected_count)
            assert len(frames) == self.expected_count
            # nothing more on the bus: the source waits, it does not end by itself
            timer = threading.Timer(3 * RECV_TIMEOUT, stop.set)
            timer.start()
            started = time.monotonic()
            try:
                more = frames_of(source, stop, 1)
            finally:
                timer.cancel()
            waited = time.monotonic() - started
        assert more == []
        assert 3 * RECV_TIMEOUT <= waited < 3 * RECV_TIMEOUT + STOP_BOUND
        assert source.stats.frames == self.expected_count

    def test_frames_sent_while_reading_arrive(self, make_source: Factory) -> None:
        channel = f"bavard-contract-{uuid.uuid4().hex}"
        stop = threading.Event()
        with CanBusSource(CHANNEL, interface="virtual", channel=channel) as source, \
                can.Bus(interface="virtual", channel=channel) as sender:

            def send() -> None:
                for i in range(10):
                    sender.send(can.Message(arbitration_id=0x200 + i, data=bytes([i])))
                    time.sleep(0.01)

            thread = threading.Thread(target=send, daemon=True)
            thread.start()
            frames = frames_of(source, stop, 10)
            thread.join(WATCHDOG)
        assert [(f.arbitration_id, f.data) for f in frames] == [
            (0x200 + i, bytes([i])) for i in range(10)]
        assert not stop.is_set()

    def test_an_unknown_interface_is_a_source_error(self) -> None:
        from agent.errors import SourceError

        with pytest.raises(SourceError, match="cannot open no_such_interface:x"):
            CanBusSource(CHANNEL, interface="no_such_interface", channel="x")


# ---------------------------------------------------------------------------
# OBD-II, native: the simulated ECUs on python-can's virtual bus


class TestObdNative(SourceContract):
    """The OBD source asks the simulated ECUs for ever: an endless stream, like a live
    bus, that polls at its own pace instead of dropping what finds the queue full."""

    expected_count = 12  # replies read before the consumer stops (any number would do)
    finite = False
    ordered = False  # stamped with the wall clock

    @pytest.fixture
    def make_source(self, tmp_path: Path) -> Iterator[Factory]:
        made: list[Source] = []
        ecus: list[SimulatedEcus] = []

        def make(realtime: bool = False) -> Source:
            channel = f"bavard-contract-{uuid.uuid4().hex}"
            ecus.append(SimulatedEcus.open("virtual", channel, t0=30.0).start())
            settings = ObdSettings(interface="virtual", channel=channel, timeout=0.1,
                                   pids=((0x0C, 0.0), (0x0D, 0.0)))
            source = ObdSource(CHANNEL, settings)
            made.append(source)
            return source

        yield make
        for source in made:
            source.close()
        for ecu in ecus:
            ecu.stop()

    def assert_released(self, source: Source) -> None:
        assert isinstance(source, ObdSource)
        assert source._transport is None


def test_every_registered_source_kind_has_a_contract_subclass() -> None:
    from test_gps_sources import TestGpsdContract, TestNmeaContract  # the GPS sources'

    from agent.sources.gpsd import GpsdSource
    from agent.sources.nmea import NmeaSource

    tested = {
        ReplaySource: TestReplayCandump,
        SimulatorSource: TestSimulator,
        CanBusSource: TestCanBusVirtual,
        ObdSource: TestObdNative,
        GpsdSource: TestGpsdContract,
        NmeaSource: TestNmeaContract,
    }
    from agent.sources import REGISTRY

    for kind in REGISTRY:
        cls: Any = source_class(kind)
        assert cls in tested, f"source kind {kind!r} ({cls.__name__}) has no contract test"
        assert issubclass(tested[cls], SourceContract)
