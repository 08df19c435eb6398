"""The doctor's rtnetlink reading: the attribute parsing on answers built here byte by
byte (a CAN controller's, a vcan's), a real query of ``lo`` on this machine, and the
CAN link checks on what was parsed. The real-kernel CAN tier is tests/vcan/
test_vcan_doctor.py."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import pytest

from agent.config import ChannelConfig, Config
from agent.doctor import netlink
from agent.doctor.can_link import Link, can_link_checks, check_link
from agent.doctor.netlink import (
    IFF_LOWER_UP,
    IFF_UP,
    CanStats,
    LinkInfo,
    parse_attrs,
    parse_link,
    query_link,
)


def attr(kind: int, payload: bytes, nested: bool = False) -> bytes:
    """One netlink attribute, padded to 4 bytes (NLA_F_NESTED when ``nested``)."""
    raw = struct.pack("=HH", 4 + len(payload), kind | (0x8000 if nested else 0)) + payload
    return raw + b"\0" * (-len(raw) % 4)


def newlink(name: str, index: int, flags: int, operstate: int, linkinfo: bytes) -> bytes:
    """An RTM_NEWLINK body: ifinfomsg (AF_UNSPEC, ARPHRD_CAN 280) and attributes."""
    head = struct.pack("=BxHiII", socket.AF_UNSPEC, 280, index, flags, 0)
    return (head + attr(netlink.IFLA_IFNAME, name.encode() + b"\0")
            + attr(netlink.IFLA_OPERSTATE, bytes([operstate]))
            + attr(netlink.IFLA_LINKINFO, linkinfo, nested=True))


def can_linkinfo(state: int, bitrate: int, sample_point: int, txerr: int, rxerr: int,
                 restart_ms: int, stats: tuple[int, ...]) -> bytes:
    data = (attr(netlink.IFLA_CAN_BITTIMING,
                 struct.pack("=8I", bitrate, sample_point, 125, 6, 7, 2, 1, 4))
            + attr(netlink.IFLA_CAN_STATE, struct.pack("=I", state))
            + attr(netlink.IFLA_CAN_RESTART_MS, struct.pack("=I", restart_ms))
            + attr(netlink.IFLA_CAN_BERR_COUNTER, struct.pack("=HH", txerr, rxerr)))
    return (attr(netlink.IFLA_INFO_KIND, b"can\0")
            + attr(netlink.IFLA_INFO_DATA, data, nested=True)
            + attr(netlink.IFLA_INFO_XSTATS, struct.pack("=6I", *stats)))


UP = IFF_UP | IFF_LOWER_UP | 0x40


def test_a_can_controller_in_bus_off() -> None:
    body = newlink("can0", 7, IFF_UP, 2, can_linkinfo(
        state=3, bitrate=500_000, sample_point=875, txerr=256, rxerr=12, restart_ms=0,
        stats=(1843, 3, 2, 1, 0, 0)))
    info = parse_link(body)
    assert info == LinkInfo(
        name="can0", index=7, flags=IFF_UP, operstate="down", kind="can",
        can_state="bus-off", bitrate=500_000, sample_point=0.875, tx_errors=256,
        rx_errors=12, restart_ms=0, stats=CanStats(1843, 3, 2, 1, 0, 0))
    assert info.up and not info.carrier
    results = {r.name: r for r in check_link(Link("vehicle", "can0", 500_000), info)}
    assert results["CAN link can0"].status == "pass"
    state = results["CAN state can0"]
    assert state.status == "fail" and state.detail.startswith("bus-off")
    assert state.fix is not None and "sudo ip link set can0 type can restart-ms 100" in state.fix
    assert results["CAN bitrate can0"].status == "pass"
    assert results["CAN bitrate can0"].detail == "500,000 bit/s, sample point 87.5%"
    errors = results["CAN errors can0"]
    assert errors.status == "warn" and "1 bus-off, 0 restarts" in errors.detail
    assert errors.fix is not None and "restart-ms 100" in errors.fix


def test_error_passive_a_wrong_bitrate_and_a_healthy_link() -> None:
    info = parse_link(newlink("can1", 8, UP, 6, can_linkinfo(
        state=2, bitrate=250_000, sample_point=800, txerr=130, rxerr=0, restart_ms=100,
        stats=(90, 2, 1, 0, 0, 0))))
    results = {r.name: r for r in check_link(Link("truck", "can1", 500_000), info)}
    assert results["CAN state can1"].status == "warn"
    assert results["CAN state can1"].detail == "error-passive: error counters tx 130, rx 0"
    bitrate = results["CAN bitrate can1"]
    assert bitrate.status == "fail" and "channel truck expects 500,000" in bitrate.detail
    assert bitrate.fix == ("sudo ip link set can1 down && sudo ip link set can1 up type can "
                           "bitrate 500000")
    assert results["CAN errors can1"].status == "warn"  # tx 130 >= 96

    info = parse_link(newlink("can1", 8, UP, 6, can_linkinfo(
        state=0, bitrate=500_000, sample_point=875, txerr=0, rxerr=3, restart_ms=100,
        stats=(2, 0, 0, 0, 0, 0))))
    assert [r.status for r in check_link(Link("truck", "can1", None), info)] == ["pass"] * 4


def test_vcan_has_no_can_data_and_a_down_link_fails_with_its_fix() -> None:
    vcan = newlink("vcan0", 9, UP, 0, attr(netlink.IFLA_INFO_KIND, b"vcan\0"))
    info = parse_link(vcan)
    assert info.kind == "vcan" and info.can_state is None and info.bitrate is None
    (result,) = check_link(Link("bench", "vcan0", None), info)
    assert result.status == "pass" and "vcan (virtual): no bus state" in result.detail
    down = parse_link(newlink("vcan0", 9, 0, 2, attr(netlink.IFLA_INFO_KIND, b"vcan\0")))
    (result,) = check_link(Link("bench", "vcan0", None), down)
    assert result.status == "fail" and result.fix == "sudo ip link set vcan0 up"
    (result,) = check_link(Link("bench", "vcan3", None), None)
    assert result.status == "fail" and "no interface vcan3" in result.detail
    assert result.fix is not None and "type vcan" in result.fix


def test_attributes_that_are_cut_short() -> None:
    good = attr(1, b"abcd") + attr(2, b"xy")
    assert parse_attrs(good) == {1: b"abcd", 2: b"xy"}
    assert parse_attrs(good + struct.pack("=HH", 40, 3) + b"short") == {1: b"abcd", 2: b"xy"}
    assert parse_attrs(struct.pack("=HH", 2, 1)) == {}  # a length below the header
    info = parse_link(struct.pack("=BxHiII", 0, 280, 3, 0, 0)
                      + attr(netlink.IFLA_LINKINFO, attr(netlink.IFLA_INFO_KIND, b"can\0")
                             + attr(netlink.IFLA_INFO_DATA, b"\x01"), nested=True))
    assert info.kind == "can" and info.can_state is None and info.stats is None
    with pytest.raises(ValueError, match="RTM_NEWLINK body of 4 bytes"):
        parse_link(b"\0" * 4)


def test_the_request_asks_for_one_interface_by_name() -> None:
    raw = netlink.link_request("can0", seq=5)
    length, kind, flags, seq, _ = struct.unpack_from("=IHHII", raw)
    assert (length, kind, flags, seq) == (len(raw), netlink.RTM_GETLINK, 1, 5)
    assert parse_attrs(raw, 16 + 16) == {netlink.IFLA_IFNAME: b"can0\0"}


def test_a_real_query_of_lo() -> None:
    info = query_link("lo")
    assert info is not None and info.name == "lo" and info.index == socket.if_nametoindex("lo")
    assert info.up and info.kind is None and info.can_state is None
    assert query_link("bavard-none0") is None
    assert query_link("x" * 20) is None  # longer than IFNAMSIZ


def test_the_checks_of_a_configuration_on_this_machine(tmp_path: Path) -> None:
    """A socketcan channel named after ``lo`` (up, but no CAN controller) and one named
    after an interface that does not exist, asked of this kernel."""
    config = Config(channels=(
        ChannelConfig("bench", interface="socketcan", channel="lo"),
        ChannelConfig("vehicle", interface="socketcan", channel="bavard-none0"),
        ChannelConfig("other", interface="virtual", channel="x"),
    ))
    results = can_link_checks(config)
    assert [(r.name, r.status) for r in results] == [
        ("CAN link lo", "pass"), ("CAN link bavard-none0", "fail")]
    assert "not a CAN controller netlink describes" in results[0].detail
    only_virtual = Config(channels=(ChannelConfig("other", interface="virtual",
                                                  channel="x"),))
    (result,) = can_link_checks(only_virtual)
    assert result.status == "skip" and "virtual: no kernel link state" in result.detail
