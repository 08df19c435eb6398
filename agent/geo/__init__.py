"""Positions on the Earth: geohash cells (coarsening) and great-circle distances.

Written here rather than taken from a library: both are a few lines of
arithmetic, and the privacy zones (agent.privacy.zones) depend on their exact
behaviour at the edges (a point on a cell's border, the poles, the 180th
meridian), which the tests pin down.
"""

from agent.geo.distance import EARTH_RADIUS_M, haversine_m
from agent.geo.geohash import MAX_PRECISION, Cell, coarsen, decode, encode

__all__ = ["EARTH_RADIUS_M", "MAX_PRECISION", "Cell", "coarsen", "decode", "encode",
           "haversine_m"]
