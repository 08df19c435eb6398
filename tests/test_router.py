"""The router between the pipeline and the destinations' buffers (agent.privacy.router),
and the configuration of purposes and destinations (agent.config, agent.privacy)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import pytest

from agent.config import parse_config
from agent.errors import ConfigError
from agent.frames import Event, Frame, Sample
from agent.privacy.consent import ConsentBook
from agent.privacy.destinations import destinations_of
from agent.privacy.purposes import BUILTIN, purposes_of
from agent.privacy.router import Outlet, Router, make_gate
from agent.store.buffer import Store

CHANNEL = '[[channels]]\nname = "v"\nsimulate = true\n'


class Buffer:
    """What a destination's store is handed (the real Store is in test_owner_e2e)."""

    def __init__(self) -> None:
        self.samples: list[Sample] = []
        self.events: list[Event] = []
        self.frames: list[Frame] = []

    def put_samples(self, samples: Sequence[Sample], block: bool = True) -> bool:
        self.samples.extend(samples)
        return True

    def put_events(self, events: Sequence[Event], block: bool = True) -> bool:
        self.events.extend(events)
        return True

    def put_frames(self, frames: Sequence[Frame], block: bool = True) -> bool:
        self.frames.extend(frames)
        return True


def sample(message: str, signal: str, ts: float = 1.0, value: float = 1.0) -> Sample:
    return Sample(ts, "v", message, signal, value)


@pytest.fixture
def consent(tmp_path: Path) -> ConsentBook:
    return ConsentBook(tmp_path)


def router(consent: ConsentBook, *purposes: str, rules: Sequence[object] = (),
           geohash: int = 0) -> tuple[Router, list[Buffer]]:
    buffers = [Buffer() for _ in purposes]
    outlets = []
    for name, buffer in zip(purposes, buffers, strict=True):
        purpose = BUILTIN[name]
        if geohash and name == "insurance":
            from dataclasses import replace

            purpose = replace(purpose, geohash=geohash)
        outlets.append(Outlet(name, purpose, buffer, make_gate(purpose, random.Random(1))))
    return Router(outlets, consent, rules), buffers  # type: ignore[arg-type]


def test_nothing_is_handed_on_without_consent_and_it_is_counted(consent: ConsentBook) -> None:
    r, (garage,) = router(consent, "maintenance")
    r.put_samples([sample("Engine", "Rpm"), sample("Engine", "Load")])
    r.put_events([Event(1.0, "obd", "dtc.set", "P0500", 3)])
    assert garage.samples == [] and garage.events == []
    (status,) = r.status()
    assert status["withheld"] == {"samples": 2, "events": 1, "frames": 0, "positions": 0}
    consent.grant("maintenance", None, 0)
    r.put_samples([sample("Engine", "Rpm")])
    assert len(garage.samples) == 1


def test_each_outlet_gets_what_its_purpose_may(consent: ConsentBook) -> None:
    for name in ("maintenance", "insurance", "fleet"):
        consent.grant(name, None, 0)
    r, (garage, insurer, fleet) = router(consent, "maintenance", "insurance", "fleet")
    r.put_samples([sample("Engine", "Rpm"), sample("Gnss", "Latitude"),
                   sample("Gnss", "Longitude")])
    r.put_events([Event(1.0, "insights", "driving.speeding", "x", 3),
                  Event(1.0, "obd", "dtc.set", "P0500", 3),
                  Event(1.0, "agent", "service.start", "x", 1)])
    r.put_frames([Frame(1.0, "raw", 0x100, False, False, b"\x01")])
    assert [s.signal for s in garage.samples] == ["Rpm"]  # never a position at geohash 0
    assert insurer.samples == []
    assert [s.signal for s in fleet.samples] == ["Rpm"]
    assert [e.kind for e in garage.events] == ["dtc.set"]
    assert [e.kind for e in insurer.events] == ["driving.speeding"]
    assert len(fleet.events) == 3 and len(fleet.frames) == 1 and garage.frames == []


def test_a_signals_rule_with_purposes_overrides_the_purposes_globs(tmp_path: Path,
                                                                   consent: ConsentBook) -> None:
    config = parse_config(CHANNEL + '[[signals]]\nmatch = "Engine.*"\n'
                          'purposes = ["insurance"]\n', tmp_path)
    for name in ("maintenance", "insurance"):
        consent.grant(name, None, 0)
    r, (garage, insurer) = router(consent, "maintenance", "insurance", rules=config.rules)
    r.put_samples([sample("Engine", "Rpm"), sample("Brake", "Pressure")])
    assert [s.signal for s in garage.samples] == ["Pressure"]
    assert [s.signal for s in insurer.samples] == ["Rpm"]


