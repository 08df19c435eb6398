"""The GPS sources: a real gpsd reading a pseudo-terminal, an NMEA receiver on a pty
opened with pyserial, what both believe and what they count and ignore (garbage,
no fix, impossible positions, jumps), reconnection with backoff, the source contract,
and the channel through the configuration and the pipeline to samples."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from helpers.broker import free_port
from helpers.gps_peer import (
    GPSD,
    KNOTS_TO_KMH,
    Gpsd,
    GpsdPeer,
    Receiver,
    gga,
    no_fix,
    rmc,
    sentence,
)
from helpers.source_reader import SourceReader
from test_source_contract import CHANNEL, WATCHDOG, Factory, SourceContract

from agent.config import parse_config
from agent.decode.gps import FIX_ID, GpsDecoder, fix_data
from agent.frames import Frame, Sample
from agent.pipeline import Pipeline
from agent.sources import Source
from agent.sources.gps_fix import FixCheck, GpsSource
from agent.sources.gps_settings import GpsSettings
from agent.sources.gpsd import GpsdSource
from agent.sources.nmea import NmeaSource

T0 = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
HOME = (48.125, 11.5)  # 48 deg 7.5 min north, 11 deg 30 min east


def north(k: int) -> float:
    """``k`` steps of 0.006 minute (11 m) north of HOME, computed as the source reads
    the 4-decimal minutes of the sentence: the values compare exactly."""
    return 48 + round(7.5 + k * 0.006, 4) / 60
needs_gpsd = pytest.mark.skipif(GPSD is None, reason="gpsd is not installed "
                                "(apt-get install gpsd; scripts/test_deps.sh does it)")


def epoch(i: int, lat: float = HOME[0], lon: float = HOME[1], **extra: float) -> bytes:
    """Epoch ``i`` (one second apart): RMC then GGA, or GGA first on odd epochs."""
    when = T0 + timedelta(seconds=i)
    knots = extra.get("knots", 10.0)
    sentences = [rmc(when, lat, lon, knots, extra.get("course", 90.0)),
                 gga(when, lat, lon, extra.get("altitude", 512.5))]
    return b"".join(sentences if i % 2 == 0 else sentences[::-1])


class Reader(SourceReader):
    """A GPS source in a thread; every frame decoded; every wait bounded."""

    strict = True

    def __init__(self, source: GpsSource) -> None:
        super().__init__(source, GpsDecoder(source.name))

    def __enter__(self) -> Reader:
        super().__enter__()
        # pyserial empties a port's input when it opens it: write only after that
        self.wait_for(lambda: self.source.opens >= 1)
        return self


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    r = Receiver(tmp_path / "gps")
    yield r
    r.close()


def nmea_source(receiver: Receiver, **options: object) -> NmeaSource:
    options.setdefault("backoff", (0.05, 0.2))
    return NmeaSource("gps", GpsSettings("nmea", device=str(receiver.link)),
                      **options)  # type: ignore[arg-type]


# -- NMEA on a serial line ------------------------------------------------------------------

def test_nmea_epochs_become_one_fix_each_with_every_value(receiver: Receiver) -> None:
    with Reader(nmea_source(receiver)) as reader:
        for i in range(3):
            receiver.write_all(epoch(i, north(i), knots=10.0 + i,
                                     altitude=500.0 + i, course=45.0 * i))
        reader.wait_for(lambda: len(reader.values) >= 3)
        time.sleep(0.3)  # nothing more comes
    assert reader.values == [
        {"Latitude": north(i), "Longitude": HOME[1],
         "Speed": (10.0 + i) * KNOTS_TO_KMH, "Altitude": 500.0 + i, "Heading": 45.0 * i}
        for i in range(3)]
    frame = reader.frames[0]
    assert (frame.channel, frame.arbitration_id, frame.is_extended, frame.is_fd) == (
        "gps", FIX_ID, False, False)
    assert abs(frame.timestamp - time.time()) < 30  # the box's clock, like a bus's frames
    stats = reader.source.stats
    assert (stats.frames, dict(stats.skipped), stats.gaps, reader.source.connects) == (
        3, {}, 0, 1)


def test_rmc_alone_and_gga_alone_each_make_a_fix(receiver: Receiver) -> None:
    with Reader(nmea_source(receiver)) as reader:
        receiver.write_all(rmc(T0, *HOME, 0.0, None))  # stopped: no course
        reader.wait_for(lambda: len(reader.values) >= 1)
        receiver.write_all(gga(T0 + timedelta(seconds=1), *HOME, 33.0, talker="GN"))
        reader.wait_for(lambda: len(reader.values) >= 2)
    assert reader.values == [
        {"Latitude": HOME[0], "Longitude": HOME[1], "Speed": 0.0},
        {"Latitude": HOME[0], "Longitude": HOME[1], "Altitude": 33.0},
    ]


def test_southern_and_western_hemispheres_are_negative(receiver: Receiver) -> None:
    with Reader(nmea_source(receiver)) as reader:
        receiver.write_all(epoch(0, -33.875, -70.625))
        reader.wait_for(lambda: reader.values)
    assert (reader.values[0]["Latitude"], reader.values[0]["Longitude"]) == (-33.875, -70.625)


def test_garbage_no_fix_and_impossible_positions_are_counted_and_ignored(
        receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    t = [T0 + timedelta(seconds=i) for i in range(12)]
    line = (
        rmc(t[0], *HOME, 5.0, 1.0, checksum="00")  # a wrong checksum
        + rmc(t[1], *HOME, 5.0, 1.0, checksum="")  # none at all
        + b"\x00\xff\x13garbage without a dollar\r\n"
        + b"$GPRMC,123519,A,48x7.038,N*\r\n"  # cut short
        + rmc(t[2], *HOME, status="V")  # RMC: no fix
        + gga(t[3], *HOME, quality=0)  # GGA: no fix
        + rmc(t[4], *HOME, mode="N")  # RMC 2.3: not valid
        + rmc(t[5], *HOME) + gga(t[5], *HOME, quality=0)  # they disagree: no fix
        + sentence("GPRMC,120006.00,A,9130.0000,N,01130.0000,E,1.0,1.0,010526,,,A")  # 91.5 N
        + sentence("GPRMC,120007.00,A,4807.0000,N,18130.0000,E,1.0,1.0,010526,,,A")  # 181.5 E
        + sentence("GPRMC,120008.00,A,4861.0000,N,01130.0000,E,1.0,1.0,010526,,,A")  # 61 min
        + sentence("GPRMC,120009.00,A,4807.0000,X,01130.0000,E,1.0,1.0,010526,,,A")  # X?
        + b"$GPGSV," + b"9" * 2000 + b"\r\n"  # far too long
        + sentence("GPGSV,3,1,11,03,03,111,00,04,15,270,00,06,01,010,00,13,06,292,00")
        + sentence("GPXYZ,1,2,3")  # a kind pynmea2 does not know: not garbage
        + b"".join(no_fix(t[11]))  # what a receiver says before its first fix
        + epoch(10)
    )
    with Reader(nmea_source(receiver)) as reader:
        receiver.write_all(line)
        reader.wait_for(lambda: reader.values)
        time.sleep(0.4)
    assert [v["Latitude"] for v in reader.values] == [HOME[0]]
    assert dict(reader.source.stats.skipped) == {
        "checksum": 2, "bad_sentence": 4, "no_fix": 5, "out_of_range": 2, "too_long": 1}
    assert reader.source.stats.gaps == 0
    assert "ignored (checksum), and the next ones counted" in caplog.text
    assert caplog.text.count("ignored (checksum)") == 1


def test_a_500_km_jump_in_a_second_is_counted_and_ignored(receiver: Receiver) -> None:
    far = (HOME[0] + 4.5, HOME[1])  # 500 km north
    with Reader(nmea_source(receiver)) as reader:
        receiver.write_all(epoch(0) + epoch(1, north(1)) + epoch(2, *far)
                           + epoch(3, north(2)))
        reader.wait_for(lambda: len(reader.values) >= 3)
        time.sleep(0.3)
    assert [v["Latitude"] for v in reader.values] == [
        HOME[0], north(1), north(2)]
    assert dict(reader.source.stats.skipped) == {"jump": 1}


def test_after_five_jumps_in_a_row_the_first_fix_was_the_outlier(receiver: Receiver) -> None:
    outlier = (HOME[0] - 4.5, HOME[1])
    with Reader(nmea_source(receiver)) as reader:
        receiver.write_all(epoch(0, *outlier) + b"".join(
            epoch(i, north(i)) for i in range(1, 9)))
        reader.wait_for(lambda: len(reader.values) >= 4)
        time.sleep(0.3)
    # 1-5 rejected against the outlier; 6 becomes the reference; 7 and 8 follow it
    assert [v["Latitude"] for v in reader.values] == [
        outlier[0], *(north(i) for i in (6, 7, 8))]
    assert dict(reader.source.stats.skipped) == {"jump": 5}


def test_fix_check_on_the_box_clock_without_the_receiver_time() -> None:
    check = FixCheck()
    from agent.sources.gps_fix import Fix

    assert check.problem(Fix(48.0, 11.0), now=100.0) is None
    assert check.problem(Fix(48.00089, 11.0), now=101.0) is None  # 99 m in 1 s: allowed
    assert check.problem(Fix(48.0026, 11.0), now=102.0) == "jump"  # 190 m in 1 s
    assert check.problem(Fix(48.0026, 11.0), now=103.0) is None  # 190 m in 2 s
    assert check.problem(Fix(48.00261, 11.0), now=103.0) is None  # 1 m at once: 0.1 s
    assert check.problem(Fix(48.0028, 11.0), now=103.0) == "jump"  # 21 m at once
    assert check.problem(Fix(math.nan, 11.0), now=104.0) == "out_of_range"


def test_an_unplugged_receiver_is_a_gap_and_is_reopened(
        receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with Reader(nmea_source(receiver)) as reader:
        receiver.write_all(epoch(0))
        reader.wait_for(lambda: reader.values)
        receiver.unplug()
        reader.wait_for(lambda: reader.source.stats.in_gap)
        time.sleep(0.5)  # several attempts against nothing: still one gap
        receiver.replug()
        reader.wait_for(lambda: reader.source.opens >= 2)
        receiver.write_all(epoch(1, north(1)))
        reader.wait_for(lambda: len(reader.values) >= 2 and not reader.source.stats.in_gap)
    stats = reader.source.stats
    assert (stats.gaps, stats.in_gap, reader.source.connects) == (1, False, 2)
    assert 0.4 < stats.gap_seconds < 10
    assert "GPS lost (NMEA on" in caplog.text
    assert "the GPS speaks again" in caplog.text


def test_the_backoff_doubles_to_its_maximum_while_the_device_is_absent(tmp_path: Path) -> None:
    waits: list[float] = []
    stop = threading.Event()

    def pause(event: threading.Event, seconds: float) -> None:
        assert event is stop
        waits.append(seconds)
        if len(waits) >= 9:
            stop.set()

    source = NmeaSource("gps", GpsSettings("nmea", device=str(tmp_path / "absent")),
                        pause=pause)
    with source:
        assert list(source.frames(stop)) == []
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
    assert (source.stats.gaps, source.stats.in_gap, source.connects) == (1, True, 0)


def test_a_silent_line_is_reopened(receiver: Receiver) -> None:
    """Nothing sensible for ``silent`` seconds (nothing, or noise at a wrong baud rate)
    is a gap; the receiver speaking again ends it."""
    with Reader(nmea_source(receiver, silent=0.3)) as reader:
        for _ in range(20):  # noise for a second, in lines
            receiver.write(b"\xfe\x13\x88~\x00" * 8 + b"\r\n")
            time.sleep(0.05)
        reader.wait_for(lambda: reader.source.stats.gaps >= 1)
        assert reader.source.stats.skipped["bad_sentence"] >= 1
        # the receiver speaks again (an epoch a tenth of a second: the port is opened
        # anew meanwhile, which empties it)
        deadline = time.monotonic() + 10
        i = 0
        while not (reader.values and not reader.source.stats.in_gap):
            assert time.monotonic() < deadline, "the GPS was not heard again"
            receiver.write_all(epoch(i))
            i += 1
            time.sleep(0.1)


# -- gpsd ---------------------------------------------------------------------------------

@pytest.fixture
def gpsd(tmp_path: Path) -> Iterator[Gpsd]:
    if GPSD is None:
        pytest.skip("gpsd is not installed (apt-get install gpsd; scripts/test_deps.sh)")
    daemon = Gpsd(tmp_path)
    yield daemon
    daemon.close()


def gpsd_source(port: int, **options: object) -> GpsdSource:
    options.setdefault("backoff", (0.05, 0.2))
    return GpsdSource("gps", GpsSettings("gpsd", port=port), **options)  # type: ignore[arg-type]


@needs_gpsd
def test_gpsd_fixes_become_gps_samples(gpsd: Gpsd) -> None:
    with Reader(gpsd_source(gpsd.port)) as reader:
        reader.wait_for(lambda: sum("Altitude" in v for v in reader.values) >= 3)
    for values in reader.values:
        assert values["Latitude"] == pytest.approx(48.1, abs=1e-7)
        assert 11.5 < values["Longitude"] < 11.51
        assert values["Speed"] == pytest.approx(20.0 * KNOTS_TO_KMH, abs=0.01)
        assert values.get("Altitude", 520.0) == 520.0  # a 2D fix (RMC before GGA) has none
        assert values["Heading"] == 90.0
    longitudes = [v["Longitude"] for v in reader.values]
    assert longitudes == sorted(longitudes) and longitudes[-1] > longitudes[0]  # eastwards
    assert reader.source.connects == 1 and reader.source.stats.gaps == 0
    assert not set(reader.source.stats.skipped) & {"bad_json", "jump", "out_of_range"}


@needs_gpsd
def test_gpsd_without_a_fix_and_with_a_jump_counts_and_ignores_them(tmp_path: Path) -> None:
    state = {"mode": "void"}

    def script(i: int, when: datetime) -> list[bytes]:
        lat, lon = 48.1, 11.5 + i * 0.00001
        if state["mode"] == "void":
            return no_fix(when)
        if state["mode"] == "jump":
            state["mode"] = "fix"
            lat += 4.5  # 500 km north, for one epoch
        return [rmc(when, lat, lon, 20.0, 90.0), gga(when, lat, lon, 520.0)]

    gpsd = Gpsd(tmp_path, script)  # never a fix before the test says so
    with contextlib.closing(gpsd), Reader(gpsd_source(gpsd.port)) as reader:
        reader.wait_for(lambda: reader.source.stats.skipped["no_fix"] >= 1)
        time.sleep(0.5)  # gpsd says "no fix" when it changes, not each epoch
        assert reader.values == []
        state["mode"] = "fix"
        reader.wait_for(lambda: len(reader.values) >= 3)
        state["mode"] = "jump"
        reader.wait_for(lambda: state["mode"] == "fix" and reader.source.stats.skipped["jump"])
        count = len(reader.values)
        reader.wait_for(lambda: len(reader.values) >= count + 3)
    assert reader.source.stats.skipped["jump"] == 1
    assert all(v["Latitude"] == pytest.approx(48.1, abs=1e-6) for v in reader.values)


@needs_gpsd
def test_gpsd_restarted_is_a_gap_then_fixes_again(gpsd: Gpsd,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    with Reader(gpsd_source(gpsd.port)) as reader:
        reader.wait_for(lambda: len(reader.values) >= 3)
        gpsd.kill()
        reader.wait_for(lambda: reader.source.stats.in_gap)
        time.sleep(0.3)
        gpsd.start()
        count = len(reader.values)
        reader.wait_for(lambda: len(reader.values) >= count + 3, timeout=15)
    stats = reader.source.stats
    assert (stats.gaps, stats.in_gap, reader.source.connects) == (1, False, 2)
    assert "GPS lost (gpsd at 127.0.0.1:" in caplog.text


def test_gpsd_garbage_and_impossible_reports_are_counted_and_ignored() -> None:
    good = {"class": "TPV", "mode": 3, "lat": 48.2, "lon": 11.6, "alt": 400.0,
            "altMSL": 401.5, "speed": 10.0, "track": 370.0, "time": "2026-05-01T12:00:00.000Z"}
    lines = [
        b'{"class":"VERSION","release":"3.22","proto_major":3,"proto_minor":14}',
        b'{"class":"TPV","mode":1}',  # no fix
        b'{"class":"TPV","mode":3}',  # a fix without a position
        b'{"class":"TPV","mode":3,"lat":"48.1","lon":11.5}',  # not numbers
        b'{"class":"TPV","mode":3,"lat":95.0,"lon":11.5}',  # out of range
        b'{"class":"TPV","mode":3,"lat":48.1,"lon":-190.0}',
        b'{"class":"TPV","mode":true,"lat":48.1,"lon":11.5}',  # a boolean is no mode
        b'{"class":"TPV", "mode": 3, "lat": 48.1',  # cut
        b'[1, 2, 3]',
        b"\xff\xfe not even text",
        b'{"class":"SKY","satellites":[' + b'{"PRN":1},' * 8000 + b'{"PRN":2}]}',  # 80 KiB
        json.dumps(good).encode(),
        json.dumps({"class": "TPV", "mode": 2, "lat": 48.2001, "lon": 11.6, "alt": 399.0,
                    "time": "2026-05-01T12:00:01.000Z"}).encode(),
    ]
    peer = GpsdPeer([line + b"\n" for line in lines])
    try:
        with Reader(gpsd_source(peer.port)) as reader:
            reader.wait_for(lambda: len(reader.values) >= 2)
            time.sleep(0.3)
    finally:
        peer.close()
    assert peer.received == [b'?WATCH={"enable":true,"json":true}\n']
    assert reader.values == [
        {"Latitude": 48.2, "Longitude": 11.6, "Speed": 36.0, "Altitude": 401.5,
         "Heading": 10.0},
        {"Latitude": 48.2001, "Longitude": 11.6, "Altitude": 399.0},  # gpsd < 3.20: alt
    ]
    assert dict(reader.source.stats.skipped) == {
        "no_fix": 3, "bad_report": 1, "out_of_range": 2, "bad_json": 3, "too_long": 1}


def test_a_gpsd_that_says_nothing_is_connected_to_again() -> None:
    peer = GpsdPeer([])
    try:
        with Reader(gpsd_source(peer.port, silent=0.3)) as reader:
            reader.wait_for(lambda: peer.accepted >= 3)
        assert reader.source.stats.gaps == 1 and reader.source.stats.in_gap
        assert reader.source.connects == 0
    finally:
        peer.close()


def test_gpsd_absent_is_a_gap_with_backoff() -> None:
    waits: list[float] = []
    stop = threading.Event()

    def pause(event: threading.Event, seconds: float) -> None:
        waits.append(seconds)
        if len(waits) >= 4:
            stop.set()

    with gpsd_source(free_port(), backoff=(0.5, 1.5), pause=pause) as source:  # nobody there
        assert list(source.frames(stop)) == []
    assert waits == [0.5, 1.0, 1.5, 1.5]
    assert (source.stats.gaps, source.stats.in_gap) == (1, True)


# -- the source contract ------------------------------------------------------------------

def contract_epoch(i: int) -> bytes:
    return epoch(i, north(i), knots=float(i), altitude=100.0 + i,
                 course=float(i))


class TestNmeaContract(SourceContract):
    """A receiver that sent twelve epochs (and one sentence with a bad checksum), then
    went quiet: an endless live source, its frames known to the byte."""

    expected_count = 12
    expected_content = [
        (FIX_ID, False, fix_data(north(i), HOME[1], i * KNOTS_TO_KMH,
                                 100.0 + i, float(i)))
        for i in range(12)]
    expected_skipped = {"checksum": 1}
    finite = False
    ordered = False  # stamped with the wall clock

    @pytest.fixture
    def make_source(self, tmp_path: Path) -> Iterator[Factory]:
        made: list[tuple[Source, Receiver]] = []

        def make(realtime: bool = False) -> Source:
            line = Receiver(tmp_path / f"gps{len(made)}")
            source = NmeaSource(CHANNEL, GpsSettings("nmea", device=str(line.link)))
            made.append((source, line))
            stream = (contract_epoch(0) + rmc(T0, *HOME, checksum="00")
                      + b"".join(contract_epoch(i) for i in range(1, 12)))

            def send() -> None:  # once the source opened the port (which empties it)
                deadline = time.monotonic() + WATCHDOG
                while source.opens < 1 and time.monotonic() < deadline:
                    time.sleep(0.005)
                # some contract tests close the source without reading it all: what they
                # check is what the source yields, not that this thread wrote everything
                with contextlib.suppress(AssertionError):
                    line.write_all(stream)

            threading.Thread(target=send, daemon=True).start()
            return source

        yield make
        for source, line in made:
            source.close()
            line.close()

    def assert_released(self, source: Source) -> None:
        assert isinstance(source, NmeaSource)
        assert source._port is None


@pytest.fixture(scope="module")
def shared_gpsd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gpsd]:
    if GPSD is None:
        pytest.skip("gpsd is not installed (apt-get install gpsd; scripts/test_deps.sh)")
    daemon = Gpsd(tmp_path_factory.mktemp("gpsd"))
    yield daemon
    daemon.close()


@needs_gpsd
class TestGpsdContract(SourceContract):
    """A real gpsd fed ten epochs a second: an endless live source."""

    expected_count = 5
    finite = False
    ordered = False

    @pytest.fixture
    def make_source(self, shared_gpsd: Gpsd) -> Iterator[Factory]:
        made: list[Source] = []

        def make(realtime: bool = False) -> Source:
            source = GpsdSource(CHANNEL, GpsSettings("gpsd", port=shared_gpsd.port))
            made.append(source)
            return source

        yield make
        for source in made:
            source.close()

    def assert_released(self, source: Source) -> None:
        assert isinstance(source, GpsdSource)
        assert source._sock is None


# -- through the configuration and the pipeline -------------------------------------------

def test_a_gps_channel_through_the_configuration_and_the_pipeline(
        tmp_path: Path, receiver: Receiver) -> None:
    """``nmea = ...`` in a channel: its fixes come out of the pipeline as GPS samples,
    with the selection applied like any channel's."""
    config = parse_config(
        f'[[channels]]\nname = "gps0"\nnmea = "{receiver.link}"\nbaudrate = 4800\n'
        '[selection]\nexclude = ["GPS.Heading"]\n', tmp_path)
    assert config.channels[0].kind == "nmea"
    assert config.channels[0].gps == GpsSettings("nmea", device=str(receiver.link),
                                                 baudrate=4800)
    pipeline = Pipeline.from_config(config)
    source = pipeline.channels[0].source
    assert isinstance(source, NmeaSource) and source.channel == "gps0"
    got: list[Sample] = []
    stop = threading.Event()
    watchdog = threading.Timer(10, stop.set)
    watchdog.start()

    def sink(samples: list[Sample]) -> None:
        got.extend(samples)
        if len({s.timestamp for s in got}) >= 2:
            stop.set()

    runner = threading.Thread(target=pipeline.run, args=(sink, stop), daemon=True)
    runner.start()
    try:
        deadline = time.monotonic() + 10
        while source.opens < 1:  # pyserial empties the port's input when it opens it
            assert time.monotonic() < deadline
            time.sleep(0.01)
        receiver.write_all(epoch(0) + epoch(1, north(1)))
        runner.join(12)
    finally:
        stop.set()
        watchdog.cancel()
        runner.join(5)
    assert not runner.is_alive()
    first = [s for s in got if s.timestamp == got[0].timestamp]
    assert [(s.channel, s.message, s.signal, s.value, s.unit) for s in first] == [
        ("gps0", "GPS", "Latitude", HOME[0], "deg"),
        ("gps0", "GPS", "Longitude", HOME[1], "deg"),
        ("gps0", "GPS", "Speed", 10.0 * KNOTS_TO_KMH, "km/h"),
        ("gps0", "GPS", "Altitude", 512.5, "m"),
    ]


