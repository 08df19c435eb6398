"""Mode 01/02 PIDs: formulas against values worked out by hand from SAE J1979's scalings,
the supported-PIDs bitmaps, cutting multi-PID replies, and the names people type."""

from __future__ import annotations

import re

import pytest

from agent.obd import pids
from agent.obd.pids import (
    BY_NAME,
    PIDS,
    lookup,
    mode01_request,
    split_mode01,
    split_mode02,
    supported_pids,
)


def value(name: str, hex_data: str) -> tuple[int | float, ...]:
    return BY_NAME[name].decode(bytes.fromhex(hex_data))


# (PID name, data bytes, expected values): each worked out by hand in the comment
CASES = [
    ("ENGINE_RPM", "1a f8", (1726.0,)),  # 0x1AF8 = 6904; / 4
    ("ENGINE_RPM", "ff ff", (16383.75,)),  # 65535 / 4
    ("COOLANT_TEMPERATURE", "7b", (83,)),  # 123 - 40
    ("COOLANT_TEMPERATURE", "00", (-40,)),
    ("INTAKE_AIR_TEMPERATURE", "3c", (20,)),  # 60 - 40
    ("AMBIENT_AIR_TEMPERATURE", "ff", (215,)),
    ("OIL_TEMPERATURE", "82", (90,)),  # 130 - 40
    ("VEHICLE_SPEED", "32", (50,)),
    ("ENGINE_LOAD", "ff", (100.0,)),
    ("ENGINE_LOAD", "00", (0.0,)),
    ("FUEL_LEVEL", "33", (20.0,)),  # 51 * 100 / 255 = 20 exactly
    ("THROTTLE_POSITION", "66", (40.0,)),  # 102 / 255 = 0.4
    ("SHORT_FUEL_TRIM_1", "80", (0.0,)),  # 128 is the zero
    ("LONG_FUEL_TRIM_1", "90", (12.5,)),  # (144 - 128) * 100 / 128
    ("SHORT_FUEL_TRIM_2", "00", (-100.0,)),
    ("LONG_FUEL_TRIM_2", "ff", (99.21875,)),  # 127 * 100 / 128
    ("EGR_ERROR", "70", (-12.5,)),  # (112 - 128) * 100 / 128
    ("FUEL_PRESSURE", "64", (300,)),  # 3 * 100
    ("INTAKE_MANIFOLD_PRESSURE", "21", (33,)),
    ("BAROMETRIC_PRESSURE", "65", (101,)),
    ("TIMING_ADVANCE", "90", (8.0,)),  # 144 / 2 - 64
    ("TIMING_ADVANCE", "00", (-64.0,)),
    ("MASS_AIR_FLOW", "01 f4", (5.0,)),  # 500 / 100
    ("RUN_TIME", "01 2c", (300,)),  # 256 + 44
    ("DISTANCE_WITH_MIL", "00 0a", (10,)),
    ("DISTANCE_SINCE_CLEAR", "12 34", (4660,)),  # 0x1234
    ("WARMUPS_SINCE_CLEAR", "ff", (255,)),
    ("TIME_WITH_MIL", "00 3c", (60,)),
    ("TIME_SINCE_CLEAR", "01 00", (256,)),
    ("FUEL_RAIL_GAUGE_PRESSURE", "01 00", (2560,)),  # 10 * 256
    ("FUEL_RAIL_ABSOLUTE_PRESSURE", "00 01", (10,)),
    ("FUEL_RAIL_PRESSURE_VACUUM", "00 00", (0.0,)),
    ("EVAP_VAPOR_PRESSURE", "ff fc", (-1.0,)),  # two's complement -4, / 4
    ("EVAP_VAPOR_PRESSURE", "7f ff", (8191.75,)),  # 32767 / 4
    ("EVAP_VAPOR_PRESSURE_WIDE", "80 00", (-32768,)),
    ("EVAP_VAPOR_PRESSURE_ABSOLUTE", "00 c8", (1.0,)),  # 200 / 200
    ("CATALYST_TEMPERATURE_B1S1", "11 94", (410.0,)),  # 4500 / 10 - 40
    ("CONTROL_MODULE_VOLTAGE", "36 b0", (14.0,)),  # 0x36B0 = 14000; / 1000
    ("ABSOLUTE_LOAD", "00 ff", (100.0,)),  # 255 * 100 / 255
    ("COMMANDED_EQUIVALENCE_RATIO", "80 00", (1.0,)),  # 32768 * 2 / 65536
    ("FUEL_INJECTION_TIMING", "69 00", (0.0,)),  # 0x6900 = 26880; / 128 - 210
    ("ENGINE_FUEL_RATE", "01 2c", (15.0,)),  # 300 / 20
    ("ODOMETER", "00 01 e2 40", (12345.6,)),  # 0x0001E240 = 123456; / 10
    ("DRIVER_DEMAND_TORQUE", "7d", (0,)),  # 125 - 125
    ("ACTUAL_ENGINE_TORQUE", "e1", (100,)),  # 225 - 125
    ("ENGINE_REFERENCE_TORQUE", "01 90", (400,)),
    ("ENGINE_TORQUE_IDLE", "7d 82 87 8c 91", (0, 5, 10, 15, 20)),
    ("MONITOR_STATUS", "83 07 65 04", (1, 3)),  # A = 0x83: MIL on, 3 codes
    ("MONITOR_STATUS", "00 07 65 04", (0, 0)),
    ("FUEL_SYSTEM_STATUS", "02 00", (2, 0)),  # system 1 in closed loop, no system 2
    ("OBD_STANDARD", "06", (6,)),
    ("FUEL_TYPE", "04", (4,)),
    ("POWER_TAKE_OFF", "01", (1,)),
    ("O2_B1S1_VOLTAGE", "5a 80", (0.45, 0.0)),  # 90 / 200 V; trim at its zero
    ("O2_B2S4_VOLTAGE", "ff ff", (1.275, 99.21875)),
    ("O2_S1_WR_VOLTAGE", "80 00 80 00", (1.0, 4.0)),  # 32768 * 2 / 65536; 32768 * 8 / 65536
    ("O2_S8_WR_CURRENT", "80 00 81 00", (1.0, 1.0)),  # 0x8100 / 256 - 128 = 1 mA
    ("SHORT_O2_TRIM_B1", "80 00", (0.0, -100.0)),
    ("PIDS_SUPPORTED_01_20", "be 1f a8 13", ()),
]


