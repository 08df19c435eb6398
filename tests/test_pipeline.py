"""End to end: a TOML config -> Pipeline.from_config -> run(sink, stop).

The shipped sample drive (84,240 frames of the demo vehicle) is replayed at
speed 0 and what the pipeline keeps is compared with an independent reference:
the log parsed here with a regular expression, every frame decoded with
cantools' ``decode_message``, and selection and on-change applied in plain
Python. Every wait is bounded: the pipeline runs in a thread joined with a
timeout, and stop events are set by the test.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import can
import cantools
import pytest

import agent.pipeline
from agent.config import ChannelConfig, parse_config
from agent.decode.decoder import ChannelDecoder
from agent.frames import Frame, Sample
from agent.pipeline import ChannelRuntime, Pipeline
from agent.policy.rules import RuleSet
from agent.sources import Source

ROOT = Path(__file__).resolve().parents[1]
DBC = ROOT / "dbc" / "demo_vehicle.dbc"
SAMPLE = ROOT / "tests" / "data" / "sample_drive.log"
SAMPLE_FRAMES = 84_240
SAMPLE_SIGNALS = 477_840  # decoded values in the sample drive, every signal selected
RUN_TIMEOUT = 60.0  # seconds: a run of the whole sample drive takes a few
STOP_BOUND = 2.0  # seconds: a stop request must end a run within this
LINE = re.compile(r"\((\d+\.\d{6})\) can0 ([0-9A-F]{3}|[0-9A-F]{8})#((?:[0-9A-F]{2})*)")

# (timestamp, message name, {signal: value}) per frame, as cantools decodes it
Reference = list[tuple[float, str, dict[str, Any]]]


@pytest.fixture(scope="module")
def db() -> Any:
    return cantools.database.load_file(str(DBC))


def reference_decode(db: Any, lines: list[str]) -> Reference:
    """Each candump line parsed by a regex and decoded by cantools (raw values, no labels)."""
    out: Reference = []
    for line in lines:
        match = LINE.fullmatch(line.rstrip("\n"))
        assert match, line
        ts, ident, data = match.groups()
        frame_id = int(ident, 16)
        message = db.get_message_by_frame_id(frame_id)
        values = db.decode_message(frame_id, bytes.fromhex(data), decode_choices=False)
        out.append((float(ts), message.name, values))
    return out


@pytest.fixture(scope="module")
def sample_reference(db: Any) -> Reference:
    lines = SAMPLE.read_text(encoding="ascii").splitlines()
    assert len(lines) == SAMPLE_FRAMES
    return reference_decode(db, lines)


def config_text(log: Path, *, exclude: list[str] | None = None, on_change: bool = False,
                max_period: float | None = None, speed: float = 0,
                include_volatile: bool = False) -> str:
    text = f"""
[[channels]]
name = "veh"
log = "{log}"
dbc = "{DBC}"
speed = {speed}
"""
    if exclude is not None or include_volatile:
        text += "\n[selection]\n"
    if exclude is not None:
        text += f"exclude = {exclude!r}\n".replace("'", '"')
    if include_volatile:
        text += "include_volatile = true\n"
    if on_change:
        text += '\n[[signals]]\nmatch = "*"\non_change = true\n'
        if max_period is not None:
            text += f"max_period = {max_period}\n"
    return text


def build(text: str) -> Pipeline:
    return Pipeline.from_config(parse_config(text, base_dir=ROOT))


def run(pipeline: Pipeline, sink: Callable[[list[Sample]], None],
        stop: threading.Event | None = None, timeout: float = RUN_TIMEOUT) -> None:
    """``pipeline.run`` in a thread, joined with a timeout; its exception re-raised here."""
    stop = stop if stop is not None else threading.Event()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            pipeline.run(sink, stop)
        except BaseException as exc:  # re-raised in the test's thread
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        stop.set()
        thread.join(5)
        pytest.fail(f"the pipeline did not finish within {timeout} s")
    if errors:
        raise errors[0]


def selected(patterns: list[str], message: str, signal: str) -> bool:
    """The selection's glob rule, written again: a dotted glob matches Message.Signal."""
    return not any(
        fnmatchcase(f"{message}.{signal}" if "." in p else signal, p) for p in patterns
    )


# -- (a) no rules: every value of every frame, counters and checksums aside by default ------


def is_volatile(signal: str) -> bool:
    """The demo DBC's counters and checksums, named again here."""
    return signal.endswith(("_Counter", "_Checksum"))


