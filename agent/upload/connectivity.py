"""The connectivity gate: is there a link to the endpoint now, and is it metered?

A link is *usable* when its interface is administratively up with carrier
(``IFF_LOWER_UP``, operstate up or unknown), holds an address of the endpoint's
family (not tentative, not link-local), and the kernel's own route lookup to the
endpoint, restricted to that interface, finds a route in the FIB. Interfaces are
classed by name (first matching glob wins); unclassed ones (``lo``, bridges,
VPNs unless configured) are ignored. Among usable links an unmetered one wins.

Everything is read over rtnetlink with the stdlib socket module: no subprocess,
and no sysfs (``/sys/class/net`` shows the namespace of whoever mounted sysfs,
netlink always the caller's). The route lookup is ``ip route get fibmatch DST
oif IF``: without ``fibmatch`` an IPv4 lookup with an output interface falls
back to "assume the destination is on link" and succeeds with no route at all.

:meth:`Connectivity.wait_for_change` blocks on a netlink multicast socket (link,
address and route groups) instead of polling. The subscription starts with the
first :meth:`~Connectivity.check`, so a change between a check and the next
wait is never lost. A DNS that comes back makes no netlink event: callers wait
with a finite timeout and check again.
"""

from __future__ import annotations

import enum
import errno
import fnmatch
import ipaddress
import os
import select
import socket
import struct
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from agent.errors import BavardError, ConfigError


class ConnectivityError(BavardError):
    """The kernel's link or routing state cannot be read (netlink unavailable or refused)."""


class LinkClass(enum.StrEnum):
    METERED = "metered"
    UNMETERED = "unmetered"


DEFAULT_RULES: tuple[tuple[str, LinkClass], ...] = (
    ("wwan*", LinkClass.METERED),  # cellular modems (QMI/MBIM)
    ("wwp*", LinkClass.METERED),  # cellular, predictable names
    ("ppp*", LinkClass.METERED),  # dial-up style cellular
    ("usb*", LinkClass.METERED),  # RNDIS/CDC modems
    ("wlan*", LinkClass.UNMETERED),
    ("wlp*", LinkClass.UNMETERED),
    ("eth*", LinkClass.UNMETERED),
    ("en*", LinkClass.UNMETERED),
)


@dataclass(frozen=True)
class InterfaceRules:
    """Name globs to link classes; the first match wins, no match means ignored."""

    rules: tuple[tuple[str, LinkClass], ...] = DEFAULT_RULES

    @classmethod
    def with_overrides(
        cls, overrides: Mapping[str, str], key: str = "upload.interfaces"
    ) -> InterfaceRules:
        """``{"veth*": "unmetered", "enx0c5b*": "metered"}`` ahead of the defaults."""
        rules, problems = [], []
        for glob, name in overrides.items():
            try:
                rules.append((glob, LinkClass(name)))
            except ValueError:
                problems.append(f"{key}.{glob!r}: {name!r} is not 'metered' or 'unmetered'")
        if problems:
            raise ConfigError(problems)
        return cls(tuple(rules) + DEFAULT_RULES)

    def classify(self, name: str) -> LinkClass | None:
        for glob, link_class in self.rules:
            if fnmatch.fnmatchcase(name, glob):
                return link_class
        return None


@dataclass(frozen=True)
class Link:
    """A usable link to the endpoint."""

    name: str
    index: int
    link_class: LinkClass
    address: str  # one of our addresses on it, of the endpoint's family
    endpoint: str  # the resolved endpoint address the route was found for
    gateway: str | None  # next hop, None when the endpoint is on link
    kernel_default: bool  # the kernel's unrestricted route to the endpoint leaves here too

    @property
    def metered(self) -> bool:
        return self.link_class is LinkClass.METERED


@dataclass(frozen=True)
class Status:
    """The answer of :meth:`Connectivity.status`: a link, or why there is none."""

    link: Link | None
    reason: str  # "eth0 (unmetered) to 192.0.2.7", or every reason it is not usable
    rejected: tuple[str, ...] = field(default=())  # one line per classed interface not usable