@pytest.mark.parametrize(("name", "data", "expected"), CASES,
                         ids=[f"{n}:{d}" for n, d, _ in CASES])
def test_formulas(name: str, data: str, expected: tuple[int | float, ...]) -> None:
    got = value(name, data)
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-12)
    # ints where the formula is integral, floats elsewhere: samples are compared exactly
    assert [type(v) for v in got] == [type(v) for v in expected]


def test_percent_is_not_rounded() -> None:
    (load,) = value("ENGINE_LOAD", "80")
    assert load == pytest.approx(50.19607843137255, rel=1e-15)  # 12800 / 255
    assert load != round(load, 2)


def test_integral_formulas_give_ints() -> None:
    for name in ("VEHICLE_SPEED", "COOLANT_TEMPERATURE", "RUN_TIME", "DISTANCE_SINCE_CLEAR",
                 "BAROMETRIC_PRESSURE", "FUEL_PRESSURE"):
        pid = BY_NAME[name]
        assert all(type(v) is int for v in pid.decode(bytes(range(1, pid.size + 1)))), name
    for name in ("ENGINE_RPM", "MASS_AIR_FLOW", "ENGINE_LOAD", "CONTROL_MODULE_VOLTAGE",
                 "ODOMETER", "TIMING_ADVANCE"):
        pid = BY_NAME[name]
        assert all(type(v) is float for v in pid.decode(bytes(pid.size))), name


def test_units_and_names_of_the_main_pids() -> None:
    expected = {
        0x01: ("MONITOR_STATUS", ["MIL", "DTC_COUNT"]),
        0x04: ("ENGINE_LOAD", ["%"]), 0x05: ("COOLANT_TEMPERATURE", ["degC"]),
        0x0C: ("ENGINE_RPM", ["rpm"]), 0x0D: ("VEHICLE_SPEED", ["km/h"]),
        0x10: ("MASS_AIR_FLOW", ["g/s"]), 0x1F: ("RUN_TIME", ["s"]),
        0x21: ("DISTANCE_WITH_MIL", ["km"]), 0x2F: ("FUEL_LEVEL", ["%"]),
        0x31: ("DISTANCE_SINCE_CLEAR", ["km"]), 0x33: ("BAROMETRIC_PRESSURE", ["kPa"]),
        0x42: ("CONTROL_MODULE_VOLTAGE", ["V"]), 0x4D: ("TIME_WITH_MIL", ["min"]),
        0x5E: ("ENGINE_FUEL_RATE", ["L/h"]), 0xA6: ("ODOMETER", ["km"]),
    }
    for number, (name, units) in expected.items():
        pid = PIDS[number]
        assert pid.name == name
        if number == 0x01:
            assert [f.name for f in pid.fields] == units
        else:
            assert [f.unit for f in pid.fields] == units
            assert pid.fields[0].name == name