@pytest.mark.parametrize(
    ("include_volatile", "expected_kept"),
    [
        pytest.param(False, 314_640, id="default"),  # 163,200 counter and checksum values
        pytest.param(True, SAMPLE_SIGNALS, id="include_volatile"),
    ],
)
def test_sample_drive_without_rules_keeps_every_decoded_value(
    sample_reference: Reference, include_volatile: bool, expected_kept: int,
) -> None:
    """Without rules every value is kept; counters and checksums protect the bus and are
    not vehicle data, so they are left out unless the selection asks for them."""
    expected = Counter(
        (name, signal) for _, name, values in sample_reference for signal in values
        if include_volatile or not is_volatile(signal)
    )
    assert sum(expected.values()) == expected_kept

    kept: Counter[tuple[str, str]] = Counter()
    batches: list[int] = []

    def sink(samples: list[Sample]) -> None:  # counts only: 477,840 Samples would be slow
        batches.append(len(samples))
        kept.update((s.message, s.signal) for s in samples)

    pipeline = build(config_text(SAMPLE, include_volatile=include_volatile))
    run(pipeline, sink)

    (channel,) = pipeline.channels
    stats = channel.decoder.stats
    assert pipeline.frames_in == SAMPLE_FRAMES
    assert channel.source.stats.frames == SAMPLE_FRAMES
    assert dict(channel.source.stats.skipped) == {}
    assert stats.decoded == SAMPLE_FRAMES
    assert stats.unknown == Counter()
    assert stats.truncated == stats.excess == stats.bad_mux == Counter()
    assert stats.unchanged == 0  # no on-change rule: no change filter
    assert sum(batches) == expected_kept
    assert pipeline.rules.stats.kept == expected_kept
    assert kept == expected
    assert channel.dropped == 0 and channel.error is None


# -- (b) on change: the change-filter fast path against a plain reference -----------------


def on_change_reference(reference: Reference, exclude: list[str], max_period: float | None
                        ) -> dict[tuple[str, str], list[tuple[float, Any]]]:
    """Keep a value when it differs from the last kept value of its (message, signal),
    or when ``max_period`` has passed since that one (a heartbeat)."""
    last: dict[tuple[str, str], tuple[float, Any]] = {}
    kept: dict[tuple[str, str], list[tuple[float, Any]]] = defaultdict(list)
    for ts, name, values in reference:
        for signal, value in values.items():
            if not selected(exclude, name, signal):
                continue
            key = (name, signal)
            if key in last and last[key][1] == value and (
                    max_period is None or ts - last[key][0] < max_period):
                continue
            last[key] = (ts, value)
            kept[key].append((ts, value))
    return dict(kept)


VOLATILE = ["*Counter*", "*Checksum*"]


@pytest.mark.parametrize(
    ("exclude", "max_period", "expected_kept"),
    [
        pytest.param([*VOLATILE, "BodyStatus.BodyStatus_Page"], None, 121_770,
                     id="without-multiplexer"),
        # the multiplexer BodyStatus_Page (0, 1, 2, 0, ...) changes in every frame
        pytest.param(VOLATILE, None, 122_970, id="with-multiplexer"),
        # regression: the change filter delayed heartbeats (it is off with them now)
        pytest.param(VOLATILE, 30.0, 123_175, id="with-heartbeat"),
    ],
)
def test_on_change_keeps_exactly_what_a_plain_reference_keeps(
    sample_reference: Reference, exclude: list[str], max_period: float | None,
    expected_kept: int,
) -> None:
    expected = on_change_reference(sample_reference, exclude, max_period)
    assert sum(len(v) for v in expected.values()) == expected_kept

    kept: dict[tuple[str, str], list[tuple[float, Any]]] = defaultdict(list)

    def sink(samples: list[Sample]) -> None:
        for s in samples:
            kept[(s.message, s.signal)].append((s.timestamp, s.value))

    pipeline = build(config_text(SAMPLE, exclude=exclude, on_change=True,
                                 max_period=max_period))
    run(pipeline, sink)

    (channel,) = pipeline.channels
    stats = channel.decoder.stats
    assert pipeline.frames_in == SAMPLE_FRAMES
    assert stats.decoded + stats.unchanged == SAMPLE_FRAMES
    assert stats.unknown == Counter()
    assert set(kept) == set(expected)
    for key, values in expected.items():
        assert len(kept[key]) == len(values), key
        assert kept[key] == values, key
    assert pipeline.rules.stats.kept == expected_kept
    # identical values, down to int versus float
    for key, values in expected.items():
        assert [type(v) for _, v in kept[key]] == [type(v) for _, v in values], key
    # the change filter skipped frames before decoding (not with a heartbeat)
    assert (stats.unchanged > 0) == (max_period is None)


# -- (c) a damaged log still plays to its end ---------------------------------------------


