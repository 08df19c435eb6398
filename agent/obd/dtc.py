"""Diagnostic trouble codes: the SAE J2012 five-character form and its two bytes.

On the wire (modes 03, 07, 0A, and PID 02 of mode 02) a code is two bytes::

    byte 1:  SS DD HHHH    SS: system (00 P powertrain, 01 C chassis, 10 B body,
                                        11 U network)
                           DD: first digit, 0-3
                           HHHH: second character, a hex digit
    byte 2:  HHHH HHHH     third and fourth characters, hex digits

so ``01 43`` is ``P0143``, ``41 23`` is ``C0123`` and ``C1 00`` is ``U0100``. ``00 00``
(``P0000``) is padding, never a real code.

The first digit says who defined the code: generic ones (SAE/ISO, the same meaning
on every vehicle) or manufacturer-specific ones; :func:`category` tells which from
the structure alone, :func:`describe` gives the text of the generic codes bavard knows.
"""

from __future__ import annotations

import re

from agent.obd.dtc_descriptions import DESCRIPTIONS

SYSTEMS = "PCBU"
SYSTEM_NAMES = {"P": "Powertrain", "C": "Chassis", "B": "Body", "U": "Network"}
#: first byte of the replies that carry DTCs: modes 03 (stored), 07 (pending), 0A (permanent)
DTC_REPLY_SERVICES = {0x43: "stored", 0x47: "pending", 0x4A: "permanent"}

_CODE = re.compile(r"[PCBU][0-3][0-9A-F]{3}")

# Powertrain subsystem groups (the third character) of the generic P0 and P2 ranges
_P0_GROUPS = {
    "0": "fuel and air metering and auxiliary emission controls",
    "1": "fuel and air metering",
    "2": "fuel and air metering (injector circuit)",
    "3": "ignition system or misfire",
    "4": "auxiliary emission controls",
    "5": "vehicle speed, idle control and auxiliary inputs",
    "6": "computer output circuit and auxiliary outputs",
    "7": "transmission",
    "8": "transmission",
    "9": "transmission",
    "A": "hybrid propulsion",
    "B": "hybrid propulsion",
    "C": "hybrid propulsion",
}
_P2_GROUPS = {
    "0": "fuel and air metering and auxiliary emission controls",
    "1": "fuel and air metering and auxiliary emission controls",
    "2": "fuel and air metering and auxiliary emission controls",
    "3": "ignition system or misfire",
    "4": "auxiliary emission controls",
    "5": "auxiliary inputs",
    "6": "computer output circuit and auxiliary outputs",
    "7": "transmission",
    "8": "transmission",
    "9": "fuel and air metering and auxiliary emission controls",
    "A": "fuel and air metering and auxiliary emission controls",
}


def decode_dtc(b1: int, b2: int) -> str:
    """The code of the two bytes ``b1 b2``: ``(0x01, 0x43)`` -> ``"P0143"``."""
    for byte in (b1, b2):
        if not 0 <= byte <= 0xFF:
            raise ValueError(f"DTC byte {byte} is not a byte (0x00-0xFF)")
    return f"{SYSTEMS[b1 >> 6]}{(b1 >> 4) & 0x3}{b1 & 0xF:X}{b2:02X}"


def _normalise(code: str) -> str:
    return code.strip().upper()


def is_dtc(code: str) -> bool:
    """Whether ``code`` is a well-formed SAE J2012 code (``P0143``; case ignored)."""
    return _CODE.fullmatch(_normalise(code)) is not None


def encode_dtc(code: str) -> bytes:
    """The two bytes of ``code``: ``"P0143"`` -> ``b"\\x01\\x43"``; ValueError when malformed."""
    text = _normalise(code)
    if _CODE.fullmatch(text) is None:
        raise ValueError(f"not a trouble code: {code!r} (expected a letter P, C, B or U, "
                         "a digit 0-3 and three hex digits, e.g. P0143)")
    first = (SYSTEMS.index(text[0]) << 6) | (int(text[1]) << 4) | int(text[2], 16)
    return bytes([first, int(text[3:], 16)])