@pytest.mark.parametrize(("text", "problems"), [
    ('gpsd = true', []),
    ('gpsd = "localhost:3000"', []),
    ('gpsd = 5', ['channels[0].gpsd: expected true or "host:port", got an integer']),
    ('gpsd = "h:70000"',
     ["channels[0].gpsd: the port must be from 1 to 65_535, got '70000' in 'h:70000'"]),
    ('gpsd = "/run/gpsd.sock"',
     ["channels[0].gpsd: expected host or host:port, got the path '/run/gpsd.sock' (gpsd "
      "serves its reports over TCP; its Unix socket only takes commands)"]),
    ('gpsd = true\nbaudrate = 9600',
     ["channels[0].baudrate: only valid with nmea (or obd = true)"]),
    ('nmea = ""', ["channels[0].nmea: expected a serial device or a pyserial URL, got an "
                   "empty string"]),
    ('nmea = "/dev/ttyACM0"\nbaudrate = 10',
     ["channels[0].baudrate: must be from 300 to 4_000_000, got 10"]),
    ('nmea = "/dev/ttyACM0"\nmode = "raw"',
     ["channels[0].mode: a GPS channel is always decoded: its positions go through the "
      "privacy zones, never stored raw"]),
    ('gpsd = true\nnmea = "/dev/ttyACM0"',
     ["channels[0]: exactly one of interface, log, simulate = true, obd = true, gpsd, nmea "
      "is required (found: gpsd, nmea)"]),
    ('gpsd = true\nsimulate = true',
     ["channels[0]: exactly one of interface, log, simulate = true, obd = true, gpsd, nmea "
      "is required (found: simulate, gpsd)"]),
    ('obd = true\nport = "/dev/ttyUSB0"\nnmea = "/dev/ttyACM0"',
     ["channels[0].nmea: not valid with obd = true"]),
])
def test_gps_channel_keys_are_checked_by_name(tmp_path: Path, text: str,
                                              problems: list[str]) -> None:
    from agent.config import ConfigError

    full = f'[[channels]]\nname = "gps0"\n{text}\n'
    if problems:
        with pytest.raises(ConfigError) as info:
            parse_config(full, tmp_path)
        assert info.value.problems == problems
    else:
        assert parse_config(full, tmp_path).channels[0].kind == "gpsd"