def test_unknown_ids_and_bad_lines_do_not_stop_a_replay(db: Any, tmp_path: Path) -> None:
    good = SAMPLE.read_text(encoding="ascii").splitlines()[:3000]
    lines: list[str] = []
    for i, line in enumerate(good):
        lines.append(line)
        ts = line.split()[0]
        if i % 500 == 499:  # six 11-bit frames nobody defined
            lines.append(f"{ts} can0 7AB#0102")
        if i in (100, 1500, 2500):  # three 29-bit ones
            lines.append(f"{ts} can0 1ABCDE01#AABBCCDD")
        if i == 1000:
            lines.append("this is not a candump line")
        if i == 2000:
            lines.append(f"{ts} can0 1G0#0011")
    last_ts = lines[-1].split()[0]
    lines.append(f"{last_ts} can0 7AB#FF")  # the very last line: one more unknown frame
    log = tmp_path / "damaged.log"
    log.write_text("\n".join(lines) + "\n", encoding="ascii")
    expected_samples = sum(1 for _, _, values in reference_decode(db, good)
                           for signal in values if not is_volatile(signal))

    kept: list[Sample] = []
    pipeline = build(config_text(log))
    run(pipeline, kept.extend)

    (channel,) = pipeline.channels
    stats = channel.decoder.stats
    assert pipeline.frames_in == 3000 + 6 + 3 + 1 == 3010
    assert channel.source.stats.frames == 3010
    assert dict(channel.source.stats.skipped) == {"bad_format": 1, "bad_hex": 1}
    assert stats.decoded == 3000
    assert stats.unknown == Counter({0x7AB: 7, 0x1ABCDE01: 3})
    assert len(kept) == expected_samples
    assert kept[-1].timestamp == float(good[-1].split()[0][1:-1])
    assert channel.error is None and channel.dropped == 0


def test_a_log_that_gives_no_frame_is_a_warning_when_its_channel_ends(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    log = tmp_path / "noise.asc"
    log.write_bytes(bytes(range(256)) * 64)  # random-looking bytes named .asc
    pipeline = build(config_text(log))
    with caplog.at_level("WARNING", logger="agent.pipeline"):
        run(pipeline, lambda samples: None)
    assert pipeline.frames_in == 0
    warnings = [r.getMessage() for r in caplog.records if r.name == "agent.pipeline"]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"channel veh: {log}") and "no CAN frame" in warnings[0]


# -- stopping -----------------------------------------------------------------------------


def test_stop_ends_a_real_time_replay_promptly() -> None:
    pipeline = build(config_text(SAMPLE, speed=1))  # four minutes of driving
    stop = threading.Event()
    first = threading.Event()

    def sink(samples: list[Sample]) -> None:
        first.set()

    thread = threading.Thread(target=pipeline.run, args=(sink, stop), daemon=True)
    thread.start()
    try:
        assert first.wait(10), "no samples within 10 s of a real-time replay"
        stopped = time.monotonic()
        stop.set()
        thread.join(STOP_BOUND)
        assert not thread.is_alive(), f"run() still going {STOP_BOUND} s after stop"
        assert time.monotonic() - stopped < STOP_BOUND
    finally:
        stop.set()
        thread.join(10)
    assert 0 < pipeline.frames_in < SAMPLE_FRAMES


