"""Kernel CAN_RAW filters built from the selection (no kernel needed).

What the kernel does with a filter list is replayed here exactly: python-can's
own ``pack_filters`` makes the bytes that socketcan hands to
``setsockopt(CAN_RAW_FILTER)``, and :func:`kernel_accepts` applies the rule of
``net/can/af_can.c`` to them (``(can_id & mask) == (f.can_id & mask)``, with
``CAN_EFF_FLAG`` in both). The live kernel is exercised in ``tests/vcan/``.
"""

from __future__ import annotations

import random
import struct
from pathlib import Path

import cantools
import pytest
from can.interfaces.socketcan.utils import pack_filters
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config import parse_config
from agent.pipeline import Pipeline
from agent.policy.selection import Selector
from agent.sources.can_bus import CanBusSource
from agent.sources.can_filters import (
    CAN_RAW_FILTER_MAX,
    EFF_MASK,
    SFF_MASK,
    IdFilter,
    build_filters,
    can_filters_for,
    selected_ids,
)
from tests.conftest import ROOT

DBC = ROOT / "dbc" / "demo_vehicle.dbc"
CAN_EFF_FLAG = 0x80000000
DEMO_IDS = {0x0C0, 0x0D0, 0x0D8, 0x0E0, 0x100, 0x140, 0x180, 0x1A0, 0x3C0, 0x3D0, 0x3E0,
            0x400, 0x480, 0x500}
DEMO_EXTENDED = 0x18FEF521  # AmbientConditions


def kernel_accepts(filters: list[dict[str, object]] | None, can_id: int, extended: bool) -> bool:
    """What af_can.c's receive lists let through, from the bytes python-can installs."""
    packed = pack_filters(filters)  # type: ignore[arg-type]
    words = struct.unpack(f"={len(packed) // 4}I", packed)
    frame_id = can_id | (CAN_EFF_FLAG if extended else 0)
    return any(frame_id & mask == fid & mask for fid, mask in zip(words[::2], words[1::2],
                                                                     strict=True))


def demo_db() -> object:
    return cantools.database.load_file(str(DBC))


def test_selected_messages_only_with_exact_masks() -> None:
    db = demo_db()
    selector = Selector(["VehicleDynamics.*", "EngineData.*", "AmbientConditions.*"])
    assert selected_ids([db], selector) == [(0x0D0, False), (0x100, False),
                                            (DEMO_EXTENDED, True)]
    filters = can_filters_for([db], selector)
    assert filters == [
        {"can_id": 0x0D0, "can_mask": SFF_MASK, "extended": False},
        {"can_id": 0x100, "can_mask": SFF_MASK, "extended": False},
        {"can_id": DEMO_EXTENDED, "can_mask": EFF_MASK, "extended": True},
    ]
    for can_id in range(SFF_MASK + 1):
        assert kernel_accepts(filters, can_id, False) == (can_id in (0x0D0, 0x100)), hex(can_id)
        # a 29-bit frame with a small id is another frame on a live bus
        assert not kernel_accepts(filters, can_id, True), hex(can_id)
    assert kernel_accepts(filters, DEMO_EXTENDED, True)
    assert not kernel_accepts(filters, DEMO_EXTENDED & SFF_MASK, False)
    assert not kernel_accepts(filters, DEMO_EXTENDED ^ 1, True)


def test_a_message_whose_only_signals_are_excluded_is_filtered_out() -> None:
    db: object = demo_db()
    everything = {fid for fid, _ in selected_ids([db], Selector(["*"]))}
    assert everything == DEMO_IDS | {DEMO_EXTENDED}
    # exclude every signal of Odometer (0x3E0) and of Brake (0x0E0) by message name
    selector = Selector(["*"], ["Odometer.*", "Brake.*"])
    filters = can_filters_for([db], selector)
    accepted = {i for i in range(SFF_MASK + 1) if kernel_accepts(filters, i, False)}
    assert accepted == DEMO_IDS - {0x3E0, 0x0E0}
    # excluding only some signals of a message keeps the message
    some = Selector(["*"], ["*Counter*", "*Checksum*"])
    assert {fid for fid, _ in selected_ids([db], some)} == everything


def test_nothing_selected_means_no_filter() -> None:
    assert can_filters_for([demo_db()], Selector(["NoSuchSignal"])) is None
    assert build_filters([]) == []


def test_lossless_merges_keep_the_exact_set() -> None:
    ids = [(0x100, False), (0x101, False), (0x102, False), (0x103, False), (0x105, False),
           (0x300, False)]
    filters = build_filters(ids)
    assert IdFilter(0x100, SFF_MASK & ~0x3, False) in filters
    assert len(filters) == 3  # 0x100-0x103, 0x105, 0x300
    wanted = {i for i, _ in ids}
    dicts = [f.as_python_can() for f in filters]
    assert {i for i in range(SFF_MASK + 1) if kernel_accepts(dicts, i, False)} == wanted