def test_the_decoder_counts_frames_of_another_length_and_keeps_the_selected_values() -> None:
    decoder = GpsDecoder("gps0", lambda m, s: s != "Speed")
    frame = Frame(1.0, "gps0", FIX_ID, False, False, fix_data(48.0, 11.0, 50.0, None, 10.0))
    decoded = decoder.decode(frame)
    assert decoded is not None
    assert [(s.name, s.unit) for s in decoded.signals] == [
        ("Latitude", "deg"), ("Longitude", "deg"), ("Heading", "deg")]
    assert decoded.values == (48.0, 11.0, 10.0)
    assert decoder.decode(frame._replace(data=b"\x00" * 8)) is None
    assert decoder.stats.truncated == {FIX_ID: 1} and decoder.stats.decoded == 1


@pytest.mark.parametrize(("text", "expected"), [
    ("localhost", ("localhost", 2947)),
    ("127.0.0.1:2948", ("127.0.0.1", 2948)),
    ("[::1]:3000", ("::1", 3000)),
    ("[::1]", ("::1", 2947)),
    ("fe80::1", ("fe80::1", 2947)),
    ("host:", "the port after ':' is missing"),
    ("[::1]:", "the port after ':' is missing"),
    ("h:0", "the port must be from 1 to 65_535, got '0'"),
    ("h:x", "the port must be from 1 to 65_535, got 'x'"),
    ("[::1]x", "expected \\[IPv6 address\\]:port"),
    (":80", "expected host or host:port"),
    ("", "got an empty string"),
])
def test_gpsd_addresses(text: str, expected: tuple[str, int] | str) -> None:
    from agent.sources.gps_settings import parse_gpsd_address

    if isinstance(expected, tuple):
        assert parse_gpsd_address(text) == expected
    else:
        with pytest.raises(ValueError, match=expected):
            parse_gpsd_address(text)
