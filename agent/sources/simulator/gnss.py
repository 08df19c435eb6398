"""Where the simulated car is: dead reckoning from its speed and yaw, as a GNSS fix.

The car moves on a flat plane around its start point (a few km a cycle: the
Earth's curvature does not show), then east and north become degrees with the
mean Earth radius. Only IEEE arithmetic (``sqrt`` is exact in IEEE 754), so a
seed gives the same fixes on any machine.
"""

from __future__ import annotations

import math

DEFAULT_ORIGIN = (45.7640, 4.8357)  # where the drive starts (deg): Lyon, place Bellecour
M_PER_DEG = 111_195.08  # metres per degree of latitude (mean Earth radius 6,371,008.8 m)
_DEG_PER_RAD = 57.29577951308232


def _cos(x: float) -> float:
    """cos(x) for |x| < 2 from its series, in IEEE arithmetic alone (no libm)."""
    term = total = 1.0
    for n in range(1, 16):
        term *= -x * x / ((2 * n - 1) * (2 * n))
        total += term
    return total


class DeadReckoning:
    """The car's position from ``origin`` (latitude, longitude in degrees), facing north
    at the start."""

    def __init__(self, origin: tuple[float, float] = DEFAULT_ORIGIN) -> None:
        lat, lon = origin
        if not (-89.0 <= lat <= 89.0 and -180.0 <= lon <= 180.0):
            raise ValueError(f"origin must be a latitude within +-89 and a longitude within "
                             f"+-180 degrees, got {origin}")
        self.origin = origin
        self.m_per_deg_lon = M_PER_DEG * _cos(lat / _DEG_PER_RAD)
        self.east = self.north = 0.0  # metres from the origin
        self._heading = (0.0, 1.0)  # a unit vector (east, north)

    def move(self, velocity: float, yaw: float, dt: float) -> None:
        """Turn by ``yaw`` (rad/s, + = left) and go ``velocity`` m/s (- = backwards) for
        ``dt`` seconds."""
        east, north = self._heading
        turn = yaw * dt
        if turn:  # a rotation by a small angle: its series to the 4th order
            turn2 = turn * turn
            c, s = 1.0 - turn2 / 2.0 + turn2 * turn2 / 24.0, turn - turn * turn2 / 6.0
            east, north = east * c - north * s, east * s + north * c
            norm = math.sqrt(east * east + north * north)
            east, north = east / norm, north / norm
            self._heading = (east, north)
        self.east += east * velocity * dt
        self.north += north * velocity * dt

    def position(self, east_error: float = 0.0, north_error: float = 0.0
                 ) -> tuple[float, float]:
        """(latitude, longitude) in degrees, off by the receiver's errors (metres)."""
        lat0, lon0 = self.origin
        return (lat0 + (self.north + north_error) / M_PER_DEG,
                lon0 + (self.east + east_error) / self.m_per_deg_lon)
