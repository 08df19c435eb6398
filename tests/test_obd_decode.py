"""OBD replies through the decoder and the pipeline: samples named OBD.<PID>, the
selection and the rules as for DBC signals, events handed on among the frames."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest

from agent.config import ChannelConfig, SignalRule
from agent.decode.obd import ObdDecoder, message_name, obd_metadata
from agent.frames import Event, Frame, Sample
from agent.obd.settings import ObdSettings
from agent.pipeline import ChannelRuntime, Pipeline
from agent.policy.rules import RuleSet
from agent.sources.base import Source


def reply(data: str, ecu: int = 0x7E8, ts: float = 1.0) -> Frame:
    return Frame(ts, "obd", ecu, ecu > 0x7FF, False, bytes.fromhex(data))


def test_a_multi_pid_reply_is_one_record_with_units() -> None:
    decoded = ObdDecoder("obd").decode(reply("410C1AF80D32057B"))
    assert decoded is not None
    assert decoded.message == "OBD"
    assert [(s.name, s.unit) for s in decoded.signals] == [
        ("ENGINE_RPM", "rpm"), ("VEHICLE_SPEED", "km/h"), ("COOLANT_TEMPERATURE", "degC")]
    assert decoded.values == (1726.0, 50, 83) and decoded.flags is None
    assert [s[3:5] for s in decoded.samples()] == [
        ("ENGINE_RPM", 1726.0), ("VEHICLE_SPEED", 50), ("COOLANT_TEMPERATURE", 83)]


def test_other_ecus_the_selection_and_the_monitor_status() -> None:
    decoder = ObdDecoder("obd", lambda m, s: s != "VEHICLE_SPEED")
    decoded = decoder.decode(reply("410D32010007E500", ecu=0x7E9))
    assert decoded is not None and decoded.message == "OBD_7E9"
    assert dict(zip((s.name for s in decoded.signals), decoded.values, strict=True)) == {
        "MIL": 0, "DTC_COUNT": 0}
    assert decoder.decode(reply("410D32")) is None  # nothing selected
    assert message_name(0x18DAF110) == "OBD" and message_name(0x18DAF118) == "OBD_18DAF118"


def test_bad_replies_are_counted_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    decoder = ObdDecoder("obd")
    assert decoder.decode(reply("410C1A")) is None  # truncated
    assert decoder.decode(reply("410C1A")) is None
    assert decoder.decode(reply("7F0112")) is None  # not a mode 01 reply
    assert decoder.stats.truncated[0x7E8] == 2 and decoder.stats.unknown[0x7E8] == 1
    assert caplog.text.count("sent a reply that makes no sense") == 1
    assert "41 0c 1a" in caplog.text


def test_metadata_for_the_batches() -> None:
    meta = obd_metadata("obd")
    assert meta[("obd", "OBD", "ENGINE_RPM")].unit == "rpm"
    assert meta[("obd", "OBD", "COOLANT_TEMPERATURE")].minimum == -40
    assert meta[("obd", "OBD_7E9", "VEHICLE_SPEED")].unit == "km/h"  # the gearbox's too


class Scripted(Source):
    """Frames and events in a fixed order, as an OBD source would give them."""

    polled = True

    def __init__(self, items: list[Frame | Event]) -> None:
        super().__init__("obd")
        self.items = items

    def _frames(self, stop: threading.Event) -> Iterator[Frame]:
        for item in self.items:
            if isinstance(item, Event):
                assert self.on_event is not None
                self.on_event(item)
            else:
                yield item


def test_the_pipeline_hands_events_on_in_order_among_the_samples() -> None:
    items: list[Frame | Event] = [
        reply("410C1AF8", ts=1.0), Event(1.5, "obd", "dtc.set", "P0143 stored", 3),
        reply("410C1B00", ts=2.0), Event(2.5, "obd", "dtc.cleared", "P0143 stored", 3)]
    cfg = ChannelConfig(name="obd", obd=ObdSettings(port="/dev/null"))
    pipeline = Pipeline([ChannelRuntime(cfg, Scripted(items), ObdDecoder("obd"))],
                        RuleSet([SignalRule(match="*", on_change=True)]))
    got: list[object] = []

    def samples(batch: list[Sample]) -> None:
        got.extend(batch)

    def events(batch: list[Event]) -> None:
        got.extend(batch)

    pipeline.run(samples, threading.Event(), event_sink=events)
    assert [(type(x).__name__, x.timestamp) for x in got] == [  # type: ignore[attr-defined]
        ("Sample", 1.0), ("Event", 1.5), ("Sample", 2.0), ("Event", 2.5)]
    assert pipeline.events_in == 2 and pipeline.events_dropped == 0


def test_events_without_a_sink_are_counted() -> None:
    cfg = ChannelConfig(name="obd", obd=ObdSettings(port="/dev/null"))
    source = Scripted([Event(1.0, "obd", "dtc.set", "P0143", 3)])
    pipeline = Pipeline([ChannelRuntime(cfg, source, ObdDecoder("obd"))], RuleSet())
    pipeline.run(lambda batch: None, threading.Event())
    assert pipeline.events_dropped == 1