def test_stop_while_the_queue_is_full_and_the_sink_slow_still_returns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Regression: the reader could not queue its end marker (queue full at stop) and
    run() then waited for it for ever."""
    monkeypatch.setattr(agent.pipeline, "QUEUE_CHUNKS", 2)
    pipeline = build(config_text(SAMPLE))
    stop = threading.Event()
    calls: list[int] = []

    def reader_alive() -> bool:
        return any(t.name == "source-veh" and t.is_alive() for t in threading.enumerate())

    def sink(samples: list[Sample]) -> None:
        calls.append(len(samples))
        if len(calls) == 1:  # hold the consumer: the reader fills the queue, then stop
            deadline = time.monotonic() + 10
            while not pipeline._queue.full() and time.monotonic() < deadline:
                time.sleep(0.01)
            assert pipeline._queue.full()
            stop.set()
            while reader_alive() and time.monotonic() < deadline:
                time.sleep(0.01)  # the reader gives up on its end marker and ends

    run(pipeline, sink, stop, timeout=15)
    assert 0 < pipeline.frames_in < SAMPLE_FRAMES


class _Failing(Source):
    """Two frames, then an error that is not a BavardError; or a read that ignores stop."""

    def __init__(self, name: str, hang: threading.Event | None = None) -> None:
        super().__init__(name)
        self.hang = hang

    def _frames(self, stop: threading.Event) -> Iterator[Frame]:
        yield Frame(1.0, self.name, 0x7AB, False, False, b"")
        yield Frame(2.0, self.name, 0x7AB, False, False, b"")
        if self.hang is not None:
            self.hang.wait(30)  # e.g. a read from a stalled mount
            return
        raise RuntimeError("surprise")


def pipeline_of(*sources: Source) -> Pipeline:
    return Pipeline([ChannelRuntime(ChannelConfig(name=s.name, simulate=True), s,
                                    ChannelDecoder(s.name, [])) for s in sources], RuleSet())


def test_an_unexpected_source_error_is_recorded() -> None:
    """Regression: only BavardError was recorded; anything else ended the channel with
    ``error`` left None (and a bare thread traceback)."""
    pipeline = pipeline_of(_Failing("veh"))
    run(pipeline, lambda samples: None)
    (channel,) = pipeline.channels
    assert channel.error == "RuntimeError: surprise"
    assert pipeline.frames_in == 2


def test_stop_returns_even_when_a_source_ignores_it() -> None:
    """Regression: run() waited for every reader thread to end after stop, for ever when
    one was stuck in a read that does not look at the stop event."""
    release = threading.Event()
    pipeline = pipeline_of(_Failing("veh", hang=release))
    stop = threading.Event()
    timer = threading.Timer(0.5, stop.set)
    timer.start()
    try:
        started = time.monotonic()
        run(pipeline, lambda samples: None, stop, timeout=15)
        # run() joins the readers for JOIN_BUDGET at most, then returns
        assert time.monotonic() - started < 0.5 + agent.pipeline.JOIN_BUDGET + STOP_BOUND
    finally:
        timer.cancel()
        release.set()
    assert pipeline.frames_in == 0  # the reader's chunk never reached the queue


def test_readers_that_ignore_stop_are_joined_within_one_budget_together() -> None:
    """Regression: run() joined each stuck reader for 5 s, one after the other (15 s for
    three), while the service has 5 s from SIGTERM to exit."""
    release = threading.Event()
    pipeline = pipeline_of(*(_Failing(f"veh{i}", hang=release) for i in range(3)))
    stop = threading.Event()
    timer = threading.Timer(0.5, stop.set)
    timer.start()
    try:
        started = time.monotonic()
        run(pipeline, lambda samples: None, stop, timeout=30)
        took = time.monotonic() - started
    finally:
        timer.cancel()
        release.set()
    assert took < 0.5 + agent.pipeline.JOIN_BUDGET + STOP_BOUND, f"{took:.1f} s"
    assert agent.pipeline.JOIN_BUDGET + 1.0 < 5.0  # it fits in the daemon's STOP_BUDGET


def test_dbcs_loaded_already_are_used_not_loaded_again(db: Any) -> None:
    """The daemon hands the DBCs its validation loaded to the pipeline."""
    config = parse_config(config_text(SAMPLE), base_dir=ROOT)
    pipeline = Pipeline.from_config(config, databases={DBC: db})
    try:
        (channel,) = pipeline.channels
        assert channel.databases == [db] and channel.databases[0] is db
    finally:
        pipeline.close()


# -- a live bus: python-can's virtual interface --------------------------------------------


def test_live_bus_frames_reach_the_sink_while_the_bus_is_quiet(db: Any) -> None:
    """Regression: frames that came less than CHUNK_SECONDS after the last hand-on stayed
    in the reader's chunk until the next frame, for ever on a bus gone quiet."""
    channel_name = f"bavard-pipeline-{uuid.uuid4().hex}"
    pipeline = build(f"""
[[channels]]
name = "veh"
interface = "virtual"
channel = "{channel_name}"
dbc = "{DBC}"
""")
    lines = SAMPLE.read_text(encoding="ascii").splitlines()[:200]
    expected = sum(1 for _, _, values in reference_decode(db, lines)
                   for signal in values if not is_volatile(signal))
    stop = threading.Event()
    got: list[Sample] = []
    complete = threading.Event()

    def sink(samples: list[Sample]) -> None:
        got.extend(samples)
        if len(got) >= expected:
            complete.set()

    thread = threading.Thread(target=pipeline.run, args=(sink, stop), daemon=True)
    thread.start()
    try:
        with can.Bus(interface="virtual", channel=channel_name) as sender:
            for line in lines:  # a burst, then silence
                match = LINE.fullmatch(line)
                assert match
                _, ident, data = match.groups()
                sender.send(can.Message(arbitration_id=int(ident, 16),
                                        is_extended_id=len(ident) == 8,
                                        data=bytes.fromhex(data)))
            assert complete.wait(STOP_BOUND), (
                f"{len(got)} of {expected} samples reached the sink while the bus was quiet")
        stop.set()
        thread.join(STOP_BOUND)
        assert not thread.is_alive()
    finally:
        stop.set()
        thread.join(10)
    (channel,) = pipeline.channels
    assert pipeline.frames_in == 200
    assert len(got) == expected
    assert channel.dropped == 0 and channel.error is None
    assert {s.channel for s in got} == {"veh"}
