"""The times a technician types: ``--since``/``--until`` of ``bavard export`` and ``plot``.

Accepted, in this order of reading:

- ``now``;
- before now: one or more amounts with a unit, ``s``, ``m``, ``h``, ``d`` or ``w``,
  after an optional minus sign (``-30m``, ``-2h``, ``-1d12h``; ``2h`` is ``-2h``);
- seconds since the epoch, as an integer or a decimal (``1767225600``,
  ``1767225600.25``): what candump logs and the buffer use;
- ISO 8601 (``2026-01-01``, ``2026-01-01T08:00``, ``2026-01-01 08:00:00.5+02:00``,
  ``...Z``). A time without a zone is read as UTC, not as the box's local time
  (a Pi's zone is often left at UTC anyway, and the buffer's times are UTC):
  :class:`When` says so in ``note``, which the commands print.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from agent.errors import BavardError

UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_RELATIVE = re.compile(r"-?((?:\d+(?:\.\d+)?[smhdw])+)")
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_EPOCH = re.compile(r"\d+(?:\.\d*)?")
LATEST = 253_402_300_800.0  # 10000-01-01T00:00:00Z
FORMS = ("ISO 8601 (2026-01-01T08:00:00Z; without a zone it is UTC), seconds since the "
         "epoch (1767225600), a time before now (-30m, -2h, -1d12h) or now")


@dataclass(frozen=True)
class When:
    """A time as typed and as read: ``epoch`` seconds, and a ``note`` when the reading
    assumed something (a time without a zone read as UTC)."""

    text: str
    epoch: float
    note: str | None = None

    @property
    def iso(self) -> str:
        return iso_utc(self.epoch)

    def to_dict(self) -> dict[str, object]:
        return {"input": self.text, "epoch": self.epoch, "iso": self.iso}


def parse_time(text: str, now: float, option: str) -> When:
    """``text`` read as a time (see the module docstring); BavardError naming ``option``
    and the accepted forms when it is none of them."""
    when = _parse(text, now, option)
    if not 0 <= when.epoch < LATEST:
        raise BavardError(f"{option} {text!r}: out of range (1970 to 9999)")
    return when


def _parse(text: str, now: float, option: str) -> When:
    value = text.strip()
    if value.lower() == "now":
        return When(text, now)
    relative = _RELATIVE.fullmatch(value)
    if relative:
        seconds = sum(float(n) * UNITS[u] for n, u in _PART.findall(relative.group(1)))
        return When(text, now - seconds)
    if _EPOCH.fullmatch(value):
        return When(text, float(value))
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BavardError(f"{option} {text!r}: not a time: use {FORMS}") from None
    if parsed.tzinfo is None:
        epoch = parsed.replace(tzinfo=UTC).timestamp()
        return When(text, epoch, f"{option} {text}: no time zone given, read as UTC "
                                 f"({iso_utc(epoch)}); add Z or +HH:MM to say which")
    return When(text, parsed.timestamp())


def iso_utc(epoch: float) -> str:
    """ISO 8601 in UTC with microseconds and a ``Z``: ``2026-01-01T00:00:00.000064Z``."""
    stamp = datetime.fromtimestamp(epoch, UTC).isoformat(timespec="microseconds")
    return stamp.replace("+00:00", "Z")