def parse_dtc_reply(data: bytes, is_can: bool) -> list[str]:
    """The codes in one ECU's reply to mode 03, 07 or 0A (first byte 0x43, 0x47, 0x4A).

    On CAN (ISO 15765-4) the byte after the service byte is the number of codes;
    some ECUs and emulators leave it out, so it is recognised by the lengths: with
    it, ``2 * count`` bytes follow it; without it, an even number of bytes follows
    the service byte (both cannot hold at once). The older protocols never send
    it: pairs follow the service byte. ``00 00`` pairs (padding) are dropped; order
    is kept and a code repeated is kept once.
    """
    if not data or data[0] not in DTC_REPLY_SERVICES:
        raise ValueError(f"not a DTC reply (first byte must be 43, 47 or 4A): "
                         f"{data.hex(' ') or '(empty)'}")
    if is_can and len(data) >= 2 and data[1] * 2 == len(data) - 2:
        body = data[2:]
    elif (len(data) - 1) % 2 == 0:
        body = data[1:]
    elif is_can:
        raise ValueError(f"DTC reply {data.hex(' ')}: count byte says {data[1]} code(s) "
                         f"({data[1] * 2} bytes) but {len(data) - 2} byte(s) follow it")
    else:
        raise ValueError(f"DTC reply {data.hex(' ')}: odd number of bytes after the service "
                         f"byte ({len(data) - 1}), a code is cut short")
    codes: list[str] = []
    for i in range(0, len(body), 2):
        if body[i] == 0 and body[i + 1] == 0:
            continue
        code = decode_dtc(body[i], body[i + 1])
        if code not in codes:
            codes.append(code)
    return codes


def describe(code: str) -> str | None:
    """The standard description of a generic code in bavard's table, else None."""
    return DESCRIPTIONS.get(_normalise(code))


def is_generic(code: str) -> bool:
    """Whether ``code`` is defined by SAE/ISO (same meaning on every vehicle).

    Generic: P0, P2, P34-P3F, and the 0 and 3 first digits of C, B and U.
    Manufacturer-specific: P1, P30-P33, and the 1 and 2 first digits of C, B and U.
    """
    text = _normalise(code)
    if _CODE.fullmatch(text) is None:
        raise ValueError(f"not a trouble code: {code!r}")
    system, digit, third = text[0], text[1], text[2]
    if system == "P":
        if digit == "3":
            return third not in "0123"
        return digit in "02"
    return digit in "03"


def category(code: str) -> str:
    """What the structure of ``code`` says: system, who defined it, and for P0/P2 the group.

    ``"P0301"`` -> ``"Powertrain, generic: ignition system or misfire"``;
    ``"P1234"`` -> ``"Powertrain, manufacturer-specific"``; ``"U0100"`` -> ``"Network,
    generic"``. ValueError when ``code`` is not a trouble code.
    """
    text = _normalise(code)
    if _CODE.fullmatch(text) is None:
        raise ValueError(f"not a trouble code: {code!r} (expected e.g. P0143)")
    system = SYSTEM_NAMES[text[0]]
    if not is_generic(text):
        return f"{system}, manufacturer-specific"
    group: str | None = None
    if text[0] == "P" and text[1] == "0":
        group = _P0_GROUPS.get(text[2], "ISO/SAE reserved")
    elif text[0] == "P" and text[1] == "2":
        group = _P2_GROUPS.get(text[2], "ISO/SAE reserved")
    elif text[0] == "P" and text[1] == "3" and text[2] == "4":
        group = "cylinder deactivation"
    elif text[1] == "3":
        group = "ISO/SAE reserved"
    return f"{system}, generic: {group}" if group else f"{system}, generic"
