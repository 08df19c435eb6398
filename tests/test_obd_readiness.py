"""Readiness monitors of PID 01 (SAE J1979 bit layout), spark and compression ignition."""

from __future__ import annotations

import pytest

from agent.obd.readiness import Monitor, decode_readiness

SPARK_NAMES = ["misfire", "fuel system", "components", "catalyst", "heated catalyst",
               "evaporative system", "secondary air system", "A/C refrigerant", "oxygen sensor",
               "oxygen sensor heater", "EGR/VVT system"]
DIESEL_NAMES = ["misfire", "fuel system", "components", "NMHC catalyst",
                "NOx/SCR aftertreatment", "boost pressure", "exhaust gas sensor", "PM filter",
                "EGR/VVT system"]


def test_spark_ignition() -> None:
    # A = 83: MIL on, 3 codes. B = 07: spark (bit 3 clear), the three continuous monitors
    # supported (bits 0-2), none incomplete (bits 4-6 clear). C = 65 = 0110 0101: catalyst,
    # evaporative system, oxygen sensor, oxygen sensor heater supported. D = 04: evap incomplete
    r = decode_readiness(bytes.fromhex("83 07 65 04"))
    assert (r.mil, r.dtc_count, r.compression) == (True, 3, False)
    assert [m.name for m in r.monitors] == SPARK_NAMES
    assert {m.name for m in r.monitors if m.supported} == {
        "misfire", "fuel system", "components", "catalyst", "evaporative system",
        "oxygen sensor", "oxygen sensor heater"}
    assert r.incomplete() == ["evaporative system"]
    assert Monitor("catalyst", True, True) in r.monitors
    assert Monitor("evaporative system", True, False) in r.monitors
    assert Monitor("EGR/VVT system", False, False) in r.monitors


def test_continuous_incomplete_bits() -> None:
    # B = 57 = 0101 0111: all three supported, misfire (bit 4) and components (bit 6) incomplete
    r = decode_readiness(bytes.fromhex("00 57 00 00"))
    assert (r.mil, r.dtc_count) == (False, 0)
    assert r.incomplete() == ["misfire", "components"]
    assert r.monitors[1] == Monitor("fuel system", True, True)


def test_compression_ignition() -> None:
    # B = 0F: diesel (bit 3), continuous all supported and complete. C = EB = 1110 1011:
    # NMHC (0), NOx/SCR (1), boost (3), exhaust gas sensor (5), PM filter (6), EGR/VVT (7);
    # D = 42 = 0100 0010: NOx/SCR and PM filter incomplete
    r = decode_readiness(bytes.fromhex("01 0f eb 42"))
    assert (r.mil, r.dtc_count, r.compression) == (False, 1, True)
    assert [m.name for m in r.monitors] == DIESEL_NAMES
    assert all(m.supported for m in r.monitors)
    assert r.incomplete() == ["NOx/SCR aftertreatment", "PM filter"]


def test_diesel_reserved_bits_are_ignored() -> None:
    r = decode_readiness(bytes.fromhex("00 08 14 14"))  # only bits 2 and 4: reserved
    assert not any(m.supported for m in r.monitors)
    assert r.incomplete() == []


def test_unsupported_monitor_is_never_incomplete_nor_complete() -> None:
    # D says secondary air (bit 3) incomplete, C says it is not supported
    r = decode_readiness(bytes.fromhex("00 00 00 08"))
    assert Monitor("secondary air system", False, False) in r.monitors
    assert r.incomplete() == []


def test_dtc_count_uses_seven_bits() -> None:
    r = decode_readiness(bytes.fromhex("ff 00 00 00"))
    assert (r.mil, r.dtc_count) == (True, 127)
    assert decode_readiness(bytes.fromhex("7f 00 00 00")).mil is False


def test_all_supported_all_incomplete() -> None:
    r = decode_readiness(bytes.fromhex("00 77 ff ff"))
    assert r.incomplete() == SPARK_NAMES


@pytest.mark.parametrize("data", ["", "83 07 65", "41 01 83 07 65 04"])
def test_wrong_length(data: str) -> None:
    with pytest.raises(ValueError, match=r"PID 01 \(monitor status\) carries 4 data bytes, got"):
        decode_readiness(bytes.fromhex(data))
