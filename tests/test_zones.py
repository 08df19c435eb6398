"""The position gate: privacy zones at both ends of each trip (radii drawn per trip),
geohash coarsening, pairing, and everything it drops, each counted."""

from __future__ import annotations

import itertools
import math
import random
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.frames import Sample
from agent.geo import coarsen, encode, haversine_m
from agent.privacy.zones import PositionGate

HOME = (48.137, 11.575)
METRES_PER_DEGREE = 2 * math.pi * 6_371_008.8 / 360


def east_of(origin: tuple[float, float], metres: float) -> tuple[float, float]:
    lat, lon = origin
    return lat, lon + metres / (METRES_PER_DEGREE * math.cos(math.radians(lat)))


def position(ts: float, lat: float, lon: float, channel: str = "gps0", message: str = "GPS"
             ) -> list[Sample]:
    return [Sample(ts, channel, message, "Latitude", lat, "deg"),
            Sample(ts, channel, message, "Longitude", lon, "deg")]


def straight_trip(length_m: float, step_m: float, t0: float = 1000.0
                  ) -> list[tuple[float, float, float]]:
    """(ts, lat, lon) every ``step_m`` metres east of HOME, one second apart."""
    count = int(length_m / step_m) + 1
    return [(t0 + i, *east_of(HOME, i * step_m)) for i in range(count)]


def drive(gate: PositionGate, track: list[tuple[float, float, float]], chunk: int = 50
          ) -> list[Sample]:
    """One trip through the gate, offered in chunks as the router does; what it releases."""
    gate.trip_start(track[0][0])
    for start in range(0, len(track), chunk):
        gate.offer([s for ts, lat, lon in track[start:start + chunk]
                    for s in position(ts, lat, lon)])
    return gate.trip_end(track[-1][0])


def released_positions(samples: list[Sample]) -> list[tuple[float, float, float]]:
    """(ts, lat, lon) of released samples, which come as Latitude then Longitude."""
    assert len(samples) % 2 == 0
    out = []
    for lat, lon in zip(samples[::2], samples[1::2], strict=True):
        assert (lat.signal, lon.signal) == ("Latitude", "Longitude")
        assert lat.timestamp == lon.timestamp
        out.append((lat.timestamp, lat.value, lon.value))
    return out


def expected_release(track: list[tuple[float, float, float]], precision: int,
                     start_radius: float, end_radius: float) -> list[tuple[float, float, float]]:
    """What the rules say leaves: outside both zones, coarsened, runs in one cell once."""
    first, last = min(track), max(track)
    out: list[tuple[float, float, float]] = []
    previous = None
    for ts, lat, lon in sorted(track):
        if (haversine_m(first[1], first[2], lat, lon) <= start_radius
                or haversine_m(last[1], last[2], lat, lon) <= end_radius):
            continue
        cell = encode(lat, lon, precision)
        if cell == previous:
            continue
        previous = cell
        out.append((ts, *coarsen(lat, lon, precision)))
    return out


def draws(seed: int, count: int, low: float = 200.0, high: float = 1000.0) -> list[float]:
    """The radii a gate with ``random.Random(seed)`` draws: start, end, start, end..."""
    rng = random.Random(seed)
    return [rng.uniform(low, high) for _ in range(count)]


# -- the rules ----------------------------------------------------------------------------

def test_a_trip_releases_what_lies_outside_both_zones_coarsened() -> None:
    track = straight_trip(5_000, 10)
    gate = PositionGate(7, rng=random.Random(42))
    released = drive(gate, track)
    start_radius, end_radius = draws(42, 2)
    expected = expected_release(track, 7, start_radius, end_radius)
    assert released_positions(released) == expected
    assert len(expected) > 20  # a 153 m cell over 3+ km of road
    for sample in released:
        assert (sample.channel, sample.message, sample.unit) == ("gps0", "GPS", "deg")
    counts = gate.counts()
    in_zone = sum(1 for ts, lat, lon in track
                  if haversine_m(*HOME, lat, lon) <= start_radius
                  or haversine_m(*track[-1][1:], lat, lon) <= end_radius)
    assert counts["in_zone"] == in_zone
    assert counts["released"] == len(expected)
    assert counts["same_cell"] == len(track) - in_zone - len(expected)
    assert counts["held"] == 0


def test_nothing_near_either_end_is_released_at_any_precision() -> None:
    track = straight_trip(3_000, 5)
    for precision in (1, 3, 5, 9, 12):
        released = released_positions(drive(PositionGate(precision, rng=random.Random(1)),
                                            track))
        originals = {ts: (lat, lon) for ts, lat, lon in track}
        for ts, lat, lon in released:
            orig = originals[ts]
            assert haversine_m(*HOME, *orig) > 200.0
            assert haversine_m(*track[-1][1:], *orig) > 200.0
            assert (lat, lon) == coarsen(*orig, precision)


