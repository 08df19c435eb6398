"""The pipeline's tap: bounded per-subscription queues of references, items made later.

Fed with what the real decoders make of real frames (the sample drive through
the demo DBC; mode 01 replies through the OBD decoder) and by a real Pipeline.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

import pytest

from agent.config import SignalRule, parse_config
from agent.control.tap import Tap
from agent.decode.dbc_files import load_dbc
from agent.decode.decoder import ChannelDecoder
from agent.decode.obd import ObdDecoder
from agent.errors import ControlError
from agent.frames import Decoded, Event, Frame, Sample, SignalInfo
from agent.pipeline import Pipeline
from agent.policy.rules import RuleSet
from agent.sources.replay import ReplaySource

ROOT = Path(__file__).resolve().parents[1]
DBC = ROOT / "dbc" / "demo_vehicle.dbc"
SAMPLE = ROOT / "tests" / "data" / "sample_drive.log"
SAMPLE_SIGNALS = 477_840  # decoded values in the sample drive, every signal selected
RUN_TIMEOUT = 120.0


@pytest.fixture(scope="module")
def frames() -> list[Frame]:
    """The first 5,000 frames of the sample drive, channel ``can0``."""
    out: list[Frame] = []
    with ReplaySource("t", SAMPLE, speed=0, channel="can0") as source:
        for frame in source.frames():
            out.append(frame)
            if len(out) == 5000:
                break
    return out


def test_active_while_anybody_is_subscribed() -> None:
    tap = Tap()
    assert not tap.active and not tap.sampling
    frames_sub = tap.subscribe("frames")
    assert tap.active and not tap.sampling
    samples_sub = tap.subscribe("samples", signals="Engine*")
    assert tap.active and tap.sampling
    tap.unsubscribe(samples_sub)
    assert tap.active and not tap.sampling
    tap.unsubscribe(frames_sub)
    tap.unsubscribe(frames_sub)  # again: nothing happens
    assert not tap.active
    with pytest.raises(ControlError, match="topic: 'x' is not one of"):
        tap.subscribe("x")
    assert not tap.active


def test_frames_are_queued_by_reference_and_bounded(frames: list[Frame]) -> None:
    tap = Tap(depth=1000)
    mine = tap.subscribe("frames", channel="can0")
    other = tap.subscribe("frames", channel="can1")
    chunks = [frames[i:i + 512] for i in range(0, 2048, 512)]
    for chunk in chunks:
        tap.frames(chunk)
    assert mine.queue[0] is chunks[0]  # no copy on the pipeline's thread
    assert (mine.appended, mine.dropped) == (1024, 1024)  # two chunks fit, two did not
    assert (other.appended, other.dropped, len(other.queue)) == (0, 0, 0)
    entries = mine.take(600)  # whole chunks, as many as the budget holds: one
    assert mine.taken == 512 and len(mine.queue) == 1
    entries += mine.take(100)  # at least one, even over the budget
    assert mine.taken == 1024 and not mine.queue
    items = mine.items(entries)
    assert len(items) == 1024
    f = frames[0]
    assert items[0] == {"t": f.timestamp, "ch": "can0", "id": f.arbitration_id,
                        "ext": f.is_extended, "fd": f.is_fd, "data": f.data.hex()}
    tap.frames(chunks[2])  # room again
    assert (mine.appended, mine.dropped) == (1536, 1024)


def decode_all(decoder: Any, rules: RuleSet, frames: list[Frame]
               ) -> list[tuple[Decoded, list[Sample]]]:
    out = []
    for frame in frames:
        decoded = decoder.decode(frame)
        if decoded is not None:
            out.append((decoded, rules.filter_decoded(decoded)))
    return out


def test_samples_carry_what_the_policy_keeps(frames: list[Frame]) -> None:
    """Every selected value, kept or not, with its unit and choice label; the glob and
    the channel filter on the tap's side."""
    decoder = ChannelDecoder("can0", [load_dbc(DBC)])
    rules = RuleSet([SignalRule(match="*", on_change=True)])
    records = decode_all(decoder, rules, frames)
    tap = Tap()
    brake = tap.subscribe("samples", signals="Brake.*")
    pedal = tap.subscribe("samples", channel="can0", signals="BrakePedalSwitch")
    elsewhere = tap.subscribe("samples", channel="can1")
    for decoded, kept in records:
        tap.decoded([(decoded, kept)], len(decoded.values))
    assert not elsewhere.queue and elsewhere.appended == 0
    items = brake.items(brake.take(10**6))
    expected = [(d.timestamp, info.name, d.values[i],
                 d.labels[i] if d.labels is not None else None,
                 any(s.signal == info.name for s in kept))
                for d, kept in records if d.message == "Brake"
                for i, info in enumerate(d.signals)]
    assert [(i["t"], i["sig"], i["v"], i["label"], i["kept"]) for i in items] == expected
    assert any(i["kept"] for i in items) and not all(i["kept"] for i in items)
    assert brake.appended == brake.taken == len(items)
    assert {i["label"] for i in items if i["sig"] == "BrakePedalSwitch"} <= {"Released",
                                                                             "Pressed"}
    first = next(i for i in items if i["sig"] == "BrakePressure")
    assert (first["ch"], first["msg"], first["unit"]) == ("can0", "Brake", "bar")
    pedal_items = pedal.items(pedal.take(10**6))
    assert [i for i in items if i["sig"] == "BrakePedalSwitch"] == pedal_items


