"""SAE J2012 trouble codes: two bytes <-> five characters, the replies of modes 03/07/0A
(with and without the ISO 15765-4 count byte), descriptions and categories."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.obd.dtc import (
    category,
    decode_dtc,
    describe,
    encode_dtc,
    is_dtc,
    is_generic,
    parse_dtc_reply,
)
from agent.obd.dtc_descriptions import DESCRIPTIONS

# byte 1 = SS DD HHHH: system, first digit, second character; byte 2: two hex characters
KNOWN = [
    (0x01, 0x43, "P0143"),  # 00 00 0001
    (0x03, 0x00, "P0300"),
    (0x41, 0x23, "C0123"),  # 01 00 0001
    (0x81, 0x23, "B0123"),  # 10 00 0001
    (0xC1, 0x00, "U0100"),  # 11 00 0001
    (0x12, 0x34, "P1234"),  # 00 01 0010
    (0x24, 0x20, "P2420"),  # 00 10 0100
    (0x3F, 0xFF, "P3FFF"),  # 00 11 1111
    (0x9A, 0xBC, "B1ABC"),  # 10 01 1010
    (0xE0, 0x01, "U2001"),  # 11 10 0000
    (0x0A, 0x0F, "P0A0F"),
    (0x00, 0x00, "P0000"),
]


@pytest.mark.parametrize(("b1", "b2", "code"), KNOWN)
def test_decode_and_encode(b1: int, b2: int, code: str) -> None:
    assert decode_dtc(b1, b2) == code
    assert encode_dtc(code) == bytes([b1, b2])
    assert is_dtc(code)


def test_encode_accepts_lower_case_and_spaces() -> None:
    assert encode_dtc(" p0a0f ") == b"\x0a\x0f"
    assert is_dtc("u0100")


@pytest.mark.parametrize("bad", ["", "P", "P014", "P01433", "X0143", "P4143", "P0G43",
                                 "0143", "P-0143", "PO143"])
def test_encode_rejects(bad: str) -> None:
    assert not is_dtc(bad)
    with pytest.raises(ValueError, match="not a trouble code"):
        encode_dtc(bad)


def test_decode_rejects_non_bytes() -> None:
    with pytest.raises(ValueError, match="DTC byte 256 is not a byte"):
        decode_dtc(256, 0)
    with pytest.raises(ValueError, match="DTC byte -1 is not a byte"):
        decode_dtc(0, -1)


@given(st.integers(0, 255), st.integers(0, 255))
def test_round_trip_from_bytes(b1: int, b2: int) -> None:
    code = decode_dtc(b1, b2)
    assert is_dtc(code)
    assert encode_dtc(code) == bytes([b1, b2])


@given(st.from_regex(r"[PCBU][0-3][0-9A-F]{3}", fullmatch=True))
def test_round_trip_from_codes(code: str) -> None:
    b1, b2 = encode_dtc(code)
    assert decode_dtc(b1, b2) == code


# -- replies -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("reply", "is_can", "codes"), [
    # CAN with the count byte (2 codes)
    ("43 02 01 43 03 00", True, ["P0143", "P0300"]),
    # CAN without it, as elm327-emulator and some ECUs send it
    ("43 01 43 03 00", True, ["P0143", "P0300"]),
    ("43 01 33 00 00 00 00", True, ["P0133"]),
    # CAN, no code stored: count 0
    ("43 00", True, []),
    # a bare service byte: nothing
    ("43", True, []),
    ("43", False, []),
    # legacy protocols: three pairs per message, 00 00 padding dropped
    ("43 01 43 03 00 00 00", False, ["P0143", "P0300"]),
    ("43 00 00 00 00 00 00", False, []),
    # pending and permanent
    ("47 01 c1 00", True, ["U0100"]),
    ("4a 01 04 20", True, ["P0420"]),
    ("47 c1 00", True, ["U0100"]),
    # duplicates kept once, order kept
    ("43 04 03 00 01 43 03 00 41 23", True, ["P0300", "P0143", "C0123"]),
    # a padding pair in the middle
    ("43 03 01 43 00 00 03 00", True, ["P0143", "P0300"]),
])
def test_parse_dtc_reply(reply: str, is_can: bool, codes: list[str]) -> None:
    assert parse_dtc_reply(bytes.fromhex(reply), is_can) == codes


def test_emulator_reply_from_the_brief() -> None:
    assert parse_dtc_reply(b"\x43\x02\x01\x43\x03\x00", True) == ["P0143", "P0300"]


def test_count_byte_only_on_can() -> None:
    # the same bytes: on CAN, 02 is the count; on the older protocols 02 01 is a code
    # and the odd byte left over is an error
    assert parse_dtc_reply(bytes.fromhex("43 02 01 43 03 00"), True) == ["P0143", "P0300"]
    with pytest.raises(ValueError, match=r"odd number of bytes after the service byte \(5\)"):
        parse_dtc_reply(bytes.fromhex("43 02 01 43 03 00"), False)


@pytest.mark.parametrize(("reply", "is_can", "message"), [
    ("", True, r"first byte must be 43, 47 or 4A\): \(empty\)"),
    ("41 0c 1a f8", True, r"first byte must be 43, 47 or 4A\): 41 0c 1a f8"),
    ("7f 03 11", True, "first byte must be 43"),
    ("43 05 01 43 03 00", True, r"count byte says 5 code\(s\) \(10 bytes\) but 4 byte\(s\) follow"),
    ("43 01 43 03", False, r"odd number of bytes .*\(3\), a code is cut short"),
])
def test_parse_dtc_reply_errors(reply: str, is_can: bool, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_dtc_reply(bytes.fromhex(reply), is_can)


# -- descriptions ------------------------------------------------------------------------------

REQUIRED = [
    "P0101", "P0113", "P0117", "P0118", "P0128", "P0130", "P0131", "P0132", "P0133", "P0134",
    "P0135", "P0136", "P0137", "P0138", "P0139", "P0140", "P0141", "P0143", "P0171", "P0172",
    "P0174", "P0175", "P0196", "P0300", "P0301", "P0302", "P0303", "P0304", "P0305", "P0306",
    "P0307", "P0308", "P0325", "P0335", "P0340", "P0420", "P0430", "P0440", "P0442", "P0455",
    "P0456", "P0500", "P0505", "P0562", "P0563", "P0700", "P0715", "P0720", "P0730", "P0740",
    "P0750", "U0100", "U0101", "U0121", "U0140", "U0155", "C0035", "C0040", "C0045", "C0050",
]


def test_descriptions_cover_the_common_codes() -> None:
    missing = [code for code in REQUIRED if code not in DESCRIPTIONS]
    assert missing == []


def test_descriptions_are_generic_well_formed_codes() -> None:
    assert 150 <= len(DESCRIPTIONS) <= 400
    for code, text in DESCRIPTIONS.items():
        assert is_dtc(code) and code == code.upper(), code
        assert is_generic(code), code
        assert text and text == text.strip() and text[0].isupper(), code


def test_describe() -> None:
    assert describe("P0420") == "Catalyst system efficiency below threshold (bank 1)"
    assert describe("p0300") == "Random / multiple cylinder misfire detected"
    assert describe("P0304") == "Cylinder 4 misfire detected"
    assert describe("P0143") == "O2 sensor circuit low voltage (B1S3)"
    assert describe("P0141") == "O2 sensor heater circuit (B1S2)"
    assert describe("P0171") == "System too lean (bank 1)"
    assert describe("U0100") == "Lost communication with ECM / PCM A"
    assert describe("C0035") == "Left front wheel speed sensor circuit"
    assert describe("P1234") is None  # manufacturer-specific: never described
    assert describe("P0FFF") is None
    assert describe("nonsense") is None


# -- categories --------------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "expected"), [
    ("P0016", "Powertrain, generic: fuel and air metering and auxiliary emission controls"),
    ("P0171", "Powertrain, generic: fuel and air metering"),
    ("P0201", "Powertrain, generic: fuel and air metering (injector circuit)"),
    ("P0301", "Powertrain, generic: ignition system or misfire"),
    ("P0420", "Powertrain, generic: auxiliary emission controls"),
    ("P0500", "Powertrain, generic: vehicle speed, idle control and auxiliary inputs"),
    ("P0606", "Powertrain, generic: computer output circuit and auxiliary outputs"),
    ("P0700", "Powertrain, generic: transmission"),
    ("P0900", "Powertrain, generic: transmission"),
    ("P0A80", "Powertrain, generic: hybrid propulsion"),
    ("P0F00", "Powertrain, generic: ISO/SAE reserved"),
    ("P2096", "Powertrain, generic: fuel and air metering and auxiliary emission controls"),
    ("P2300", "Powertrain, generic: ignition system or misfire"),
    ("P2700", "Powertrain, generic: transmission"),
    ("P1234", "Powertrain, manufacturer-specific"),
    ("P3000", "Powertrain, manufacturer-specific"),
    ("P33FF", "Powertrain, manufacturer-specific"),
    ("P3400", "Powertrain, generic: cylinder deactivation"),
    ("P3900", "Powertrain, generic: ISO/SAE reserved"),
    ("C0035", "Chassis, generic"),
    ("C1234", "Chassis, manufacturer-specific"),
    ("B0001", "Body, generic"),
    ("B2AAA", "Body, manufacturer-specific"),
    ("U0100", "Network, generic"),
    ("U1000", "Network, manufacturer-specific"),
    ("U3000", "Network, generic: ISO/SAE reserved"),
    ("u0100", "Network, generic"),
])
def test_category(code: str, expected: str) -> None:
    assert category(code) == expected


def test_category_rejects_non_codes() -> None:
    with pytest.raises(ValueError, match="not a trouble code: 'P9999'"):
        category("P9999")
    with pytest.raises(ValueError, match="not a trouble code"):
        is_generic("")