def test_the_radii_are_drawn_per_trip_within_the_bounds() -> None:
    """A road out and back, 1 m apart, precision 12 (no two positions share a cell): the
    first released position of each trip shows its start radius to within a metre."""
    track = straight_trip(4_000, 1)
    gate = PositionGate(12, rng=random.Random(5))
    cut_offs = []
    for trip in range(3):
        shifted = [(ts + trip * 10_000, lat, lon) for ts, lat, lon in track]
        released = released_positions(drive(gate, shifted, chunk=500))
        first_ts = released[0][0]
        last_ts = released[-1][0]
        originals = {ts: (lat, lon) for ts, lat, lon in shifted}
        cut_offs.append((haversine_m(*HOME, *originals[first_ts]),
                         haversine_m(*shifted[-1][1:], *originals[last_ts])))
    radii = draws(5, 6)
    for (start_cut, end_cut), start_radius, end_radius in zip(cut_offs, radii[::2], radii[1::2],
                                                               strict=True):
        assert start_radius < start_cut <= start_radius + 1.01
        assert end_radius < end_cut <= end_radius + 1.01
    assert all(200.0 <= r <= 1000.0 for r in radii)
    assert len({round(r) for r in radii}) == 6  # fresh each time


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1),
       steps=st.lists(st.tuples(st.floats(-400, 400), st.floats(-400, 400)), min_size=1,
                      max_size=120),
       precision=st.integers(1, 12),
       zone_min=st.floats(0, 500), extra=st.floats(0, 1500))
def test_every_released_position_obeys_the_rules(seed: int, steps: list[tuple[float, float]],
                                                 precision: int, zone_min: float,
                                                 extra: float) -> None:
    """A random walk (steps of up to 400 m north and east): whatever the radii drawn,
    nothing within zone_min of either end leaves, each released value is its position's
    cell centre, no two released in a row share a cell, and every position is accounted
    for."""
    lat, lon = HOME
    track = []
    for i, (north, east) in enumerate(steps):
        lat += north / METRES_PER_DEGREE
        lon += east / (METRES_PER_DEGREE * math.cos(math.radians(lat)))
        track.append((100.0 + i, lat, lon))
    gate = PositionGate(precision, zone_min, zone_min + extra, rng=random.Random(seed))
    released = released_positions(drive(gate, track, chunk=7))
    start_radius, end_radius = draws(seed, 2, zone_min, zone_min + extra)
    assert released == expected_release(track, precision, start_radius, end_radius)
    originals = {ts: (la, lo) for ts, la, lo in track}
    cells = []
    for ts, la, lo in released:
        orig = originals[ts]
        assert haversine_m(*track[0][1:], *orig) > zone_min
        assert haversine_m(*track[-1][1:], *orig) > zone_min
        assert (la, lo) == coarsen(*orig, precision)
        cells.append(encode(*orig, precision))
    assert all(a != b for a, b in itertools.pairwise(cells))
    counts = gate.counts()
    assert counts["released"] + counts["in_zone"] + counts["same_cell"] == len(track)


# -- what is dropped ----------------------------------------------------------------------

def test_positions_outside_a_trip_are_dropped_and_counted() -> None:
    gate = PositionGate(5, rng=random.Random(0))
    gate.offer(position(1.0, *HOME) + position(2.0, *HOME))
    assert gate.trip_end(3.0) == []
    released = drive(gate, straight_trip(5_000, 100, t0=10.0))
    gate.offer(position(9_999.0, *east_of(HOME, 3_000)))  # after the trip
    counts = gate.counts()
    assert counts["outside_trip"] == 3
    assert counts["held"] == 0
    assert released  # the trip itself was released
    assert not gate.in_trip


def test_lone_halves_are_dropped_and_counted_and_pairs_never_mixed() -> None:
    gate = PositionGate(9, zone_min_m=0, zone_max_m=0, rng=random.Random(0))
    gate.trip_start(0.0)
    far = east_of(HOME, 10_000)
    first, last = east_of(HOME, 20_000), east_of(HOME, 30_000)
    gate.offer([
        Sample(1.0, "gps0", "GPS", "Latitude", HOME[0], "deg"),  # lone: no Longitude
        *position(1.5, *first),
        Sample(2.0, "can0", "Nav", "LATITUDE", far[0], "deg", None, 1),
        Sample(2.0, "gps0", "GPS", "Longitude", far[1], "deg"),  # another channel: lone
        Sample(2.0, "can0", "Nav", "longitude", far[1], "°"),
        Sample(3.0, "gps0", "GPS", "Latitude", HOME[0], "deg"),
        Sample(3.0, "gps0", "GPS", "Latitude", 0.0, "deg"),  # the same half twice
        Sample(3.0, "gps0", "GPS", "Longitude", HOME[1], "deg"),
    ])
    gate.offer([Sample(4.0, "gps0", "GPS", "Latitude", far[0], "deg")])  # one half...
    gate.offer([Sample(4.0, "gps0", "GPS", "Longitude", far[1], "deg")])  # ...next chunk
    gate.offer(position(5.0, *last))
    released = gate.trip_end(6.0)
    counts = gate.counts()
    assert counts["unpaired"] == 5
    # zones of radius 0: all but the first and the last position leave, with their own
    # names, units and flags
    assert counts["in_zone"] == 2
    lat9, lon9 = coarsen(*far, 9)
    home9 = coarsen(*HOME, 9)
    assert released == [
        Sample(2.0, "can0", "Nav", "LATITUDE", lat9, "deg", None, 1),
        Sample(2.0, "can0", "Nav", "longitude", lon9, "°"),
        Sample(3.0, "gps0", "GPS", "Latitude", home9[0], "deg"),
        Sample(3.0, "gps0", "GPS", "Longitude", home9[1], "deg"),
    ]


