"""Traffic on each live CAN channel: frames in the last seconds, and the share of the ids
seen that the channel's DBCs know.

From the running service's ``status`` (``frames_per_s``, ``known_share``) when
it runs; otherwise the bus is opened here and listened to for ``listen``
seconds. A service that reads no frame at all is listened beside as well
(SocketCAN lets two readers share a bus): the service reads a decoded bus
through a kernel filter of the DBCs' selected ids, so a bus full of other ids
looks silent to it; listening to everything tells a sleeping bus from a
DBC that does not describe it.

No frame at all is a warning, not a failure: a parked vehicle's bus sleeps.
Frames of which no id is in the DBCs mean the DBC is not this vehicle's (or
the box is on another bus): a failure, since nothing is decoded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

from agent.config import ChannelConfig, Config
from agent.doctor.result import Result, failed, passed, skipped, warned
from agent.errors import BavardError

LOW_SHARE = 0.1  # fewer known ids than this share: probably the wrong DBC
MAX_FRAMES = 200_000  # a listen reads at most this many frames (1 Mbit/s: ~8,000/s)
SILENT_FIX = ("ignition on? then check the wiring (CAN-H, CAN-L, ground), the bitrate "
              "and that the box is on the bus the DBC describes")
WRONG_DBC_FIX = ("the DBCs do not describe this bus: check the channel's dbc key "
                 "(bavard dbc list FILE shows their ids)")

Ids = set[tuple[int, bool]]


class Heard(NamedTuple):
    """What a listen got: frames per (id, extended), or why the bus could not be read."""

    seen: dict[tuple[int, bool], int]
    seconds: float
    error: str | None = None

    @property
    def rate(self) -> float:
        return sum(self.seen.values()) / self.seconds if self.seconds > 0 else 0.0


def traffic_checks(config: Config, status: dict[str, Any] | None, listen: float,
                   databases: dict[Any, Any] | None = None,
                   clock: Callable[[], float] = time.monotonic) -> list[Result]:
    live = [ch for ch in config.channels if ch.kind == "can"]
    if not live:
        return [skipped("traffic", "no live CAN channel (logs, simulator and OBD only)")]
    out = []
    by_name = {c.get("name"): c for c in (status or {}).get("channels", [])}
    for ch in live:
        known = known_ids(ch, databases or {})
        if status is None:
            out.append(judge_heard(ch.name, hear(ch, listen, clock), known))
            continue
        seen = by_name.get(ch.name)
        result = from_status(ch.name, seen)
        if seen is not None and seen.get("state") == "up" and not seen.get("frames_per_s"):
            result = _beside_a_silent_service(result, ch, hear(ch, listen, clock), known)
        out.append(result)
    return out


def from_status(name: str, ch: dict[str, Any] | None) -> Result:
    """A channel's traffic as the running service counts it (``known_share``: the share
    of its frames whose id a DBC knows)."""
    check = f"traffic {name}"
    if ch is None:
        return skipped(check, "the running service has no such channel (another "
                              "configuration?)")
    if ch.get("state") in ("down", "error"):
        why = ch.get("error") or "no frame can be read"
        return failed(check, f"the bus is {ch['state']}: {why}",
                      "see the CAN link checks above; the service reopens the bus by itself")
    rate = float(ch.get("frames_per_s") or 0.0)
    if rate <= 0:
        return warned(check, "the service read no frame in the last seconds", SILENT_FIX)
    shown = f"{rate:,.0f} frames/s read by the service"
    share = ch.get("known_share")
    if share is None:
        return passed(check, f"{shown}; no DBC to decode with (raw channel)")
    about = f"{share:.0%} of them of ids the DBCs know"
    if ch.get("unknown_ids"):
        about += f" ({ch['unknown_ids']} unknown ids)"
    return _share(check, shown, share, about)


def _share(check: str, shown: str, share: float, about: str) -> Result:
    if share <= 0:
        return failed(check, f"{shown}, but none of their ids is in the DBCs", WRONG_DBC_FIX)
    if share < LOW_SHARE:
        return warned(check, f"{shown}; only {about}",
                      "a DBC for another vehicle or bus? bavard dbc list FILE shows its ids")
    return passed(check, f"{shown}; {about}")


def judge_heard(name: str, heard: Heard, known: Ids | None) -> Result:
    """What a listen here got: the rate and the share of the ids seen that the DBCs know."""
    check = f"traffic {name}"
    if heard.error is not None:
        return failed(check, heard.error, "see the CAN link checks above")
    if not heard.seen:
        return warned(check, f"no frame in {heard.seconds:g} s of listening", SILENT_FIX)
    shown = f"{heard.rate:,.0f} frames/s (listened {heard.seconds:g} s)"
    if known is None:
        return passed(check, f"{shown}; no DBC to decode with (raw channel)")
    unknown = sum(1 for key in heard.seen if key not in known)
    share = 1 - unknown / len(heard.seen)
    about = f"{share:.0%} of the {len(heard.seen)} ids seen are in the DBCs"
    if unknown:
        about += f" ({unknown} unknown)"
    return _share(check, shown, share, about)


def _beside_a_silent_service(result: Result, ch: ChannelConfig, heard: Heard,
                             known: Ids | None) -> Result:
    """The service reads nothing: is the bus silent, or does its filter keep all out?"""
    if heard.error is not None or not heard.seen:
        return result  # silent here too (or not readable here): the service's word stands
    direct = judge_heard(ch.name, heard, known)
    if direct.status == "fail":
        return failed(direct.name, "the service reads no frame (its kernel filter passes the "
                                   "DBCs' selected ids only), and " + direct.detail,
                      WRONG_DBC_FIX)
    return warned(direct.name, "the service reads no frame, yet the bus carries "
                               + direct.detail, "the selection leaves out what this vehicle "
                                                "sends: check [selection] include/exclude")


def known_ids(ch: ChannelConfig, databases: dict[Any, Any]) -> Ids | None:
    """(id, extended) of every message of the channel's DBCs; None for a raw channel."""
    if ch.mode == "raw" or not ch.dbc:
        return None
    from agent.decode.dbc_files import load_dbc

    ids: Ids = set()
    for path in ch.dbc:
        try:
            db = databases[path] if path in databases else load_dbc(path)
        except BavardError:
            continue  # the configuration check says why
        ids.update((m.frame_id, bool(m.is_extended_frame)) for m in db.messages)
    return ids