# rtnetlink, from <linux/netlink.h>, <linux/rtnetlink.h>, <linux/if_addr.h>, <linux/if_link.h>
_HDR = struct.Struct("=IHHII")
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_F_REQUEST, _F_MULTI, _F_DUMP_INTR, _F_DUMP = 0x1, 0x2, 0x10, 0x300
_RTM_GETLINK, _RTM_GETADDR, _RTM_GETROUTE = 18, 22, 26
_IFINFO, _IFADDR, _RTMSG = struct.Struct("=BxHiII"), struct.Struct("=BBBBi"), struct.Struct("=8BI")
_IFF_UP, _IFF_LOWER_UP = 0x1, 0x10000
_IFLA_IFNAME, _IFLA_OPERSTATE = 3, 16
_OPER_UNKNOWN, _OPER_UP = 0, 6
_OPERSTATES = ("unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up")
_IFA_ADDRESS, _IFA_LOCAL, _IFA_FLAGS = 1, 2, 8
_IFA_F_DADFAILED, _IFA_F_TENTATIVE = 0x08, 0x40
_RT_SCOPE_LINK = 253
_RTA_DST, _RTA_OIF, _RTA_GATEWAY, _RTA_MULTIPATH = 1, 4, 5, 9
_RTM_F_FIB_MATCH, _RTN_LOCAL = 0x2000, 2
# RTMGRP_LINK, _IPV4_IFADDR, _IPV4_ROUTE, _IPV6_IFADDR, _IPV6_ROUTE
_GROUPS = 0x1 | 0x10 | 0x40 | 0x100 | 0x400
_STOP_POLL = 0.5  # seconds between looks at the stop event while waiting
_REPLY_TIMEOUT = 2.0  # seconds for the kernel to answer one request


def _attrs(data: bytes, offset: int) -> dict[int, bytes]:
    found: dict[int, bytes] = {}
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            break
        found.setdefault(kind & 0x3FFF, data[offset + 4 : offset + length])
        offset += (length + 3) & ~3
    return found


def _u32(raw: bytes | None) -> int | None:
    return struct.unpack("=I", raw[:4])[0] if raw and len(raw) >= 4 else None


class _Route(NamedTuple):
    err: int  # 0, or the errno of a failed lookup
    oif: int | None
    gateway: str | None
    local: bool  # the destination is an address of this machine


@dataclass(frozen=True)
class _Iface:
    index: int
    name: str
    flags: int
    operstate: int