def test_positions_wait_for_the_end_of_the_trip_and_come_coarse(consent: ConsentBook) -> None:
    consent.grant("insurance", None, 0)
    r, (insurer,) = router(consent, "insurance", geohash=5)
    track = [(45.70 + i * 0.002, 4.80) for i in range(60)]  # north, about 220 m a step
    r.put_events([Event(0.0, "insights", "trip.start", "trip started", 3)])
    for i, (lat, lon) in enumerate(track):
        r.put_samples([sample("Gnss", "Latitude", i, lat), sample("Gnss", "Longitude", i, lon)])
    assert insurer.samples == []  # held until the trip ends
    r.put_events([Event(60.0, "insights", "trip.end", "trip ended", 3)])
    assert insurer.samples, "something lies outside both zones"
    from agent.geo.distance import haversine_m
    from agent.geo.geohash import coarsen
    for lat_s, lon_s in zip(insurer.samples[::2], insurer.samples[1::2], strict=True):
        lat, lon = track[int(lat_s.timestamp)]
        assert (lat_s.value, lon_s.value) == coarsen(lat, lon, 5)
        assert haversine_m(lat, lon, *track[0]) > 200 and haversine_m(lat, lon, *track[-1]) > 200


def test_a_revoke_forgets_the_positions_held(consent: ConsentBook) -> None:
    consent.grant("insurance", None, 0)
    r, (insurer,) = router(consent, "insurance", geohash=5)
    r.put_events([Event(0.0, "insights", "trip.start", "trip started", 3)])
    for i in range(30):
        r.put_samples([sample("Gnss", "Latitude", i, 45.7 + i * 0.01),
                       sample("Gnss", "Longitude", i, 4.8)])
    consent.revoke("insurance", 0)
    assert r.withdraw("insurance") == 30
    r.put_events([Event(30.0, "insights", "trip.end", "trip ended", 3)])
    assert insurer.samples == []


@pytest.mark.parametrize(("text", "problem"), [
    ('[upload]\nurl = "http://127.0.0.1:1/b"\npurpose = "garage"\n',
     "upload.purpose: unknown purpose 'garage'"),
    ('[upload]\nurl = "http://127.0.0.1:1/b"\npurpose = "diagnostics"\n',
     "upload.purpose: diagnostics is local only"),
    ('[destinations.x]\nurl = "http://127.0.0.1:1/b"\n',
     "destinations.x.purpose: required"),
    ('[destinations.main]\nurl = "http://127.0.0.1:1/b"\npurpose = "fleet"\n',
     "destinations.main: a destination's name is"),
    ('[destinations.Big]\nurl = "http://127.0.0.1:1/b"\npurpose = "fleet"\n',
     "destinations.Big: a destination's name is"),
    ('[purposes.insurance]\ngeohash = 13\n', "purposes.insurance.geohash: must be from 0 to 12"),
    ('[purposes.insurance]\nzone_min_m = 900\nzone_max_m = 300\n',
     "purposes.insurance.zone_min_m: must be at most zone_max_m"),
    ('[purposes.insurance]\nsignal = ["*"]\n',
     "purposes.insurance.signal: unknown key (did you mean signals?)"),
    ('[purposes.diagnostics]\ngeohash = 5\n', "purposes.diagnostics.geohash: "),
    ('[[signals]]\nmatch = "*"\npurposes = ["fleet", "garage"]\n',
     "signals[0].purposes[1]: unknown purpose 'garage'"),
    ('[[signals]]\nmatch = "*"\npurposes = [3]\n', "signals[0].purposes[0]: expected"),
])
def test_bad_purposes_and_destinations_name_their_key(tmp_path: Path, text: str,
                                                     problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(CHANNEL + text, tmp_path)
    assert any(p.startswith(problem) for p in info.value.problems), info.value.problems


def test_a_new_purpose_and_destinations_each_with_its_buffer(tmp_path: Path) -> None:
    config = parse_config(
        CHANNEL + f'[store]\nstate_dir = "{tmp_path}"\nquota_bytes = 30000000\n'
        '[upload]\nurl = "http://127.0.0.1:1/b"\npurpose = "maintenance"\n'
        '[destinations.research]\nurl = "http://127.0.0.1:2/b"\npurpose = "research"\n'
        '[purposes.research]\nsignals = ["Engine.*"]\nevents = []\n', tmp_path)
    assert purposes_of(config)["research"].signals == ("Engine.*",)
    dests = destinations_of(config)
    assert [(d.name, d.purpose) for d in dests] == [("main", "maintenance"),
                                                    ("research", "research")]
    assert dests[0].store.state_dir == tmp_path
    assert dests[1].store.state_dir == tmp_path / "destinations" / "research"
    assert dests[0].store.quota_bytes == dests[1].store.quota_bytes == 15_000_000
    with Store(dests[1].store) as store:  # its own buffer, in its own directory
        assert Path(store.path).parent == tmp_path / "destinations" / "research"


def test_without_uploads_the_local_buffer_is_the_diagnostics_purpose(tmp_path: Path) -> None:
    (local,) = destinations_of(parse_config(CHANNEL, tmp_path))
    assert (local.name, local.purpose, local.upload) == ("local", "diagnostics", None)
