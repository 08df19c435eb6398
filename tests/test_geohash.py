"""Geohash cells and great-circle distances: published vectors, the edges (borders,
poles, the 180th meridian) and properties over random positions."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.geo import EARTH_RADIUS_M, Cell, coarsen, decode, encode, haversine_m
from agent.geo.geohash import ALPHABET, cell

latitudes = st.floats(min_value=-90.0, max_value=90.0, allow_nan=False)
longitudes = st.floats(min_value=-180.0, max_value=180.0, allow_nan=False)
precisions = st.integers(min_value=1, max_value=12)


# -- published vectors ------------------------------------------------------------------

@pytest.mark.parametrize(("lat", "lon", "precision", "expected"), [
    (57.64911, 10.40744, 11, "u4pruydqqvj"),  # the example of the geohash's author
    (42.6, -5.6, 5, "ezs42"),
    (-25.382708, -49.265506, 12, "6gkzwgjzn820"),
    (0.0, 0.0, 4, "s000"),  # the equator and the meridian: the upper halves
    (-0.000001, -0.000001, 4, "7zzz"),  # just below both: the lower ones
])
def test_encode_gives_the_published_hashes(lat: float, lon: float, precision: int,
                                           expected: str) -> None:
    assert encode(lat, lon, precision) == expected


def test_decode_gives_the_cell_of_the_published_example() -> None:
    got = decode("ezs42")
    assert got == Cell("ezs42", 42.583007812500, -5.625, 42.626953125, -5.581054687500)
    assert got.centre == pytest.approx((42.604980468750, -5.603027343750))


def test_one_character_cells_split_the_world_into_eight_by_four() -> None:
    cells = [decode(c) for c in ALPHABET]
    assert {(c.north - c.south, c.east - c.west) for c in cells} == {(45.0, 45.0)}
    assert decode("0")[1:] == (-90.0, -180.0, -45.0, -135.0)
    assert decode("z")[1:] == (45.0, 135.0, 90.0, 180.0)
    area = sum((c.north - c.south) * (c.east - c.west) for c in cells)
    assert area == 180.0 * 360.0


@pytest.mark.parametrize(("precision", "height_m", "width_m"), [
    (1, 5_003_777, 5_003_777), (3, 156_368, 156_368), (5, 4_887, 4_887), (7, 153, 153)])
def test_cell_sizes_are_those_the_docstring_gives(precision: int, height_m: float,
                                                  width_m: float) -> None:
    c = decode(encode(0.0, 0.0, precision))
    height = haversine_m(c.south, 0.0, c.north, 0.0)
    width = haversine_m(0.0, c.west, 0.0, c.east)
    assert height == pytest.approx(height_m, rel=0.01)
    assert width == pytest.approx(width_m, rel=0.01)


# -- edges ------------------------------------------------------------------------------

def test_the_poles_and_the_180th_meridian_fall_in_the_last_cells() -> None:
    assert encode(90.0, 180.0, 6) == "zzzzzz"
    assert encode(-90.0, -180.0, 6) == "000000"
    assert encode(90.0, -180.0, 1) == "b"
    assert encode(-90.0, 180.0, 1) == "p"
    north_east = decode("zzzzzz")
    assert north_east.contains(90.0, 180.0)
    assert coarsen(90.0, 180.0, 6) == north_east.centre


def test_a_point_on_a_border_belongs_to_the_cell_north_and_east_of_it() -> None:
    c = decode("u09tun")
    assert encode(c.south, c.west, 6) == "u09tun"
    assert encode(c.north, c.west, 6) != "u09tun"
    assert encode(c.south, c.east, 6) != "u09tun"
    assert c.contains(c.south, c.west)
    assert not c.contains(c.north, c.west) and not c.contains(c.south, c.east)


def test_decode_accepts_capitals() -> None:
    assert decode("EZS42") == decode("ezs42")


@pytest.mark.parametrize(("bad", "message"), [
    ("", "1 to 12 characters"),
    ("u09tunqucu09t", "1 to 12 characters"),
    ("ezs4a", r"'a' at 4 is not a geohash character"),
    ("ilo", r"'i' at 0 is not a geohash character"),
])
def test_decode_refuses_what_is_not_a_geohash(bad: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode(bad)


@pytest.mark.parametrize(("lat", "lon", "precision", "message"), [
    (90.5, 0.0, 5, "latitude must be within"),
    (-91.0, 0.0, 5, "latitude must be within"),
    (math.nan, 0.0, 5, "latitude must be within"),
    (0.0, 180.01, 5, "longitude must be within"),
    (0.0, math.inf, 5, "longitude must be within"),
    (0.0, 0.0, 0, "precision must be"),
    (0.0, 0.0, 13, "precision must be"),
    (0.0, 0.0, True, "precision must be"),
])
def test_encode_refuses_impossible_positions_and_precisions(lat: float, lon: float,
                                                            precision: int,
                                                            message: str) -> None:
    with pytest.raises(ValueError, match=message):
        encode(lat, lon, precision)
    with pytest.raises(ValueError, match=message):
        coarsen(lat, lon, precision)


# -- properties -------------------------------------------------------------------------

@settings(max_examples=400, deadline=None)
@given(latitudes, longitudes, precisions)
def test_a_cell_holds_its_point_and_decodes_to_itself(lat: float, lon: float,
                                                      precision: int) -> None:
    c = cell(lat, lon, precision)
    assert len(c.geohash) == precision
    assert set(c.geohash) <= set(ALPHABET)
    assert c.contains(lat, lon)
    assert decode(c.geohash) == c
    centre = c.centre
    assert encode(*centre, precision) == c.geohash  # coarsening twice changes nothing
    assert coarsen(*centre, precision) == centre == coarsen(lat, lon, precision)


@settings(max_examples=200, deadline=None)
@given(latitudes, longitudes, st.integers(min_value=2, max_value=12))
def test_a_longer_hash_is_a_cell_inside_the_shorter_one(lat: float, lon: float,
                                                        precision: int) -> None:
    fine = cell(lat, lon, precision)
    coarse = cell(lat, lon, precision - 1)
    assert fine.geohash.startswith(coarse.geohash)
    assert coarse.south <= fine.south < fine.north <= coarse.north
    assert coarse.west <= fine.west < fine.east <= coarse.east


@settings(max_examples=200, deadline=None)
@given(latitudes, longitudes, precisions)
def test_the_coarsened_position_is_within_half_a_cell_diagonal(lat: float, lon: float,
                                                                precision: int) -> None:
    c = cell(lat, lon, precision)
    centre_lat, centre_lon = c.centre
    half_diagonal = max(haversine_m(centre_lat, centre_lon, corner_lat, corner_lon)
                        for corner_lat in (c.south, c.north) for corner_lon in (c.west, c.east))
    assert haversine_m(lat, lon, centre_lat, centre_lon) <= half_diagonal * 1.000001 + 1e-6


# -- distances --------------------------------------------------------------------------

def test_haversine_known_distances() -> None:
    # Paris (Notre-Dame) to London (Charing Cross): 343.5 km on the mean sphere
    assert haversine_m(48.8530, 2.3499, 51.5073, -0.1277) == pytest.approx(343_500, rel=0.002)
    # one degree of latitude, one of longitude at the equator: 2 pi R / 360
    degree = 2 * math.pi * EARTH_RADIUS_M / 360
    assert haversine_m(10.0, 20.0, 11.0, 20.0) == pytest.approx(degree)
    assert haversine_m(0.0, 20.0, 0.0, 21.0) == pytest.approx(degree)
    # one degree of longitude at 60 degrees north is half as long
    assert haversine_m(60.0, 5.0, 60.0, 6.0) == pytest.approx(degree / 2, rel=1e-4)
    # pole to pole, antipodes: half the circumference
    assert haversine_m(90.0, 0.0, -90.0, 0.0) == pytest.approx(math.pi * EARTH_RADIUS_M)
    assert haversine_m(0.0, 0.0, 0.0, 180.0) == pytest.approx(math.pi * EARTH_RADIUS_M)


def test_haversine_crosses_the_180th_meridian_the_short_way() -> None:
    assert haversine_m(0.0, 179.9995, 0.0, -179.9995) == pytest.approx(111.19, rel=1e-3)


@settings(max_examples=200, deadline=None)
@given(latitudes, longitudes, latitudes, longitudes)
def test_haversine_is_a_distance(lat1: float, lon1: float, lat2: float, lon2: float) -> None:
    d = haversine_m(lat1, lon1, lat2, lon2)
    assert 0.0 <= d <= math.pi * EARTH_RADIUS_M + 1e-6
    assert d == pytest.approx(haversine_m(lat2, lon2, lat1, lon1), abs=1e-6)
    assert haversine_m(lat1, lon1, lat1, lon1) == 0.0
