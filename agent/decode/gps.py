"""Decode the fixes of a GPS channel into the pipeline's records.

A GPS source (agent.sources.gpsd, agent.sources.nmea) hands on each fix it
believes as a frame: id :data:`FIX_ID`, data the five values below as
little-endian IEEE 754 doubles, NaN for what the receiver did not say (no
altitude on a 2D fix, no heading at a standstill). This decoder turns one into
one :class:`~agent.frames.Decoded` record, message ``GPS``:

=========  ======  ====================================
signal     unit    from
=========  ======  ====================================
Latitude   deg     WGS 84, north positive
Longitude  deg     WGS 84, east positive
Speed      km/h    over ground
Altitude   m       above mean sea level
Heading    deg     course over ground, from true north
=========  ======  ====================================

so that the selection, the rules and the privacy gates (positions are the
``Latitude``/``Longitude`` pairs) treat them like any signal. A frame of
another length is counted in ``truncated`` and logged once.
"""

from __future__ import annotations

import logging
import math
import struct
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, NamedTuple

from agent.batch.model import SignalKey, SignalMeta
from agent.decode.decoder import DecodeStats
from agent.frames import Decoded, Frame, SignalInfo

log = logging.getLogger(__name__)

MESSAGE = "GPS"
FIX_ID = 0  # the frame id of a fix: GPS frames come from no bus
_LAYOUT = struct.Struct("<5d")
FIX_BYTES = _LAYOUT.size  # 40


class Field(NamedTuple):
    name: str
    unit: str
    minimum: float | None
    maximum: float | None


FIELDS = (
    Field("Latitude", "deg", -90.0, 90.0),
    Field("Longitude", "deg", -180.0, 180.0),
    Field("Speed", "km/h", 0.0, None),
    Field("Altitude", "m", None, None),
    Field("Heading", "deg", 0.0, 360.0),
)


def fix_data(latitude: float, longitude: float, speed: float | None, altitude: float | None,
             heading: float | None) -> bytes:
    """A fix as a frame's data (NaN for a value not known)."""
    nan = math.nan
    return _LAYOUT.pack(latitude, longitude, nan if speed is None else speed,
                        nan if altitude is None else altitude, nan if heading is None else heading)


class GpsDecoder:
    """Fix frames -> Decoded records (see the module's docstring)."""

    def __init__(self, channel: str, wanted: Callable[[str, str], bool] = lambda m, s: True
                 ) -> None:
        self.channel = channel
        self.stats = DecodeStats()
        picked = [(i, f) for i, f in enumerate(FIELDS) if wanted(MESSAGE, f.name)]
        self._indices = tuple(i for i, _ in picked)
        self._infos = tuple(SignalInfo(MESSAGE, f.name, f.unit, f.minimum, f.maximum, None, 0)
                            for _, f in picked)

    def decode(self, frame: Frame) -> Decoded | None:
        """The selected values of one fix, or None (nothing selected, or not a fix:
        counted)."""
        data = frame.data
        if len(data) != FIX_BYTES:
            bad = self.stats.truncated
            if not bad[frame.arbitration_id]:
                log.warning("%s: a GPS frame of %d bytes, not %d: ignored", self.channel,
                            len(data), FIX_BYTES)
            bad[frame.arbitration_id] += 1
            return None
        values = _LAYOUT.unpack(data)
        infos = []
        kept = []
        for i, info in zip(self._indices, self._infos, strict=True):
            value = values[i]
            if value == value:  # not NaN: the receiver said it
                infos.append(info)
                kept.append(value)
        if not kept:
            return None
        self.stats.decoded += 1
        return Decoded(frame.timestamp, frame.channel, MESSAGE, tuple(infos), tuple(kept),
                       None, None)


def catalogue() -> Any:
    """The GPS signals in the shape of a cantools database (``messages``, each with its
    ``name`` and ``signals``), for what looks at the signals a configuration can name."""
    signals = [SimpleNamespace(name=f.name) for f in FIELDS]
    return SimpleNamespace(messages=[SimpleNamespace(name=MESSAGE, signals=signals)])


def gps_metadata(channel: str) -> dict[SignalKey, SignalMeta]:
    """What the batches say about the GPS signals of ``channel``: unit and range."""
    return {(channel, MESSAGE, f.name): SignalMeta(unit=f.unit, minimum=f.minimum,
                                                   maximum=f.maximum)
            for f in FIELDS}
