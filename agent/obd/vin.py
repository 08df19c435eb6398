"""The vehicle identification number: read from mode 09 PID 02, and checked.

The reply is ``49 02`` then, on CAN, the number of data items (``01``) and the 17
ASCII characters. Some ECUs and emulators leave the count byte out, and legacy
ELM327 set-ups pad the characters with leading ``00`` bytes. Only those ``00``
bytes are removed: a VIN may begin or end with the *characters* ``0``, ``1`` or
``2`` (0x30-0x32), which stay (python-obd 0.7.3 strips them: ``1FTFW1ET5DFC10312``
comes back from it as ``FTFW1ET5DFC103``).

:func:`vin_problems` checks a VIN against ISO 3779: 17 characters, letters and
digits but never I, O or Q, and the check digit in position 9 (49 CFR 565: required
in North America, optional elsewhere, so a mismatch alone does not make a VIN bad).
"""

from __future__ import annotations

VIN_LENGTH = 17
#: ISO 3779 transliteration of letters to numbers for the check digit (I, O, Q never occur)
_LETTER_VALUES = {
    **dict(zip("ABCDEFGH", range(1, 9), strict=True)),
    **dict(zip("JKLMN", range(1, 6), strict=True)),
    "P": 7, "R": 9,
    **dict(zip("STUVWXYZ", range(2, 10), strict=True)),
}
#: weight of each position (position 9, the check digit itself, weighs 0)
_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)
_ALPHANUMERIC = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def vin_from_reply(data: bytes) -> str:
    """The VIN in one ECU's reply to mode 09 PID 02.

    Accepts ``49 02 01`` + 17 characters (CAN), ``49 02`` + 17 characters, and either
    with ``00`` padding before the characters. ValueError when the header is not
    ``49 02`` or what is left after the count byte and the padding is not 17
    printable ASCII characters.
    """
    if data[:2] != b"\x49\x02":
        raise ValueError(f"not a VIN reply (must begin with 49 02): {data.hex(' ') or '(empty)'}")
    body = data[2:]
    # before the characters: the count byte (01) on CAN, then 00 padding on legacy set-ups;
    # neither is a printable character, so removing them never eats a VIN character
    if body[:1] == b"\x01":
        body = body[1:]
    chars = body.lstrip(b"\x00")
    if len(chars) != VIN_LENGTH:
        raise ValueError(f"VIN reply {data.hex(' ')}: {len(chars)} byte(s) after the header "
                         f"(49 02, count 01) and 00 padding, a VIN has {VIN_LENGTH} characters")
    bad = [f"{byte:02x} at {i + 1}" for i, byte in enumerate(chars) if not 0x20 <= byte <= 0x7E]
    if bad:
        raise ValueError(f"VIN reply {data.hex(' ')}: the {VIN_LENGTH} characters are not all "
                         f"printable ASCII ({', '.join(bad)}): {chars!r}")
    return chars.decode("ascii")


def check_digit(vin: str) -> str:
    """The ISO 3779 / 49 CFR 565 check digit of ``vin`` ("0"-"9" or "X").

    Each character's value (digits as themselves, letters transliterated) times its
    position's weight, summed, modulo 11; 10 is written X. ValueError when ``vin``
    is not 17 letters and digits without I, O, Q.
    """
    text = vin.upper()
    if len(text) != VIN_LENGTH:
        raise ValueError(f"a VIN has {VIN_LENGTH} characters, {vin!r} has {len(vin)}")
    total = 0
    for position, (char, weight) in enumerate(zip(text, _WEIGHTS, strict=True), start=1):
        if char.isdigit() and char.isascii():
            value = int(char)
        elif char in _LETTER_VALUES:
            value = _LETTER_VALUES[char]
        else:
            raise ValueError(f"VIN {vin!r}: character {char!r} at position {position} "
                             "is not a VIN character (letters and digits except I, O, Q)")
        total += value * weight
    remainder = total % 11
    return "X" if remainder == 10 else str(remainder)


def vin_problems(vin: str) -> list[str]:
    """What is wrong with ``vin``; ``[]`` for a good one.

    The check digit is only verified once the VIN is otherwise well formed; its
    mismatch is listed too, though outside North America it is not required.
    """
    problems: list[str] = []
    if len(vin) != VIN_LENGTH:
        problems.append(f"must be {VIN_LENGTH} characters (has {len(vin)})")
    if not set(vin.upper()) <= _ALPHANUMERIC:
        problems.append("not alphanumeric")
    if set(vin.upper()) & set("IOQ"):
        problems.append("contains I, O or Q")
    if not problems:
        expected = check_digit(vin)
        if vin[8].upper() != expected:
            problems.append(f"check digit {vin[8]} does not match {expected} "
                            "(required in North America only)")
    return problems
