"""Geohash: a position as a string naming a cell of a grid, one character per level.

Each character adds 5 bits; the bits alternate between longitude and latitude,
longitude first, each halving the range still open ([-180, 180] and [-90, 90]
at the start): 1 for the upper half, 0 for the lower. A point exactly on a
border belongs to the cell above it (north or east), so 90 and 180 fall in
the last cells. The characters are the geohash alphabet (no a, i, l, o).

What coarsening means, in approximate cell sizes at the equator (a cell is
narrower east-west towards the poles):

=========  ===================
precision  cell (height x width)
=========  ===================
1          5,000 km x 5,000 km
3          156 km x 156 km
5          4.9 km x 4.9 km
7          153 m x 153 m
9          4.8 m x 4.8 m
=========  ===================
"""

from __future__ import annotations

import math
from typing import NamedTuple

ALPHABET = "0123456789bcdefghjkmnpqrstuvwxyz"
MAX_PRECISION = 12  # 12 characters: a cell of about 37 mm x 19 mm
_VALUES = {c: i for i, c in enumerate(ALPHABET)}


class Cell(NamedTuple):
    """One geohash cell: its name and its bounds in degrees."""

    geohash: str
    south: float
    west: float
    north: float
    east: float

    @property
    def centre(self) -> tuple[float, float]:
        """(latitude, longitude) of the cell's centre."""
        return (self.south + self.north) / 2, (self.west + self.east) / 2

    def contains(self, lat: float, lon: float) -> bool:
        """True when the point belongs to this cell (its south and west borders
        included, its north and east borders only at 90 and 180)."""
        return ((self.south <= lat < self.north or lat == self.north == 90.0)
                and (self.west <= lon < self.east or lon == self.east == 180.0))


def _check_position(lat: float, lon: float) -> None:
    if not (math.isfinite(lat) and -90.0 <= lat <= 90.0):
        raise ValueError(f"latitude must be within [-90, 90], got {lat!r}")
    if not (math.isfinite(lon) and -180.0 <= lon <= 180.0):
        raise ValueError(f"longitude must be within [-180, 180], got {lon!r}")


def _check_precision(precision: int) -> None:
    if isinstance(precision, bool) or not isinstance(precision, int) \
            or not 1 <= precision <= MAX_PRECISION:
        raise ValueError(f"precision must be an integer within [1, {MAX_PRECISION}], "
                         f"got {precision!r}")


def cell(lat: float, lon: float, precision: int) -> Cell:
    """The cell of ``precision`` characters that holds the point."""
    _check_position(lat, lon)
    _check_precision(precision)
    south, north, west, east = -90.0, 90.0, -180.0, 180.0
    chars = []
    even = True  # the even bits (0, 2, ...) halve the longitudes
    for _ in range(precision):
        value = 0
        for _ in range(5):
            value <<= 1
            if even:
                mid = (west + east) / 2
                if lon >= mid:
                    value |= 1
                    west = mid
                else:
                    east = mid
            else:
                mid = (south + north) / 2
                if lat >= mid:
                    value |= 1
                    south = mid
                else:
                    north = mid
            even = not even
        chars.append(ALPHABET[value])
    return Cell("".join(chars), south, west, north, east)


def encode(lat: float, lon: float, precision: int) -> str:
    """The geohash of ``precision`` characters (1 to 12) of a position in degrees."""
    return cell(lat, lon, precision).geohash


def decode(geohash: str) -> Cell:
    """The cell a geohash names (letters in either case)."""
    if not isinstance(geohash, str) or not 1 <= len(geohash) <= MAX_PRECISION:
        raise ValueError(f"a geohash has 1 to {MAX_PRECISION} characters, got {geohash!r}")
    text = geohash.lower()
    south, north, west, east = -90.0, 90.0, -180.0, 180.0
    even = True
    for i, char in enumerate(text):
        value = _VALUES.get(char)
        if value is None:
            raise ValueError(f"geohash {geohash!r}: {char!r} at {i} is not a geohash "
                             f"character ({ALPHABET})")
        for shift in range(4, -1, -1):
            bit = (value >> shift) & 1
            if even:
                mid = (west + east) / 2
                if bit:
                    west = mid
                else:
                    east = mid
            else:
                mid = (south + north) / 2
                if bit:
                    south = mid
                else:
                    north = mid
            even = not even
    return Cell(text, south, west, north, east)


def coarsen(lat: float, lon: float, precision: int) -> tuple[float, float]:
    """The centre (latitude, longitude) of the cell of ``precision`` characters that
    holds the point: all a coarsened position says of where the vehicle was."""
    return cell(lat, lon, precision).centre