def test_samples_of_obd_replies() -> None:
    """The OBD decoder's records (no labels, no flags) go through the same way."""
    decoder = ObdDecoder("obd")
    replies = [Frame(1.0, "obd", 0x7E8, False, False, bytes.fromhex("410C1AF80D32")),
               Frame(2.0, "obd", 0x7E8, False, False, bytes.fromhex("410C1AF80D33")),
               Frame(3.0, "obd", 0x7E9, False, False, bytes.fromhex("410D10"))]
    rules = RuleSet([SignalRule(match="OBD.ENGINE_RPM", on_change=True)])
    tap = Tap()
    sub = tap.subscribe("samples", channel="obd")
    for decoded, kept in decode_all(decoder, rules, replies):
        tap.decoded([(decoded, kept)], len(decoded.values))
    items = sub.items(sub.take(100))
    assert [(i["t"], i["msg"], i["sig"], i["v"], i["unit"], i["label"], i["kept"])
            for i in items] == [
        (1.0, "OBD", "ENGINE_RPM", 1726.0, "rpm", None, True),
        (1.0, "OBD", "VEHICLE_SPEED", 50, "km/h", None, True),
        (2.0, "OBD", "ENGINE_RPM", 1726.0, "rpm", None, False),  # unchanged: not kept
        (2.0, "OBD", "VEHICLE_SPEED", 51, "km/h", None, True),
        (3.0, "OBD_7E9", "VEHICLE_SPEED", 16, "km/h", None, True)]


def test_a_value_that_is_not_a_number_is_null() -> None:
    info = SignalInfo("Fuel", "Flow", "L/h", None, None, None, 4)
    tap = Tap()
    sub = tap.subscribe("samples")
    for value in (math.nan, math.inf, 1.5):
        decoded = Decoded(1.0, "can0", "Fuel", (info,), (value,), None, None)
        tap.decoded([(decoded, [])], 1)
    assert [i["v"] for i in sub.items(sub.take(10))] == [None, None, 1.5]


def test_samples_beyond_the_depth_are_dropped_and_counted(frames: list[Frame]) -> None:
    decoder = ChannelDecoder("can0", [load_dbc(DBC)])
    records = decode_all(decoder, RuleSet(), frames)
    tap = Tap(depth=100)
    every = tap.subscribe("samples")
    some = tap.subscribe("samples", signals="Engine*")  # EngineSpeed, EngineLoad, ...
    for decoded, kept in records:
        tap.decoded([(decoded, kept)], len(decoded.values))
    total = sum(len(d.values) for d, _ in records)
    assert every.appended + every.dropped == total
    assert 100 <= every.appended < 100 + 8  # one record may cross the depth
    matching = sum(1 for d, _ in records for s in d.signals if s.name.startswith("Engine"))
    assert some.appended + some.dropped == matching  # counted after the glob