@pytest.mark.parametrize("pid", list(PIDS.values()), ids=lambda p: p.name)
def test_table_is_consistent(pid: pids.Pid) -> None:
    assert PIDS[pid.number] is pid and BY_NAME[pid.name] is pid
    assert re.fullmatch(r"[A-Z][A-Z0-9_]*", pid.name)
    assert pid.size in (1, 2, 4, 5)
    for data in (bytes(pid.size), b"\xff" * pid.size, bytes([0x80] * pid.size)):
        values = pid.decode(data)
        assert len(values) == len(pid.fields)
        for fld, v in zip(pid.fields, values, strict=True):
            assert fld.minimum is not None and fld.maximum is not None
            assert fld.minimum <= v <= fld.maximum, (fld.name, data.hex(), v)


def test_ranges_are_reached_at_the_ends() -> None:
    for number in (0x05, 0x0C, 0x0D, 0x0E, 0x10, 0x42, 0x44, 0x5E):
        pid = PIDS[number]
        (lo,) = pid.decode(bytes(pid.size))
        (hi,) = pid.decode(b"\xff" * pid.size)
        assert (lo, hi) == (pid.fields[0].minimum, pid.fields[0].maximum), pid.name


def test_field_names_are_unique_sample_names() -> None:
    names = [f.name for pid in PIDS.values() for f in pid.fields]
    assert len(names) == len(set(names))
    assert len(PIDS) >= 40


def test_decode_checks_the_length() -> None:
    with pytest.raises(ValueError, match=r"PID 0x0C \(ENGINE_RPM\) carries 2 data byte\(s\), "
                                         r"got 1: 1a"):
        BY_NAME["ENGINE_RPM"].decode(b"\x1a")
    with pytest.raises(ValueError, match="got 0"):
        BY_NAME["VEHICLE_SPEED"].decode(b"")


def test_bitmap_pids() -> None:
    for base in range(0, 0x100, 0x20):
        pid = PIDS[base]
        assert pid.size == 4 and pid.fields == ()
    assert PIDS[0x00].name == "PIDS_SUPPORTED_01_20"
    assert PIDS[0x20].name == "PIDS_SUPPORTED_21_40"
    assert PIDS[0xC0].name == "PIDS_SUPPORTED_C1_E0"


# -- supported PIDs ----------------------------------------------------------------------------


def test_supported_pids_bitmap() -> None:
    # BE = 1011 1110: PIDs 01, 03-07; 1F = 0001 1111: 0C-10; A8 = 1010 1000: 11, 13, 15;
    # 13 = 0001 0011: 1C, 1F, 20
    got = supported_pids(0x00, bytes.fromhex("be1fa813"))
    assert got == {0x01, 0x03, 0x04, 0x05, 0x06, 0x07, 0x0C, 0x0D, 0x0E, 0x0F, 0x10, 0x11,
                   0x13, 0x15, 0x1C, 0x1F, 0x20}
    assert supported_pids(0x20, bytes.fromhex("80000001")) == {0x21, 0x40}
    assert supported_pids(0xA0, bytes.fromhex("04000000")) == {0xA6}
    assert supported_pids(0x40, bytes(4)) == set()


def test_supported_pids_errors() -> None:
    with pytest.raises(ValueError, match="0x10 is not a supported-PIDs bitmap"):
        supported_pids(0x10, bytes(4))
    with pytest.raises(ValueError, match="must be 4 bytes, got 3: be 1f a8"):
        supported_pids(0x00, bytes.fromhex("be1fa8"))


# -- splitting replies -------------------------------------------------------------------------


def test_split_one_pid() -> None:
    assert split_mode01(bytes.fromhex("410c1af8")) == [(0x0C, b"\x1a\xf8")]


