"""One network interface's state from rtnetlink: up or not, and a CAN controller's own.

What ``ip -details -statistics link show can0`` shows, read with the stdlib
socket module (no ``ip`` to parse, no pyroute2): an ``RTM_GETLINK`` request
for the interface by name, and in the answer

* ``ifinfomsg.ifi_flags`` (``IFF_UP``, ``IFF_LOWER_UP``) and ``IFLA_OPERSTATE``;
* ``IFLA_LINKINFO`` -> ``IFLA_INFO_KIND`` (``can``, ``vcan``, ``vxcan``...);
* for ``can``: ``IFLA_INFO_DATA`` -> ``IFLA_CAN_STATE`` (error-active ...
  bus-off), ``IFLA_CAN_BITTIMING`` (bitrate, sample point),
  ``IFLA_CAN_BERR_COUNTER`` (the controller's tx/rx error counters),
  ``IFLA_CAN_RESTART_MS`` (0: a bus-off stays until someone restarts it), and
  ``IFLA_INFO_XSTATS``: ``struct can_device_stats`` (bus errors, the times it
  went error-warning, error-passive and bus-off, arbitration lost, restarts).

:func:`parse_link` is a pure function of the answer's bytes (tested on bytes
built by hand); :func:`query_link` asks the kernel. The layouts are those of
<linux/rtnetlink.h>, <linux/if_link.h> and <linux/can/netlink.h>.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from dataclasses import dataclass

from agent.errors import BavardError

# <linux/netlink.h>, <linux/rtnetlink.h>
_HDR = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_NLM_F_REQUEST = 0x1
RTM_NEWLINK, RTM_GETLINK = 16, 18
IFF_UP, IFF_RUNNING, IFF_LOWER_UP = 0x1, 0x40, 0x10000
# <linux/if_link.h>
IFLA_IFNAME, IFLA_OPERSTATE, IFLA_LINKINFO = 3, 16, 18
IFLA_INFO_KIND, IFLA_INFO_DATA, IFLA_INFO_XSTATS = 1, 2, 3
OPERSTATES = ("unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up")
# <linux/can/netlink.h>
IFLA_CAN_BITTIMING, IFLA_CAN_STATE, IFLA_CAN_RESTART_MS, IFLA_CAN_BERR_COUNTER = 1, 4, 6, 8
CAN_STATES = ("error-active", "error-warning", "error-passive", "bus-off", "stopped",
              "sleeping")
_BITTIMING = struct.Struct("=8I")  # bitrate, sample_point (tenths of %), tq, ..., brp
_BERR = struct.Struct("=HH")  # txerr, rxerr
_DEVICE_STATS = struct.Struct("=6I")  # bus_error ... restarts
_REPLY_TIMEOUT = 2.0  # seconds for the kernel to answer


class NetlinkError(BavardError):
    """rtnetlink could not be asked (no AF_NETLINK here, a refused request)."""


@dataclass(frozen=True)
class CanStats:
    """``struct can_device_stats``: counts since the interface was created."""

    bus_error: int
    error_warning: int
    error_passive: int
    bus_off: int
    arbitration_lost: int
    restarts: int


@dataclass(frozen=True)
class LinkInfo:
    """What the kernel says of one interface; the ``can_*`` fields only for kind ``can``."""

    name: str
    index: int
    flags: int
    operstate: str  # "up", "down", "unknown" (what virtual links without carrier say)...
    kind: str | None  # IFLA_INFO_KIND: "can", "vcan", "vxcan", None for a plain link (lo)
    can_state: str | None = None  # "error-active", ..., "bus-off", "stopped"
    bitrate: int | None = None  # bits/s (0: not set yet)
    sample_point: float | None = None  # 0..1
    tx_errors: int | None = None  # the controller's error counters
    rx_errors: int | None = None
    restart_ms: int | None = None  # 0: no automatic restart after a bus-off
    stats: CanStats | None = None

    @property
    def up(self) -> bool:
        """Administratively up (``ip link set ... up``)."""
        return bool(self.flags & IFF_UP)

    @property
    def carrier(self) -> bool:
        return bool(self.flags & IFF_LOWER_UP)


def parse_attrs(data: bytes, offset: int = 0) -> dict[int, bytes]:
    """Netlink attributes from ``offset`` on: type -> payload (the first of each type;
    the nested and byte-order flags masked off). A truncated attribute ends the list."""
    found: dict[int, bytes] = {}
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4 or offset + length > len(data):
            break
        found.setdefault(kind & 0x3FFF, data[offset + 4:offset + length])
        offset += (length + 3) & ~3
    return found


def _u32(raw: bytes | None) -> int | None:
    return struct.unpack_from("=I", raw)[0] if raw is not None and len(raw) >= 4 else None


def _text(raw: bytes | None) -> str | None:
    return raw.split(b"\0", 1)[0].decode(errors="replace") if raw is not None else None


def parse_link(body: bytes) -> LinkInfo:
    """An ``RTM_NEWLINK`` message's body (``ifinfomsg`` and its attributes).
    ValueError when it is shorter than an ``ifinfomsg``."""
    if len(body) < _IFINFO.size:
        raise ValueError(f"an RTM_NEWLINK body of {len(body)} bytes (< {_IFINFO.size})")
    _family, _type, index, flags, _change = _IFINFO.unpack_from(body)
    attrs = parse_attrs(body, _IFINFO.size)
    oper = attrs.get(IFLA_OPERSTATE, b"\0")[0]
    info = parse_attrs(attrs.get(IFLA_LINKINFO, b""))
    kind = _text(info.get(IFLA_INFO_KIND))
    link = LinkInfo(name=_text(attrs.get(IFLA_IFNAME)) or "", index=index, flags=flags,
                    operstate=OPERSTATES[oper] if oper < len(OPERSTATES) else str(oper),
                    kind=kind)
    if kind != "can":
        return link
    data = parse_attrs(info.get(IFLA_INFO_DATA, b""))
    state = _u32(data.get(IFLA_CAN_STATE))
    timing = data.get(IFLA_CAN_BITTIMING)
    berr = data.get(IFLA_CAN_BERR_COUNTER)
    xstats = info.get(IFLA_INFO_XSTATS)
    bitrate = sample = None
    if timing is not None and len(timing) >= _BITTIMING.size:
        fields = _BITTIMING.unpack_from(timing)
        bitrate, sample = fields[0], fields[1] / 1000
    tx = rx = None
    if berr is not None and len(berr) >= _BERR.size:
        tx, rx = _BERR.unpack_from(berr)
    stats = (CanStats(*_DEVICE_STATS.unpack_from(xstats))
             if xstats is not None and len(xstats) >= _DEVICE_STATS.size else None)
    return LinkInfo(
        name=link.name, index=index, flags=flags, operstate=link.operstate, kind=kind,
        can_state=(None if state is None else
                   CAN_STATES[state] if state < len(CAN_STATES) else f"state {state}"),
        bitrate=bitrate, sample_point=sample, tx_errors=tx, rx_errors=rx,
        restart_ms=_u32(data.get(IFLA_CAN_RESTART_MS)), stats=stats)


def link_request(name: str, seq: int = 1) -> bytes:
    """The ``RTM_GETLINK`` request for the interface ``name``."""
    raw = name.encode() + b"\0"
    attr = struct.pack("=HH", 4 + len(raw), IFLA_IFNAME) + raw
    attr += b"\0" * (-len(attr) % 4)
    payload = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + attr
    return _HDR.pack(_HDR.size + len(payload), RTM_GETLINK, _NLM_F_REQUEST, seq, 0) + payload


def query_link(name: str) -> LinkInfo | None:
    """The kernel's state of ``name``; None when there is no such interface.
    NetlinkError when rtnetlink cannot be asked."""
    if not name or len(name.encode()) >= 16:  # IFNAMSIZ
        return None
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    except (OSError, AttributeError) as exc:
        raise NetlinkError(f"rtnetlink: cannot open a socket: {exc}") from exc
    with sock:
        try:
            sock.settimeout(_REPLY_TIMEOUT)
            sock.bind((0, 0))
            sock.send(link_request(name))
            data = sock.recv(1 << 16)
        except OSError as exc:  # socket.timeout included
            raise NetlinkError(f"rtnetlink: asking for {name}: {exc}") from exc
    offset = 0
    while offset + _HDR.size <= len(data):
        length, mtype, _flags, _seq, _pid = _HDR.unpack_from(data, offset)
        body = data[offset + _HDR.size:offset + length]
        if length < _HDR.size:
            break
        offset += (length + 3) & ~3
        if mtype == _NLMSG_ERROR:
            err = -struct.unpack_from("=i", body)[0]
            if err == 0:  # an acknowledgement, not the answer
                continue
            if err == errno.ENODEV:
                return None
            raise NetlinkError(f"rtnetlink: {name}: {os.strerror(err)}")
        if mtype == RTM_NEWLINK:
            return parse_link(body)
    raise NetlinkError(f"rtnetlink: no answer about {name}")
