"""bcm_plan: the CAN_BCM filters built from a decoder, and the proof that they lose
nothing the decoder would keep.

The proof is a model: the kernel's receive compare of one ``RX_SETUP``
(``net/can/bcm.c``: a frame is handed over when a masked bit differs from the
last frame handed over for the same page, or its length differs with
``RX_CHECK_DLC``; in multiplex mode the page is the first whose multiplexer
bits, masked by frame 0 over the first 8 bytes, equal the frame's), written
here in Python from the kernel's documented behaviour. Random frame sequences
(few bits change, many frames repeat, pages alternate, some frames longer than
the DBC says) go through a decoder directly, and through the model then a
second decoder: the records must be the same, timestamps included. The tier
test (tests/vcan/test_vcan_bcm.py) checks the real kernel against the same
plans.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import cantools
import pytest

from agent.decode.decoder import ChannelDecoder
from agent.frames import Decoded, Frame
from agent.policy.selection import Selector
from agent.sources.bcm import rx_setup
from agent.sources.bcm_plan import BcmMessage, bcm_plan
from agent.sources.socketcan_abi import CAN_EFF_FLAG, bcm_head
from tests.conftest import ROOT, corpus

DEMO = ROOT / "dbc" / "demo_vehicle.dbc"


def on_change(message: str, signal: str) -> tuple[bool, float, float | None]:
    return (True, 0.0, None)


def never(message: str, signal: str) -> bool:
    return False


def plan_for(db: Any, selection: list[str], rule: Any = on_change,
             feeds: Any = never) -> dict[str, BcmMessage]:
    decoder = ChannelDecoder("veh", [db], Selector(selection), rule)
    return {m.name: m for m in bcm_plan(decoder, rule, feeds)}


def demo() -> Any:
    return cantools.database.load_file(str(DEMO))


# ---------------------------------------------------------------- the plan itself

def test_one_whole_frame_mask_without_counters_and_checksums() -> None:
    plan = plan_for(demo(), ["EngineData.*"])
    engine = plan["EngineData"]
    # EngineSpeed 0|16, AccelPedalPosition 16|8, EngineLoad 24|8, EngineTorque 32|12
    # (Intel); EngineData_Counter 48|4 and _Checksum 56|8 left out
    assert engine == BcmMessage(0x100, 8, False, bytes.fromhex("ffffffffff0f0000"), None,
                                None, None, "EngineData")
    assert list(plan) == ["EngineData"]


def test_a_selected_multiplexer_gives_one_mask_over_common_and_pages() -> None:
    body = plan_for(demo(), ["BodyStatus.*"])["BodyStatus"]
    # the page selector 0|2 is selected: a common bit, so one mask, not pages
    assert body.pages is None
    assert body.mask == bytes.fromhex("03ffffff")


def test_pages_when_no_common_bit_is_selected() -> None:
    body = plan_for(demo(), ["BodyStatus.Door*", "BodyStatus.Headlights",
                             "BodyStatus.OutsideTemp"])["BodyStatus"]
    assert body.mask is None
    # every selected page's bits (the decoder's page mask), after each page's value:
    # doors 8..11 (page 0) | headlights 8..9 (page 1) in byte 1, outside temp byte 2
    assert body.pages == (
        bytes.fromhex("03000000"),  # the multiplexer's bits
        bytes.fromhex("000fff00"),
        bytes.fromhex("010fff00"),
        bytes.fromhex("020fff00"),
    )


def test_periods_heartbeats_and_events() -> None:
    def rule(message: str, signal: str) -> tuple[bool, float, float | None]:
        if signal == "VehicleSpeed":
            return (True, 0.0, 10.0)
        if signal == "LongitudinalAccel":
            return (False, 0.0, 2.5)
        if message == "Transmission":
            return (False, 0.5 if signal == "GearLever" else 0.2, None)
        if message == "FuelStatus":
            return (False, 1.0 if signal == "FuelLevel" else 0.0, None)
        return (True, 0.0, None)

    plan = plan_for(demo(), ["VehicleDynamics.VehicleSpeed", "VehicleDynamics.Long*",
                             "Transmission.*", "FuelStatus.*", "Odometer.*"], rule)
    # a heartbeat: every frame, and the smallest max_period as the kernel's timeout
    dynamics = plan["VehicleDynamics"]
    assert (dynamics.mask, dynamics.pages, dynamics.timeout, dynamics.throttle) == (
        None, None, 2.5, None)
    # every selected signal has a min_period: throttled at the smallest
    transmission = plan["Transmission"]
    assert (transmission.mask, transmission.throttle, transmission.timeout) == (None, 0.2, None)
    # one signal without a period: no throttle
    assert plan["FuelStatus"].throttle is None and plan["FuelStatus"].mask is None
    assert plan["Odometer"].mask == bytes.fromhex("ffffffffffff")
    # a signal that feeds the insights is never throttled
    fed = plan_for(demo(), ["Transmission.*"], rule,
                   lambda m, s: s == "CurrentGear")["Transmission"]
    assert fed.throttle is None


def test_29_bit_ids_carry_the_eff_flag() -> None:
    db = cantools.database.load_string("""VERSION ""