def hear(ch: ChannelConfig, seconds: float, clock: Callable[[], float] = time.monotonic
         ) -> Heard:
    """Open the channel's bus, without filters, for ``seconds``."""
    import can

    try:
        bus = can.Bus(interface=ch.interface, channel=ch.channel, fd=ch.fd)
    except (can.CanError, OSError, ValueError, ImportError) as exc:
        return Heard({}, seconds, f"cannot open {ch.interface} {ch.channel}: {exc}")
    try:
        return Heard(_read(bus, seconds, clock), seconds)
    except (can.CanError, OSError) as exc:
        return Heard({}, seconds, f"reading {ch.interface} {ch.channel}: {exc}")
    finally:
        bus.shutdown()


def _read(bus: Any, seconds: float, clock: Callable[[], float]) -> dict[tuple[int, bool], int]:
    """Frames per (id, extended) received within ``seconds`` (error frames left out)."""
    seen: dict[tuple[int, bool], int] = {}
    deadline = clock() + seconds
    for _ in range(MAX_FRAMES):
        remaining = deadline - clock()
        if remaining <= 0:
            break
        message = bus.recv(timeout=min(remaining, 0.2))
        if message is None or message.is_error_frame:
            continue
        key = (message.arbitration_id, bool(message.is_extended_id))
        seen[key] = seen.get(key, 0) + 1
    return seen