def test_split_several_pids() -> None:
    reply = bytes.fromhex("41 0c 1a f8 0d 32 05 7b 00 be 1f a8 13 a6 00 01 e2 40 01 83 07 65 04")
    assert split_mode01(reply) == [
        (0x0C, b"\x1a\xf8"), (0x0D, b"\x32"), (0x05, b"\x7b"), (0x00, bytes.fromhex("be1fa813")),
        (0xA6, bytes.fromhex("0001e240")), (0x01, bytes.fromhex("83076504")),
    ]
    decoded = [PIDS[pid].decode(data) for pid, data in split_mode01(reply)]
    assert decoded[:3] == [(1726.0,), (50,), (83,)]


@pytest.mark.parametrize(("reply", "message"), [
    ("", r"first byte must be 41\): \(empty\)"),
    ("7f 01 12", r"first byte must be 41\): 7f 01 12"),
    ("42 0c 1a f8", "first byte must be 41"),
    ("41", "holds no PID"),
    ("41 0c 1a", r"PID 0x0C truncated .*: 2 data byte\(s\) expected, 1 left"),
    ("41 0d 32 0c", r"PID 0x0C truncated .*: 2 data byte\(s\) expected, 0 left"),
    ("41 0d 32 fe 00", r"unknown PID 0xFE at byte 3 of reply 41 0d 32 fe 00"),
])
def test_split_mode01_errors(reply: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        split_mode01(bytes.fromhex(reply))


def test_split_mode02() -> None:
    reply = bytes.fromhex("42 02 00 01 43 0c 00 1a f8 05 00 7b")
    assert split_mode02(reply) == [
        (0x02, 0, b"\x01\x43"), (0x0C, 0, b"\x1a\xf8"), (0x05, 0, b"\x7b"),
    ]
    assert split_mode02(bytes.fromhex("42 0d 01 32")) == [(0x0D, 1, b"\x32")]


@pytest.mark.parametrize(("reply", "message"), [
    ("41 0c 00 1a f8", "first byte must be 42"),
    ("42", "holds no PID"),
    ("42 0c", "PID 0x0C without its frame number"),
    ("42 02 00 01", r"PID 0x02 truncated .*: 2 data byte\(s\) expected, 1 left"),
    ("42 fe 00 00", "unknown PID 0xFE"),
])
def test_split_mode02_errors(reply: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        split_mode02(bytes.fromhex(reply))


def test_mode01_request() -> None:
    assert mode01_request([0x0C]) == b"\x01\x0c"
    six = (0x0C, 0x0D, 0x05, 0x10, 0x11, 0x2F)
    assert mode01_request(six) == bytes.fromhex("01 0c 0d 05 10 11 2f")
    with pytest.raises(ValueError, match="at least one PID"):
        mode01_request([])
    with pytest.raises(ValueError, match="at most 6 PIDs, got 7"):
        mode01_request(range(1, 8))
    with pytest.raises(ValueError, match="PID 256 is not a byte"):
        mode01_request([256])


# -- names -------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["ENGINE_RPM", "engine_rpm", " Engine-RPM ", "0x0C", "0x0c",
                                  "0xC", "0C", "0c", "010C", "010c", "RPM", "rpm"])
def test_lookup_rpm(spec: str) -> None:
    assert lookup(spec) is PIDS[0x0C]


def test_lookup_aliases_and_fields() -> None:
    assert lookup("SPEED").name == "VEHICLE_SPEED"
    assert lookup("COOLANT_TEMP").name == "COOLANT_TEMPERATURE"
    assert lookup("DTC_COUNT").number == 0x01  # another field of PID 01
    assert lookup("00").name == "PIDS_SUPPORTED_01_20"
    assert lookup("A6").name == "ODOMETER"


def test_lookup_unknown() -> None:
    with pytest.raises(KeyError, match="unknown PID 'ENGIN_RPM'; did you mean ENGINE_RPM"):
        lookup("ENGIN_RPM")
    with pytest.raises(KeyError, match=r"PID 0xFE \('0xFE'\) is not one bavard knows"):
        lookup("0xFE")
    with pytest.raises(KeyError, match="unknown PID 'WHATEVER'") as info:
        lookup("WHATEVER")
    assert "did you mean" not in str(info.value)
    with pytest.raises(KeyError, match="unknown PID '020C'"):
        lookup("020C")  # mode 02 is not a mode 01 PID