def test_impossible_values_are_dropped_and_counted() -> None:
    gate = PositionGate(5, rng=random.Random(0))
    gate.trip_start(0.0)
    gate.offer(position(1.0, math.nan, 11.0) + position(2.0, 95.0, 11.0)
               + position(3.0, 48.0, -181.0))
    assert gate.trip_end(4.0) == []
    assert gate.counts()["invalid"] == 3


def test_a_full_gate_drops_new_positions_but_follows_the_trip_to_its_end() -> None:
    """100 held out of 300 (10 m apart, zones of exactly 200 m): the end zone is centred on
    the trip's real end (2,990 m), so the last held position (990 m) is released."""
    track = straight_trip(2_990, 10)
    gate = PositionGate(12, 200.0, 200.0, rng=random.Random(0), max_held=100)
    released = released_positions(drive(gate, track))
    assert [ts for ts, _, _ in released] == [ts for ts, _, _ in track[21:100]]
    counts = gate.counts()
    assert counts["full"] == 200
    assert counts["in_zone"] == 21
    assert counts["released"] == 79


def test_positions_offered_out_of_order_are_released_in_time_order() -> None:
    track = straight_trip(3_000, 100)
    shuffled = track[:]
    random.Random(3).shuffle(shuffled)
    gate = PositionGate(9, rng=random.Random(8))
    gate.trip_start(0.0)
    for ts, lat, lon in shuffled:
        gate.offer(position(ts, lat, lon))
    released = released_positions(gate.trip_end(9_999.0))
    start_radius, end_radius = draws(8, 2)
    assert released == expected_release(track, 9, start_radius, end_radius)


def test_runs_in_one_cell_are_released_once() -> None:
    """Precision 5 (cells of about 5 km) over 40 km: one position per cell crossed."""
    track = straight_trip(40_000, 50)
    gate = PositionGate(5, rng=random.Random(2))
    released = released_positions(drive(gate, track))
    cells = [encode(lat, lon, 5) for _, lat, lon in released]
    assert 8 <= len(cells) <= 16  # cells are about 3.3 km wide at this latitude
    assert len(set(cells)) == len(cells)
    counts = gate.counts()
    assert counts["same_cell"] == len(track) - len(cells) - counts["in_zone"]


def test_forget_drops_what_is_held_and_keeps_the_start_zone() -> None:
    track = straight_trip(6_000, 10)
    gate = PositionGate(12, 305.0, 305.0, rng=random.Random(0))
    gate.trip_start(track[0][0])
    gate.offer([s for p in track[:200] for s in position(*p)])
    assert gate.forget() == 200
    assert gate.counts()["forgotten"] == 200
    assert gate.in_trip
    gate.offer([s for p in track[200:] for s in position(*p)])
    released = released_positions(gate.trip_end(track[-1][0]))
    # positions 200.. (2,000 m and more from home): none before the forget leaves, and the
    # start zone stays at home, not at the first position offered after the forget
    assert released[0][0] == track[200][0]
    assert len(released) == len(track) - 200 - 31  # the end zone: 305 m, 10 m steps


def test_a_trip_that_starts_again_drops_the_unfinished_one() -> None:
    gate = PositionGate(5, rng=random.Random(0))
    gate.trip_start(0.0)
    gate.offer(position(1.0, *HOME) + position(2.0, *east_of(HOME, 9_000)))
    gate.trip_start(3.0)
    assert gate.counts()["unfinished"] == 2
    assert gate.trip_end(4.0) == []


def test_a_day_of_positions_at_1_hz_holds_in_a_few_megabytes() -> None:
    track = straight_trip(86_399, 1)  # 86,400 positions
    gate = PositionGate(5, rng=random.Random(0))
    gate.trip_start(0.0)
    chunks = [[s for p in track[i:i + 1000] for s in position(*p)]
              for i in range(0, len(track), 1000)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for chunk in chunks:
            gate.offer(chunk)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert gate.counts()["held"] == 86_400
    assert held < 3 * 1024 * 1024, f"{held:,} bytes held"
    gate.offer(position(99_999.0, *HOME))
    assert gate.counts()["full"] == 1


@pytest.mark.parametrize(("args", "message"), [
    ((0,), "precision must be within"),
    ((13,), "precision must be within"),
    ((5, 500.0, 200.0), "zone_min_m <= zone_max_m"),
    ((5, -1.0, 200.0), "zone_min_m <= zone_max_m"),
    ((5, 0.0, math.inf), "zone_min_m <= zone_max_m"),
])
def test_impossible_settings_are_refused(args: tuple[float, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PositionGate(*args)  # type: ignore[arg-type]