def test_events_from_two_threads_filtered_by_channel() -> None:
    tap = Tap(depth=10**6)
    every = tap.subscribe("events")
    obd = tap.subscribe("events", channel="obd")
    small = Tap(depth=10)
    bounded = small.subscribe("events")

    def feed(channel: str) -> None:
        for n in range(1000):
            batch = [Event(float(n), channel, "dtc.set", f"P{n:04d}", 1)]
            tap.events(batch)
            small.events(batch)

    threads = [threading.Thread(target=feed, args=(c,)) for c in ("obd", "daemon")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert every.appended == 2000 and obd.appended == 1000
    items = obd.items(obd.take(10**6))
    assert {i["ch"] for i in items} == {"obd"}
    assert items[0] == {"t": 0.0, "ch": "obd", "kind": "dtc.set", "detail": "P0000", "prio": 1}
    assert (bounded.appended, bounded.dropped) == (10, 1990)


CONFIG = """
[[channels]]
name = "can0"
log = "{log}"
dbc = "{dbc}"
speed = 0

[selection]
include_volatile = true
{rules}
"""


def run(pipeline: Pipeline) -> list[Sample]:
    kept: list[Sample] = []
    thread = threading.Thread(target=pipeline.run, args=(kept.extend, threading.Event()),
                              daemon=True)
    thread.start()
    thread.join(RUN_TIMEOUT)
    assert not thread.is_alive(), "the pipeline did not finish"
    return kept


@pytest.mark.parametrize("rules", ["", '[[signals]]\nmatch = "*"\non_change = true'])
def test_the_pipeline_counts_samples_and_feeds_its_tap(rules: str) -> None:
    text = CONFIG.format(log=SAMPLE, dbc=DBC, rules=rules)
    bare = Pipeline.from_config(parse_config(text, base_dir=ROOT))
    alone = run(bare)
    assert bare.samples_kept == len(alone)
    if not rules:
        assert bare.samples_decoded == bare.samples_kept == SAMPLE_SIGNALS
    else:
        assert bare.samples_decoded > bare.samples_kept

    idle = Pipeline.from_config(parse_config(text, base_dir=ROOT))
    idle.tap = Tap()  # nobody subscribed
    assert run(idle) == alone

    tapped = Pipeline.from_config(parse_config(text, base_dir=ROOT))
    tapped.tap = tap = Tap(depth=10**7)
    frames_sub, samples_sub = tap.subscribe("frames"), tap.subscribe("samples")
    assert run(tapped) == alone  # what the tap sees changes nothing
    assert frames_sub.appended == tapped.frames_in == 84_240
    assert samples_sub.appended == tapped.samples_decoded == bare.samples_decoded
    kept = sum(len(some) for chunk in samples_sub.take(10**7) for _, some in chunk)
    assert kept == len(alone)


def test_full_subscriptions_are_counted_without_holding_records() -> None:
    """Once no samples subscription has room, the pipeline keeps nothing for the tap and
    only counts (Tap.overflow): what each would have received, sent or dropped, is the
    same as with room to spare, glob included."""
    text = CONFIG.format(log=SAMPLE, dbc=DBC, rules="")
    roomy = Pipeline.from_config(parse_config(text, base_dir=ROOT))
    roomy.tap = Tap(depth=10**7)
    engine_all = roomy.tap.subscribe("samples", signals="Engine*")
    alone = run(roomy)

    full = Pipeline.from_config(parse_config(text, base_dir=ROOT))
    full.tap = tap = Tap(depth=100)
    every, engine = tap.subscribe("samples"), tap.subscribe("samples", signals="Engine*")
    assert run(full) == alone
    assert not tap.room("can0")
    # at most one chunk (512 frames, a few signals each) over the depth
    assert every.appended < 100 + 512 * 16 and engine.appended < 100 + 512 * 16
    assert every.appended + every.dropped == full.samples_decoded == SAMPLE_SIGNALS
    assert engine.appended + engine.dropped == engine_all.appended > 0