BO_ 2566844926 Load: 8 X
 SG_ Load : 0|8@1+ (1,0) [0|250] "%" X
BO_ 256 Small: 2 X
 SG_ A : 0|8@1+ (1,0) [0|255] "" X
""", database_format="dbc")
    plan = plan_for(db, ["*"])
    assert plan["Load"].can_id == 0x18FEF1FE | CAN_EFF_FLAG
    assert plan["Load"].frame_id == 0x18FEF1FE and plan["Load"].extended
    assert plan["Small"].can_id == 0x100 and not plan["Small"].extended


def test_rx_setup_layouts() -> None:
    message = BcmMessage(0x18FEF1FE | CAN_EFF_FLAG, 8, False, b"\xff" * 8, None, 1.5, None, "m")
    native = rx_setup(message, bcm_head("native"))
    ilp32 = rx_setup(message, bcm_head("ilp32"))
    assert len(native) == bcm_head().size + 16 and len(ilp32) == 40 + 16
    assert bcm_head().size % 8 == 0
    # the id is the head's last but one word, the frame's first
    size = bcm_head().size
    assert native[size:size + 4] == (0x18FEF1FE | CAN_EFF_FLAG).to_bytes(4, "little")
    fd = BcmMessage(0x321, 64, True, None, None, None, None, "fd")
    assert len(rx_setup(fd, bcm_head())) == size  # RX_FILTER_ID: no frame


# ---------------------------------------------------------------- the model

def _u64(data: bytes) -> int:
    return int.from_bytes(data[:8].ljust(8, b"\0"), "little")


class KernelRx:
    """The broadcast manager's receive filter for one RX_SETUP (see the module's
    docstring)."""

    def __init__(self, message: BcmMessage) -> None:
        self.message = message
        self.last: dict[int, bytes] = {}  # page index -> last frame handed over

    def hands_over(self, data: bytes) -> bool:
        m = self.message
        if m.mask is None and m.pages is None:
            return True
        if m.mask is not None:
            index, mask = 0, m.mask
        else:
            assert m.pages is not None
            selector = _u64(m.pages[0])
            for i, page in enumerate(m.pages[1:], 1):
                if selector & _u64(data) == selector & _u64(page):
                    index, mask = i, page
                    break
            else:
                return False  # no page matches: nothing is handed over
        last = self.last.get(index)
        width = max(len(mask), len(data))
        if (last is None or len(last) != len(data)  # RX_CHECK_DLC
                or any(a & b != a & c for a, b, c in zip(mask.ljust(width, b"\0"),
                                                        data.ljust(width, b"\0"),
                                                        last.ljust(width, b"\0"),
                                                        strict=True))):
            self.last[index] = data
            return True
        return False


def _key(record: Decoded) -> tuple[Any, ...]:
    return (record.timestamp, record.message, tuple(i.name for i in record.signals),
            record.values, record.labels, record.flags)


def _frames(messages: dict[int, Any], plan: list[BcmMessage], rng: random.Random,
            count: int) -> list[Frame]:
    """Frames of the planned messages: few bits change, many repeat, pages alternate."""
    state: dict[tuple[int, int], bytearray] = {}
    out = []
    for n in range(count):
        bm = rng.choice(plan)
        message = messages[bm.can_id]
        length = message.length
        page = rng.randrange(4) if bm.pages is not None or message.is_multiplexed() else 0
        data = state.setdefault((bm.can_id, page), bytearray(rng.randbytes(length)))
        roll = rng.random()
        if roll < 0.3:  # one bit flips
            bit = rng.randrange(8 * length)
            data[bit // 8] ^= 1 << bit % 8
        elif roll < 0.35:  # everything changes
            data[:] = rng.randbytes(length)
        if bm.pages is not None:  # the page's multiplexer value in its bits
            selector = bm.pages[0]
            value = bm.pages[1 + page % (len(bm.pages) - 1)]
            for i, s in enumerate(selector):
                data[i] = (data[i] & ~s & 0xFF) | (value[i] & s)
        frame = bytes(data)
        if rng.random() < 0.03 and length < (64 if bm.fd else 8):  # longer than the DBC
            frame += bytes(rng.randrange(2))
        out.append(Frame(1000.0 + n / 1000, "veh", bm.frame_id, bm.extended, bm.fd, frame))
    return out


def _check(db: Any, selection: list[str], seed: int, count: int = 3000,
           exclude: tuple[str, ...] = ()) -> int:
    """The records of a decoder over every frame, and over the frames the kernel model
    hands over, are the same; returns how many frames the model dropped."""
    rng = random.Random(seed)
    wanted = Selector(selection, exclude)
    direct = ChannelDecoder("veh", [db], wanted, on_change)
    messages = {(key & ~(1 << 31)) | (CAN_EFF_FLAG if key >> 31 else 0): message
                for key, (message, _) in direct.selected.items()}
    plan = [m for m in bcm_plan(direct, on_change, never) if m.length > 0]
    if not plan:
        return 0
    filtered = ChannelDecoder("veh", [db], wanted, on_change)
    kernel = {(m.frame_id, m.extended): KernelRx(m) for m in plan}
    frames = _frames(messages, plan, rng, count)
    want = [_key(r) for f in frames if (r := direct.decode(f)) is not None]
    passed = [f for f in frames if kernel[(f.arbitration_id, f.is_extended)].hands_over(f.data)]
    got = [_key(r) for f in passed if (r := filtered.decode(f)) is not None]
    assert got == want, f"seed {seed}: the kernel dropped a frame the decoder keeps"
    return len(frames) - len(passed)


@pytest.mark.parametrize("seed", range(6))
def test_the_kernel_drops_only_what_the_decoder_skips_demo(seed: int) -> None:
    db = demo()
    dropped = 0
    dropped += _check(db, ["*"], seed)
    for selection in (["BodyStatus.Door*", "BodyStatus.Wiper*", "BodyStatus.Cabin*"],
                      ["EngineData.EngineSpeed", "BodyStatus.*", "Brake.*"],
                      ["*"]):
        dropped += _check(db, selection, seed, exclude=("*Counter*", "*Checksum*"))
    assert dropped > 1000  # the model drops frames: the comparison means something


CORPUS = [("cantools", "dbc", "multiplex.dbc"), ("cantools", "dbc", "multiplex_2.dbc"),
          ("cantools", "dbc", "motohawk.dbc"), ("cantools", "dbc", "socialledge.dbc"),
          ("cantools", "dbc", "fd_test.dbc"), ("cantools", "dbc", "vehicle.dbc"),
          ("opendbc", "toyota_iQ_2009_can.dbc")]


@pytest.mark.parametrize("parts", CORPUS, ids=lambda p: p[-1])
def test_the_kernel_drops_only_what_the_decoder_skips_corpus(parts: tuple[str, ...]) -> None:
    path: Path = corpus(*parts)
    db = cantools.database.load_file(str(path), strict=False)
    for seed in range(2):
        _check(db, ["*"], seed, 2000)
        _check(db, ["*.*[a-m]*"], seed + 10, 2000)  # a part of each message


def test_per_page_masks_with_common_bits_would_lose_a_record() -> None:
    """Why one mask when a common bit is selected: a per-page compare misses a common
    bit that changed on one page and changed back on the other."""
    db = demo()
    direct = ChannelDecoder("veh", [db], Selector(["BodyStatus.*"]), on_change)
    (whole,) = bcm_plan(direct, on_change, never)
    per_page = BcmMessage(whole.can_id, 4, False, None,
                          (b"\x03\0\0\0", b"\x00\xff\xff\xff", b"\x01\xff\xff\xff",
                           b"\x02\xff\xff\xff"), None, None, "BodyStatus")
    frames = [b"\x00\x01\0\0", b"\x01\x01\0\0", b"\x00\x01\0\0"]
    # page 0, page 1, page 0 again with the same bits: the page (a common bit) changed
    records = [direct.decode(Frame(float(i), "veh", 0x400, False, False, d))
               for i, d in enumerate(frames)]
    assert all(r is not None for r in records)
    kernel = KernelRx(per_page)
    assert [kernel.hands_over(d) for d in frames] == [True, True, False]
    whole_kernel = KernelRx(whole)
    assert [whole_kernel.hands_over(d) for d in frames] == [True, True, True]
