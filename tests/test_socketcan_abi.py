"""The SocketCAN structures as bytes, on any host (no AF_CAN needed): the BCM head's
layout for each ABI, frames, CAN_RAW filters as python-can installs them, the
32-bit-on-64-bit detection, the kernel-side read timeout; and the reader choice."""

from __future__ import annotations

import socket
import struct
import time

import pytest
from can.interfaces.socketcan.utils import pack_filters

from agent.errors import SourceError
from agent.sources.bcm_plan import BcmMessage
from agent.sources.can_bus import resolve_reader
from agent.sources.socketcan_abi import (
    CAN_EFF_FLAG,
    bcm_head,
    compat_mismatch,
    frame_bytes,
    kernel_is_64bit,
    raw_filters,
    set_timeout,
)


def test_bcm_head_native_layout_matches_the_c_struct() -> None:
    head = bcm_head()
    long = struct.calcsize("@l")
    # u32 opcode, flags, count; two bcm_timeval {long, long} aligned to a long; can_id,
    # nframes; the frames 8-aligned
    offset_ival1 = 12 + (-12 % long)
    offset_can_id = offset_ival1 + 4 * long
    expected = offset_can_id + 8
    expected += -expected % 8
    assert head.size == expected and head.struct.size == expected
    assert head.long_bits == 8 * long
    packed = head.struct.pack(5, 0x20, 0, 1, 2, 3, 4, 0x123, 7)
    assert packed[offset_can_id:offset_can_id + 8] == struct.pack("=II", 0x123, 7)
    assert packed[offset_ival1:offset_ival1 + long] == (1).to_bytes(long, "little")
    if long == 8:
        assert head.size == 56  # x86-64, arm64: what a 64-bit kernel reads


def test_bcm_head_ilp32_layout() -> None:
    head = bcm_head("ilp32")
    assert (head.size, head.long_bits) == (40, 32)  # 36 bytes padded to 8
    packed = head.struct.pack(5, 0, 0, 1, 2, 3, 4, 0x123, 1)
    assert struct.unpack_from("=IIIiiiiII", packed) == (5, 0, 0, 1, 2, 3, 4, 0x123, 1)
    assert packed[36:] == b"\0" * 4
    with pytest.raises(ValueError, match="unknown BCM head layout"):
        bcm_head("lp128")


def test_compat_mismatch_is_32_bit_longs_on_a_64_bit_kernel() -> None:
    assert compat_mismatch(bcm_head("ilp32"), "aarch64")
    assert compat_mismatch(bcm_head("ilp32"), "x86_64")
    assert not compat_mismatch(bcm_head("ilp32"), "armv7l")
    assert not compat_mismatch(bcm_head("ilp32"), "i686")
    assert kernel_is_64bit("riscv64") and not kernel_is_64bit("armv6l")
    if struct.calcsize("@l") == 8:
        assert not compat_mismatch(bcm_head(), "aarch64")


def test_frames_are_padded_structs() -> None:
    classic = frame_bytes(0x123, b"\x01\x02", fd=False)
    assert len(classic) == 16
    assert classic[:8] == struct.pack("=IBBBB", 0x123, 2, 0, 0, 0)
    assert classic[8:] == b"\x01\x02" + b"\0" * 6
    fd = frame_bytes(0x18FEF1FE | CAN_EFF_FLAG, bytes(range(64)), fd=True)
    assert len(fd) == 72 and fd[8:] == bytes(range(64)) and fd[4] == 64
    with pytest.raises(ValueError, match="do not fit"):
        frame_bytes(0x1, bytes(9), fd=False)


@pytest.mark.parametrize("filters", [
    [{"can_id": 0x100, "can_mask": 0x7FF, "extended": False}],
    [{"can_id": 0x18FEF521, "can_mask": 0x1FFFFFFF, "extended": True},
     {"can_id": 0x100, "can_mask": 0x7FE, "extended": False}],
    [{"can_id": 0x200, "can_mask": 0x700}],  # no "extended": both formats pass
])
def test_raw_filters_are_python_cans(filters: list[dict[str, int | bool]]) -> None:
    assert raw_filters(filters) == pack_filters(filters)  # type: ignore[arg-type]


def test_no_filters_means_everything() -> None:
    assert raw_filters(None) is None and raw_filters([]) is None


def test_the_read_timeout_is_the_kernels() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with a, b:
        set_timeout(a, 0.05)
        started = time.monotonic()
        with pytest.raises(BlockingIOError):
            a.recv(16)
        assert 0.04 < time.monotonic() - started < 1.0
        b.send(b"x")
        assert a.recv(16) == b"x"
        set_timeout(a, 0.0)  # not "forever": the smallest wait
        with pytest.raises(BlockingIOError):
            a.recv(16)


PLAN = [BcmMessage(0x100, 8, False, None, None, None, None, "m")]


@pytest.mark.parametrize(("reader", "interface", "plan", "kind"), [
    ("auto", "socketcan", PLAN, "bcm"),
    ("auto", "socketcan", None, "raw"),
    ("auto", "socketcan", [], "raw"),  # nothing selected: the id filters say so
    ("auto", "virtual", PLAN, "python-can"),
    ("python-can", "socketcan", PLAN, "python-can"),
    ("raw", "socketcan", PLAN, "raw"),
    ("bcm", "socketcan", [], "bcm"),
])
def test_reader_choice(reader: str, interface: str, plan: list[BcmMessage] | None,
                       kind: str) -> None:
    assert resolve_reader(reader, interface, plan, "veh") == kind


@pytest.mark.parametrize(("reader", "interface", "plan", "message"), [
    ("raw", "pcan", None, "reads SocketCAN only"),
    ("bcm", "virtual", PLAN, "reads SocketCAN only"),
    ("bcm", "socketcan", None, "needs the decoder's plan"),
    ("kernel", "socketcan", None, "unknown reader 'kernel'"),
])
def test_reader_choice_errors(reader: str, interface: str, plan: list[BcmMessage] | None,
                              message: str) -> None:
    with pytest.raises(SourceError, match=message) as raised:
        resolve_reader(reader, interface, plan, "veh")
    assert "'veh'" in str(raised.value)