class _Netlink:
    """One rtnetlink request socket; replies as (type, flags, body) triples."""

    def __init__(self) -> None:
        try:
            self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
            self.sock.settimeout(_REPLY_TIMEOUT)
            self.sock.bind((0, 0))
        except OSError as exc:
            raise ConnectivityError(f"rtnetlink: cannot open a socket: {exc}") from exc
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def request(self, kind: int, flags: int, payload: bytes) -> tuple[int, list[bytes]]:
        """Send one request: (errno, bodies); errno 0 on success, -1 for an interrupted dump."""
        self.seq += 1
        bodies: list[bytes] = []
        interrupted = False
        try:
            self.sock.send(_HDR.pack(_HDR.size + len(payload), kind, _F_REQUEST | flags,
                                     self.seq, 0) + payload)
            while True:
                data, offset = self.sock.recv(1 << 17), 0
                while offset + _HDR.size <= len(data):
                    length, mtype, mflags, seq, _ = _HDR.unpack_from(data, offset)
                    body = data[offset + _HDR.size : offset + length]
                    offset += (length + 3) & ~3
                    if seq != self.seq or length < _HDR.size:
                        continue
                    if mtype == _NLMSG_ERROR:
                        return -struct.unpack_from("=i", body)[0], bodies
                    interrupted = interrupted or bool(mflags & _F_DUMP_INTR)
                    if mtype == _NLMSG_DONE:
                        return (-1 if interrupted else 0), bodies
                    bodies.append(body)
                    if not mflags & _F_MULTI:
                        return 0, bodies
        except OSError as exc:  # socket.timeout included
            raise ConnectivityError(f"rtnetlink: request {kind} failed: {exc}") from exc

    def dump(self, kind: int, payload: bytes) -> list[bytes]:
        for _ in range(3):  # a dump interrupted by a concurrent change is asked again
            err, bodies = self.request(kind, _F_DUMP, payload)
            if err == 0:
                return bodies
            if err > 0:
                raise ConnectivityError(f"rtnetlink: dump {kind} refused: {os.strerror(err)}")
        raise ConnectivityError(f"rtnetlink: dump {kind} kept changing under us")

    def interfaces(self) -> list[_Iface]:
        found = []
        for body in self.dump(_RTM_GETLINK, _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0)):
            _, _, index, flags, _ = _IFINFO.unpack_from(body)
            attrs = _attrs(body, _IFINFO.size)
            name = attrs.get(_IFLA_IFNAME, b"").split(b"\0", 1)[0].decode(errors="replace")
            oper = attrs.get(_IFLA_OPERSTATE, bytes([_OPER_UNKNOWN]))[0]
            found.append(_Iface(index, name, flags, oper))
        return found

    def addresses(self) -> dict[tuple[int, int], list[str]]:
        """(ifindex, family) -> usable addresses, in the kernel's order."""
        found: dict[tuple[int, int], list[str]] = {}
        for body in self.dump(_RTM_GETADDR, _IFADDR.pack(socket.AF_UNSPEC, 0, 0, 0, 0)):
            family, _, flags, scope, index = _IFADDR.unpack_from(body)
            attrs = _attrs(body, _IFADDR.size)
            flags = _u32(attrs.get(_IFA_FLAGS)) or flags
            raw = attrs.get(_IFA_LOCAL) or attrs.get(_IFA_ADDRESS)
            unusable = flags & (_IFA_F_TENTATIVE | _IFA_F_DADFAILED) or scope >= _RT_SCOPE_LINK
            if raw is None or unusable:
                continue
            found.setdefault((index, family), []).append(socket.inet_ntop(family, raw))
        return found

    def route(self, dst: str, oif: int | None) -> _Route:
        """The kernel's route to ``dst``.

        With ``oif`` the lookup is restricted to that interface and answers from
        the FIB (``fibmatch``), so a missing route is an error, not a guess.
        """
        ip = ipaddress.ip_address(dst)
        family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
        attrs = struct.pack("=HH", 4 + len(ip.packed), _RTA_DST) + ip.packed
        flags = 0
        if oif is not None:
            attrs += struct.pack("=HHI", 8, _RTA_OIF, oif)
            flags = _RTM_F_FIB_MATCH
        rtm = _RTMSG.pack(family, ip.max_prefixlen, 0, 0, 0, 0, 0, 0, flags)
        err, bodies = self.request(_RTM_GETROUTE, 0, rtm + attrs)
        if err or not bodies:
            return _Route(err or errno.EHOSTUNREACH, None, None, False)
        got = _attrs(bodies[0], _RTMSG.size)
        out = _u32(got.get(_RTA_OIF))
        if out is None and oif is not None and _RTA_MULTIPATH in got:
            out = oif  # the kernel matched one of the nexthops against oif
        gw = got.get(_RTA_GATEWAY)
        local = _RTMSG.unpack_from(bodies[0])[7] == _RTN_LOCAL
        return _Route(0, out, socket.inet_ntop(family, gw) if gw else None, local)