def test_j1939_style_ids_collapse_without_loss() -> None:
    # 256 PGNs 0xFE00-0xFEFF from four source addresses, priority 6
    ids = {((6 << 26) | (0xFE00 + p) << 8 | sa, True) for p in range(256)
           for sa in (0x00, 0x03, 0x0B, 0x21)}
    filters = build_filters(ids)
    assert len(filters) <= 4
    assert sum(f.size() for f in filters) == len(ids)  # no id more than asked
    assert all(any(f.matches(i, e) for f in filters) for i, e in ids)


def test_above_the_kernel_limit_a_superset_within_the_limit() -> None:
    rng = random.Random(5)
    standard = {(i, False) for i in rng.sample(range(SFF_MASK + 1), 900) if i % 2}
    extended = {(rng.randrange(EFF_MASK + 1), True) for _ in range(400)}
    ids = standard | extended
    filters = build_filters(ids)
    assert len(filters) <= CAN_RAW_FILTER_MAX < len(ids)
    dicts = [f.as_python_can() for f in filters]
    for can_id, ext in ids:
        assert kernel_accepts(dicts, can_id, ext)
    # a superset, but not "everything": at most the odd 11-bit ids are let through...
    accepted = {i for i in range(SFF_MASK + 1) if kernel_accepts(dicts, i, False)}
    assert {i for i, e in standard} <= accepted
    assert len(accepted) < SFF_MASK + 1
    # ...and the cheap 11-bit merges were taken before the costly 29-bit ones
    assert sum(1 for f in filters if f.extended) > 0


@settings(max_examples=60, deadline=None)
@given(
    st.sets(st.integers(0, SFF_MASK), max_size=300),
    st.sets(st.integers(0, EFF_MASK), max_size=60),
    st.integers(2, 600),
)
def test_every_selected_id_passes_within_the_limit(standard: set[int], extended: set[int],
                                                   limit: int) -> None:
    ids = {(i, False) for i in standard} | {(i, True) for i in extended}
    filters = build_filters(ids, limit)
    assert len(filters) <= limit
    for can_id, ext in ids:
        assert any(f.matches(can_id, ext) for f in filters)
    exact = build_filters(ids, 10**9)
    assert sum(f.size() for f in exact) == len(ids)  # lossless merges lose nothing
    if len(exact) <= limit:
        assert sorted(exact) == sorted(filters)


def test_ids_that_do_not_fit_are_refused() -> None:
    with pytest.raises(ValueError, match="11 bits"):
        build_filters([(0x800, False)])
    with pytest.raises(ValueError, match="at least 2"):
        build_filters([(1, False)], max_filters=1)


def channel_config(tmp_path: Path, mode: str, include: str = "EngineData.*") -> str:
    dbc = "" if mode == "raw" else f'dbc = "{DBC}"'
    return f"""
[[channels]]
name = "veh"
interface = "virtual"
channel = "bavard-filters-{tmp_path.name}"
mode = "{mode}"
{dbc}
[selection]
include = ["{include}"]
"""


def test_pipeline_gives_a_decoded_bus_its_filters(tmp_path: Path) -> None:
    pipeline = Pipeline.from_config(parse_config(channel_config(tmp_path, "decoded"), ROOT))
    try:
        source = pipeline.channels[0].source
        assert isinstance(source, CanBusSource)
        assert source.can_filters == [{"can_id": 0x100, "can_mask": SFF_MASK,
                                       "extended": False}]
        # python-can's virtual bus applies them in software: only 0x100 is read
        import can

        with can.Bus(interface="virtual", channel=source.channel) as sender:
            for fid in (0x0D0, 0x100, 0x101):
                sender.send(can.Message(arbitration_id=fid, is_extended_id=False, data=b"\0" * 8))
            sender.send(can.Message(arbitration_id=0x100, is_extended_id=True, data=b"\0" * 8))
        assert source.bus is not None
        got = [source.bus.recv(0.5) for _ in range(2)]
        assert [(m.arbitration_id, m.is_extended_id) for m in got if m is not None] == [
            (0x100, False)]
    finally:
        for ch in pipeline.channels:
            ch.source.close()


def test_pipeline_leaves_a_raw_bus_unfiltered(tmp_path: Path) -> None:
    pipeline = Pipeline.from_config(parse_config(channel_config(tmp_path, "raw"), ROOT))
    try:
        source = pipeline.channels[0].source
        assert isinstance(source, CanBusSource)
        assert source.can_filters is None
    finally:
        for ch in pipeline.channels:
            ch.source.close()
