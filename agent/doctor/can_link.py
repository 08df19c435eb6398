"""The CAN links under the configured SocketCAN channels: present, up, bus state,
bitrate, error counters, bus-off and restarts (agent.doctor.netlink reads them).

A controller counts its transmit and receive errors (ISO 11898-1): below 96
it is error-active (all well), from 96 error-warning, from 128 error-passive
(it may no longer flag errors: something is wrong on the bus), from 256 on
transmit it goes bus-off and takes no part until restarted; with
``restart-ms`` 0 that waits for a person. Usual causes: a wrong bitrate, a
missing 120 ohm termination, CAN-H and CAN-L swapped, or no other node on the
bus to acknowledge our frames (a bench with the box alone).

A virtual link (vcan) has none of this: it is checked for being up only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from agent.config import Config
from agent.doctor.netlink import LinkInfo, NetlinkError, query_link
from agent.doctor.result import Result, failed, passed, skipped, warned

WARNING_LEVEL = 96  # an error counter at or above this: the controller is error-warning
DEFAULT_BITRATE = 500_000  # shown in the fix when the configuration names none

Query = Callable[[str], LinkInfo | None]


class Link(NamedTuple):
    channel: str  # the configuration's channel name
    interface: str  # can0
    bitrate: int | None  # what the configuration expects, if it says


def socketcan_links(config: Config) -> list[Link]:
    """The SocketCAN interfaces the configuration reads: its live buses and its native
    OBD channels' buses, each once."""
    found: dict[str, Link] = {}
    for ch in config.channels:
        if ch.obd is not None:
            if ch.obd.interface == "socketcan" and ch.obd.channel:
                found.setdefault(ch.obd.channel, Link(ch.name, ch.obd.channel, None))
        elif ch.kind == "can" and ch.interface == "socketcan" and ch.channel:
            found.setdefault(ch.channel, Link(ch.name, ch.channel, ch.bitrate))
    return list(found.values())


def can_link_checks(config: Config, query: Query = query_link) -> list[Result]:
    links = socketcan_links(config)
    if not links:
        others = sorted({ch.interface for ch in config.channels
                         if ch.kind == "can" and ch.interface != "socketcan" and ch.interface})
        why = (f"the live channels use {', '.join(others)}: no kernel link state to read"
               if others else "no SocketCAN channel in the configuration")
        return [skipped("CAN link", why)]
    out: list[Result] = []
    for link in links:
        try:
            info = query(link.interface)
        except NetlinkError as exc:
            out.append(skipped(f"CAN link {link.interface}", str(exc)))
            continue
        out.extend(check_link(link, info))
    return out


def _up_command(link: Link, info: LinkInfo | None) -> str:
    if info is not None and info.kind != "can":
        return f"sudo ip link set {link.interface} up"
    return (f"sudo ip link set {link.interface} up type can bitrate "
            f"{link.bitrate or (info.bitrate if info and info.bitrate else DEFAULT_BITRATE)}")


def check_link(link: Link, info: LinkInfo | None) -> list[Result]:
    """The results for one interface, from what netlink said of it (None: absent)."""
    name = f"CAN link {link.interface}"
    where = f"channel {link.channel}"
    if info is None:
        fix = (f"sudo ip link add dev {link.interface} type vcan && "
               f"sudo ip link set {link.interface} up" if link.interface.startswith("vcan")
               else "check the CAN adapter: its driver (dmesg | grep -i can), the HAT's "
                    "dtoverlay in /boot/firmware/config.txt, the USB cable")
        return [failed(name, f"{where}: no interface {link.interface} on this machine", fix)]
    if not info.up:
        return [failed(name, f"{where}: {link.interface} is down", _up_command(link, info))]
    if info.kind != "can":
        what = (f"{info.kind} (virtual)" if info.kind in ("vcan", "vxcan")
                else "not a CAN controller netlink describes (slcan, USB serial?)")
        return [passed(name, f"{where}: up; {what}: no bus state, bitrate or error "
                             "counters to read")]
    out = [passed(name, f"{where}: up, operstate {info.operstate}")]
    out.append(_state(link, info))
    out.append(_bitrate(link, info))
    out.append(_errors(link, info))
    return out


def _state(link: Link, info: LinkInfo) -> Result:
    name = f"CAN state {link.interface}"
    state = info.can_state or "unknown"
    if state == "error-active":
        return passed(name, "error-active: the controller takes part in the bus normally")
    wiring = ("check the bitrate, the 120 ohm termination and CAN-H/CAN-L, and that another "
              "node is on the bus to acknowledge")
    if state == "bus-off":
        restart = ("" if info.restart_ms else
                   f"; then sudo ip link set {link.interface} type can restart-ms 100")
        return failed(name, "bus-off: the controller stopped after too many transmit errors "
                            f"(restart-ms {info.restart_ms or 0})", wiring + restart)
    if state in ("error-warning", "error-passive"):
        return warned(name, f"{state}: error counters tx {info.tx_errors}, rx "
                            f"{info.rx_errors}", wiring)
    if state == "stopped":
        return failed(name, "stopped: the controller is not started", _up_command(link, info))
    return warned(name, f"{state}", f"sudo ip -details link show {link.interface}")


def _bitrate(link: Link, info: LinkInfo) -> Result:
    name = f"CAN bitrate {link.interface}"
    if not info.bitrate:
        return failed(name, "no bitrate set", _restart_at(link, link.bitrate or DEFAULT_BITRATE))
    shown = f"{info.bitrate:,} bit/s"
    if info.sample_point:
        shown += f", sample point {info.sample_point:.1%}"
    if link.bitrate is not None and link.bitrate != info.bitrate:
        return failed(name, f"{shown}, but channel {link.channel} expects "
                            f"{link.bitrate:,} (its bitrate key)",
                      _restart_at(link, link.bitrate))
    return passed(name, shown)


def _restart_at(link: Link, bitrate: int) -> str:
    return (f"sudo ip link set {link.interface} down && sudo ip link set {link.interface} "
            f"up type can bitrate {bitrate}")


def _errors(link: Link, info: LinkInfo) -> Result:
    name = f"CAN errors {link.interface}"
    tx, rx = info.tx_errors or 0, info.rx_errors or 0
    parts = [f"counters tx {tx}, rx {rx}"]
    stats = info.stats
    if stats is not None:
        parts.append(f"{stats.bus_error} bus errors, {stats.bus_off} bus-off, "
                     f"{stats.restarts} restarts, {stats.error_passive} times error-passive")
    parts.append(f"restart-ms {info.restart_ms or 0}")
    detail = "; ".join(parts)
    if stats is not None and stats.bus_off and not info.restart_ms:
        return warned(name, detail, f"sudo ip link set {link.interface} type can restart-ms "
                                    "100 (a bus-off then recovers by itself)")
    if max(tx, rx) >= WARNING_LEVEL or (stats is not None and stats.bus_off):
        return warned(name, detail, "errors on the bus: check the bitrate, the termination "
                                    "and the wiring")
    return passed(name, detail)
