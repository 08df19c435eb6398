"""Great-circle distance between two positions (haversine formula).

A sphere of the Earth's mean radius: the error against the ellipsoid is below
0.5 %, far less than what separates a privacy zone's 200 m from its 1,000 m.
"""

from __future__ import annotations

import math

EARTH_RADIUS_M = 6_371_008.8  # the mean radius (IUGG), metres


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Metres along the Earth's surface between two positions in degrees (WGS 84
    latitude and longitude); any longitudes, the 180th meridian crossed the short way."""
    phi1 = math.radians(lat1)
    phi2 = math.radians(lat2)
    half_dphi = (phi2 - phi1) / 2
    half_dlambda = math.radians(lon2 - lon1) / 2
    a = math.sin(half_dphi) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(half_dlambda) ** 2
    # a can exceed 1 by a rounding error for antipodal points
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(min(1.0, max(0.0, a))))