class Connectivity:
    """Answers "which link, if any, reaches this endpoint now?" from the kernel's state."""

    def __init__(self, rules: InterfaceRules | None = None) -> None:
        self.rules = rules or InterfaceRules()
        self._events: socket.socket | None = None

    def check(self, endpoint: str) -> Link | None:
        """The best usable link to ``endpoint`` (host name or IP), or None."""
        return self.status(endpoint).link

    def status(self, endpoint: str) -> Status:
        self._subscribe()
        try:
            infos = socket.getaddrinfo(endpoint, None, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError) as exc:
            return Status(None, f"cannot resolve {endpoint!r}: {exc}")
        targets = list(dict.fromkeys(str(info[4][0]).split("%", 1)[0] for info in infos))
        nl = _Netlink()
        try:
            return self._assess(nl, targets)
        finally:
            nl.close()

    def _assess(self, nl: _Netlink, targets: list[str]) -> Status:
        kernel = {t: nl.route(t, None) for t in targets}
        for target, route in kernel.items():
            if route.local:  # a receiver on this machine: no link needed, nothing metered
                here = Link("lo", route.oif or 1, LinkClass.UNMETERED, target, target, None, True)
                return Status(here, f"{target} is on this machine")
        classed = [(i, c) for i in nl.interfaces() if (c := self.rules.classify(i.name))]
        if not classed:
            return Status(None, "no interface matches the class rules")
        addrs = nl.addresses()
        links: list[Link] = []
        rejected: list[str] = []
        for iface, link_class in classed:
            why = _link_problem(iface)
            for target in [] if why else targets:
                family = socket.AF_INET if ":" not in target else socket.AF_INET6
                mine = addrs.get((iface.index, family))
                if not mine:
                    why = why or f"no IPv{4 if family == socket.AF_INET else 6} address"
                    continue
                route = nl.route(target, iface.index)
                if route.err or route.oif != iface.index:
                    detail = os.strerror(route.err) if route.err else "elsewhere"
                    why = f"no route to {target} ({detail})"
                    continue
                links.append(Link(iface.name, iface.index, link_class, mine[0], target,
                                  route.gateway, kernel[target].oif == iface.index))
                break
            else:
                rejected.append(f"{iface.name} ({link_class}): {why}")
        if not links:
            return Status(None, "; ".join(rejected), tuple(rejected))
        best = min(links, key=lambda k: (k.metered, not k.kernel_default, k.name))
        return Status(best, f"{best.name} ({best.link_class}) to {best.endpoint}", tuple(rejected))

    def wait_for_change(self, timeout: float, stop: threading.Event | None = None) -> bool:
        """Block until a link, address or route changed (True), or timeout/stop (False).

        Changes since the last check or wait count, so nothing is lost between
        them. ``stop`` is looked at every 0.5 s; the time budget is real time
        spent in ``select``, so no clock is read.
        """
        sock = self._subscribe()
        remaining = max(0.0, timeout)
        while not (stop is not None and stop.is_set()):
            step = min(remaining, _STOP_POLL) if stop is not None else remaining
            try:
                ready, _, _ = select.select([sock], [], [], step)
            except (OSError, ValueError) as exc:
                raise ConnectivityError(f"rtnetlink: waiting for changes failed: {exc}") from exc
            if ready:
                self._drain(sock)
                return True
            remaining -= step
            if remaining <= 0:
                return False
        return False

    def close(self) -> None:
        if self._events is not None:
            self._events.close()
            self._events = None

    def __enter__(self) -> Connectivity:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _subscribe(self) -> socket.socket:
        if self._events is None:
            try:
                sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
                sock.setblocking(False)
                sock.bind((0, _GROUPS))
            except OSError as exc:
                raise ConnectivityError(f"rtnetlink: cannot subscribe to changes: {exc}") from exc
            self._events = sock
        return self._events

    @staticmethod
    def _drain(sock: socket.socket) -> None:
        while True:
            try:
                sock.recv(1 << 16)
            except BlockingIOError:
                return
            except OSError as exc:  # ENOBUFS: events were lost, which still means "changed"
                if exc.errno != errno.ENOBUFS:
                    return


def _link_problem(iface: _Iface) -> str | None:
    if not iface.flags & _IFF_UP:
        return "down"
    if not iface.flags & _IFF_LOWER_UP:
        return "no carrier"
    if iface.operstate not in (_OPER_UP, _OPER_UNKNOWN):
        state = _OPERSTATES[iface.operstate] if iface.operstate < len(_OPERSTATES) else "?"
        return f"operstate {state}"
    return None

