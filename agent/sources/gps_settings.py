"""The settings of a GPS channel (``gpsd = ...`` or ``nmea = ...`` in a ``[[channels]]``).

Two ways to a position:

* ``gpsd``: the gpsd daemon (the usual one on a Pi), its JSON protocol over
  TCP; ``gpsd = true`` for ``127.0.0.1:2947``, or ``"host"``, ``"host:port"``,
  ``"[::1]:2947"``;
* ``nmea``: a receiver on a serial device speaking NMEA 0183 (``/dev/ttyACM0``,
  ``/dev/serial0``) or a pyserial URL (``socket://10.0.0.2:10110``), at
  ``baudrate`` (9600 unless said: what most receivers start at).

Kept apart from the sources so that reading a configuration imports nothing
more than this.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.obd.settings import BAUDRATE
from agent.ranges import Range

GPSD_HOST = "127.0.0.1"
GPSD_PORT = 2947  # gpsd's registered port
DEFAULT_BAUDRATE = 9600  # NMEA 0183's standard rate
PORT = Range(1, 65_535)
KINDS = ("gpsd", "nmea")


@dataclass(frozen=True)
class GpsSettings:
    """Where a GPS channel's positions come from."""

    kind: str  # "gpsd" or "nmea"
    host: str = GPSD_HOST  # gpsd
    port: int = GPSD_PORT
    device: str = ""  # nmea: a serial device or a pyserial URL
    baudrate: int = DEFAULT_BAUDRATE

    @property
    def where(self) -> str:
        """``gpsd at 127.0.0.1:2947`` or ``NMEA on /dev/ttyACM0 at 9600 baud``."""
        if self.kind == "gpsd":
            host = f"[{self.host}]" if ":" in self.host else self.host
            return f"gpsd at {host}:{self.port}"
        return f"NMEA on {self.device} at {self.baudrate} baud"


def parse_gpsd_address(text: str) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port``, ``[v6]`` or a bare IPv6 address -> (host,
    port); ValueError saying what is wrong."""
    text = text.strip()
    if not text:
        raise ValueError("expected host or host:port, got an empty string")
    port_text: str | None = None  # None: no port given
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not host or (rest and not rest.startswith(":")):
            raise ValueError(f"expected [IPv6 address]:port, got {text!r}")
        if rest:
            port_text = rest[1:]
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host = text  # a name, an IPv4 address or a bare IPv6 address
    if not host or any(c.isspace() for c in host):
        raise ValueError(f"expected host or host:port, got {text!r}")
    if "/" in host:
        raise ValueError(f"expected host or host:port, got the path {text!r} (gpsd serves "
                         f"its reports over TCP; its Unix socket only takes commands)")
    if port_text is None:
        return host, GPSD_PORT
    if not port_text:
        raise ValueError(f"the port after ':' is missing in {text!r}")
    if not port_text.isdigit() or int(port_text) not in PORT:
        raise ValueError(f"the port must be {PORT.rule}, got {port_text!r} in {text!r}")
    return host, int(port_text)


def read_gps_keys(table: dict[str, Any], key: str, problem: Callable[[str, str], None]
                  ) -> GpsSettings | None:
    """The GPS keys of the ``[[channels]]`` table at ``key`` (``gpsd``, ``nmea``,
    ``baudrate``), or None when it names no GPS. Each problem is reported with its key,
    the table's other keys being the configuration reader's to check."""
    gpsd, nmea = table.get("gpsd", False), table.get("nmea", False)
    if gpsd is False and nmea is False:
        return None
    if gpsd is not False and nmea is not False:
        return None  # the reader says that a channel has exactly one source
    kind = "gpsd" if gpsd is not False else "nmea"
    here = f"{key}.{kind}"
    if table.get("obd") is True:
        problem(here, "not valid with obd = true")
    if "dbc" in table:
        problem(f"{key}.dbc", "not used by a GPS channel (its fixes are decoded as "
                              "GPS.Latitude, GPS.Longitude, ...)")
    if table.get("mode") == "raw":
        problem(f"{key}.mode", "a GPS channel is always decoded: its positions go through "
                               "the privacy zones, never stored raw")
    if kind == "gpsd":
        if "baudrate" in table:
            problem(f"{key}.baudrate", "only valid with nmea (or obd = true)")
        if gpsd is True:
            return GpsSettings("gpsd")
        if not isinstance(gpsd, str) or "\x00" in gpsd:
            problem(here, f"expected true or \"host:port\", got {_shown(gpsd)}")
            return None
        try:
            host, port = parse_gpsd_address(gpsd)
        except ValueError as exc:
            problem(here, str(exc))
            return None
        return GpsSettings("gpsd", host=host, port=port)
    if not isinstance(nmea, str) or not nmea.strip() or "\x00" in nmea:
        problem(here, f"expected a serial device or a pyserial URL, got {_shown(nmea)}")
        return None
    baudrate = table.get("baudrate", DEFAULT_BAUDRATE)
    if isinstance(baudrate, bool) or not isinstance(baudrate, int):
        problem(f"{key}.baudrate", f"expected an integer, got {_shown(baudrate)}")
        baudrate = DEFAULT_BAUDRATE
    elif baudrate not in BAUDRATE:
        problem(f"{key}.baudrate", BAUDRATE.problem(baudrate) or "out of range")
        baudrate = DEFAULT_BAUDRATE
    return GpsSettings("nmea", device=nmea, baudrate=baudrate)


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return repr(value) if value else "an empty string"
    return {bool: "a boolean", int: "an integer", float: "a number", list: "an array",
            dict: "a table"}.get(type(value), type(value).__name__)
