"""The VIN of mode 09 PID 02: every reply form bavard meets, VINs that begin and end in
0, 1 and 2 coming back whole (python-obd 0.7.3 strips those), and the ISO 3779 checks."""

from __future__ import annotations

import pytest

from agent.obd.vin import check_digit, vin_from_reply, vin_problems

# check digits worked out by hand: sum of value * weight (8 7 6 5 4 3 2 10 0 9 8 7 6 5 4 3 2),
# letters transliterated (A=1 ... H=8, J=1 ... N=5, P=7, R=9, S=2 ... Z=9), modulo 11
#   1FTFW1ET5DFC10312: 8+42+18+30+24+3+10+30+0+36+48+21+6+0+12+3+4 = 295 = 26 * 11 + 9 -> "9"
#   1HGCM82633A004352: 311 = 28 * 11 + 3 -> "3"
#   2FTFW1ET2DFC10310: 295 + 8 (first 1 -> 2) - 4 (last 2 -> 0) = 299 = 27 * 11 + 2 -> "2"
#   0FTFW1ETXDFC10311: 295 - 8 (first 1 -> 0) - 2 (last 2 -> 1) = 285 = 25 * 11 + 10 -> "X"
#   11111111111111111: the weights sum to 89 = 8 * 11 + 1 -> "1"; 222...: 178 -> "2"
EDGE_VINS = ["1FTFW1ET5DFC10312", "1FTFW1ET9DFC10312", "2FTFW1ET2DFC10310", "0FTFW1ETXDFC10311",
             "11111111111111111", "22222222222222222", "00000000000000000", "01201201201201201"]


@pytest.mark.parametrize("vin", EDGE_VINS)
@pytest.mark.parametrize("prefix", ["49 02 01", "49 02", "49 02 00 00", "49 02 01 00 00 00"],
                         ids=["can", "no-count", "padded", "count-and-padding"])
def test_vin_comes_back_whole(vin: str, prefix: str) -> None:
    assert vin_from_reply(bytes.fromhex(prefix) + vin.encode()) == vin


def test_python_obd_regression() -> None:
    # python-obd 0.7.3 returns "FTFW1ET5DFC103" for this one
    assert vin_from_reply(b"\x49\x02\x01" + b"1FTFW1ET5DFC10312") == "1FTFW1ET5DFC10312"


@pytest.mark.parametrize(("reply", "message"), [
    (b"", r"must begin with 49 02\): \(empty\)"),
    (b"\x49\x04\x01" + b"1FTFW1ET5DFC10312", "must begin with 49 02"),
    (b"\x41\x02\x01" + b"1FTFW1ET5DFC10312", "must begin with 49 02"),
    (b"\x49\x02\x01" + b"1FTFW1ET5DFC1031", r"16 byte\(s\) after the header .*, a VIN has 17"),
    (b"\x49\x02", r"0 byte\(s\) after the header"),
    (b"\x49\x02\x01\x00\x00", r"0 byte\(s\) after the header"),
    (b"\x49\x02\x00\x00\x00" + b"FTFW1ET5DFC1031", r"15 byte\(s\) after the header"),
    (b"\x49\x02\x02" + b"1FTFW1ET5DFC10312", r"18 byte\(s\) after the header"),
    (b"\x49\x02\x01\x41" + b"1FTFW1ET5DFC10312", r"18 byte\(s\) after the header"),
    (b"\x49\x02\x01" + b"1FTFW1ET5DFC1031\x00", r"not all printable ASCII \(00 at 17\)"),
    (b"\x49\x02\x01" + b"1FTFW1E\x00\x07DFC10312", r"\(00 at 8, 07 at 9\)"),
    (b"\x49\x02\x01" + b"1FTFW1ET5DFC1031\xc3", "c3 at 17"),
])
def test_bad_replies(reply: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        vin_from_reply(reply)


@pytest.mark.parametrize(("vin", "digit"), [
    ("1FTFW1ET5DFC10312", "9"),
    ("1HGCM82633A004352", "3"),
    ("1M8GDM9AXKP042788", "X"),
    ("2FTFW1ET2DFC10310", "2"),
    ("0FTFW1ETXDFC10311", "X"),
    ("11111111111111111", "1"),
    ("22222222222222222", "2"),
    ("1hgcm82633a004352", "3"),
])
def test_check_digit(vin: str, digit: str) -> None:
    assert check_digit(vin) == digit


def test_check_digit_rejects() -> None:
    with pytest.raises(ValueError, match="has 16"):
        check_digit("1HGCM82633A00435")
    with pytest.raises(ValueError, match="character 'O' at position 17"):
        check_digit("1HGCM82633A00435O")
    with pytest.raises(ValueError, match="character '-' at position 1 "):
        check_digit("-HGCM82633A004352")


def test_good_vins_have_no_problem() -> None:
    for vin in ("1HGCM82633A004352", "1M8GDM9AXKP042788", "1FTFW1ET9DFC10312",
                "2FTFW1ET2DFC10310", "11111111111111111"):
        assert vin_problems(vin) == [], vin


def test_problems() -> None:
    # the VIN: well formed, but its ninth character is not its check digit
    assert vin_problems("1FTFW1ET5DFC10312") == [
        "check digit 5 does not match 9 (required in North America only)"]
    # European VINs often have no check digit at all
    assert vin_problems("WVWZZZ1JZXW000001") == [
        "check digit Z does not match 0 (required in North America only)"]
    assert vin_problems("") == ["must be 17 characters (has 0)"]
    assert vin_problems("1HGCM82633A00435") == ["must be 17 characters (has 16)"]
    assert vin_problems("1HGCM82633A0043O2") == ["contains I, O or Q"]
    assert vin_problems("1HGCM82633A0043-2") == ["not alphanumeric"]
    assert vin_problems("1HGCM8263 A00435") == ["must be 17 characters (has 16)",
                                                "not alphanumeric"]
    assert vin_problems("1HGCM82633A00435é") == ["not alphanumeric"]
    assert vin_problems("QHGCM82633A00435") == ["must be 17 characters (has 16)",
                                               "contains I, O or Q"]


# ISO 3779's transliteration, letter by letter (I, O and Q are never used)
TRANSLITERATION = {"A": 1, "B": 2, "C": 3, "D": 4, "E": 5, "F": 6, "G": 7, "H": 8,
                   "J": 1, "K": 2, "L": 3, "M": 4, "N": 5, "P": 7, "R": 9,
                   "S": 2, "T": 3, "U": 4, "V": 5, "W": 6, "X": 7, "Y": 8, "Z": 9}


@pytest.mark.parametrize(("letter", "value"), TRANSLITERATION.items())
def test_each_letter_value(letter: str, value: int) -> None:
    # the letter alone in position 1 (weight 8), zeros elsewhere: 8 * value modulo 11
    remainder = 8 * value % 11
    assert check_digit(letter + "0" * 16) == ("X" if remainder == 10 else str(remainder))
    # and in position 10 (weight 9)
    remainder = 9 * value % 11
    assert check_digit("0" * 9 + letter + "0" * 7) == ("X" if remainder == 10 else str(remainder))
