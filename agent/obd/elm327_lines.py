"""What an ELM327's answer lines mean: pure functions, no I/O.

An ELM327 answers a request with text lines ended by ``\\r`` and a ``>`` prompt.
With headers on (``AT H1``) each line is one frame as the adapter received it:

* ISO 15765-4, 11-bit: ``7E8 06 41 0C 1A F8 00 00`` or ``7E806410C1AF8`` (``AT S0``),
  the ISO-TP PCI byte first (with CAN auto formatting, the default, the padding
  may be dropped: the PCI byte gives the length, not the line);
* ISO 15765-4, 29-bit: ``18 DA F1 10 06 41 0C 1A F8``;
* SAE J1850 / ISO 9141 / ISO 14230: ``48 6B 10 41 0C 1A F8 C5``: priority,
  target, source, the data and a checksum.

Without spaces, 11-bit lines have an odd number of hex digits (3 + 2n) and
29-bit lines an even one (8 + 2n): the layout is read from the line itself, so
user CAN protocols (B, C) whose id width was changed still parse.

With headers off (a clone that refuses ``AT H1``), single frames come without
their PCI byte and multi-frame answers as ``014`` / ``0: 49 02 01 ...`` /
``1: ...``: the ECUs cannot be told apart and every reply is attributed to the
one the request was addressed to.

The other lines are the adapter's own words; ``classify`` maps each to what
bavard does about it (see ``VEHICLE_ERRORS`` and ``ADAPTER_ERRORS``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from agent.errors import ObdAdapterError, ObdVehicleError
from agent.obd.transport import Reply

log = logging.getLogger(__name__)

#: ``AT DPN`` numbers -> names (the ELM327 data sheet's list)
PROTOCOLS: dict[str, str] = {
    "0": "automatic",
    "1": "SAE J1850 PWM (41.6 kbaud)",
    "2": "SAE J1850 VPW (10.4 kbaud)",
    "3": "ISO 9141-2 (5 baud init)",
    "4": "ISO 14230-4 KWP (5 baud init)",
    "5": "ISO 14230-4 KWP (fast init)",
    "6": "ISO 15765-4 (CAN 11/500)",
    "7": "ISO 15765-4 (CAN 29/500)",
    "8": "ISO 15765-4 (CAN 11/250)",
    "9": "ISO 15765-4 (CAN 29/250)",
    "A": "SAE J1939 (CAN 29/250)",
    "B": "user CAN 1 (11/125)",
    "C": "user CAN 2 (11/50)",
}
CAN_PROTOCOLS = frozenset("6789ABC")
CAN_29BIT_PROTOCOLS = frozenset("79A")

#: the vehicle does not answer at all: the adapter is fine, wait and ask again.
#: UNABLE TO CONNECT / BUS INIT...ERROR: no protocol found (ignition off);
#: CAN ERROR / BUS ERROR / FB ERROR: the bus itself is silent, shorted or not
#: wired (adapter not in the port, wrong protocol forced).
VEHICLE_ERRORS = ("UNABLE TO CONNECT", "CAN ERROR", "BUS ERROR", "FB ERROR")
#: the adapter is not in a state to go on: reopen (which re-initialises it).
#: BUFFER FULL: its receive buffer overflowed; LV RESET: a low-voltage reset
#: lost every setting (echo, headers...); ACT ALERT: it is about to sleep for
#: lack of activity; ERRxx: an internal error; an ``ELM327 v...`` banner in the
#: middle of a request: it reset itself.
ADAPTER_ERRORS = ("BUFFER FULL", "LV RESET", "ACT ALERT")
#: one frame received damaged (bad checksum, CAN error frame): the line is
#: dropped with a warning, the rest of the answer stands.
DAMAGED_LINES = ("DATA ERROR", "<DATA ERROR", "<RX ERROR", "RX ERROR")
#: progress chatter, no meaning for the answer
CHATTER = ("SEARCHING...", "SEARCHING", "OK", "STOPPED")

_HEX = re.compile(r"^[0-9A-F]+$")
_CAF_INDEX = re.compile(r"^([0-9A-F]):\s*([0-9A-F ]*)$")
_NEGATIVE_PENDING = 0x78  # ISO 14229 "response pending": not the answer, the ECU asks to wait


def protocol_number(dpn: str) -> str:
    """``AT DPN`` -> the protocol number: "A6" (found by the automatic search) -> "6"."""
    text = dpn.strip().upper()
    if len(text) == 2 and text[0] == "A":
        text = text[1]
    if text not in PROTOCOLS:
        raise ObdAdapterError(f"AT DPN answered {dpn!r}: not a protocol number")
    return text


def split_lines(text: str) -> list[str]:
    """The answer's lines: split on CR (and LF, for adapters that keep ``AT L1``),
    stripped, blank lines and the prompt dropped."""
    lines = []
    for raw in re.split(r"[\r\n]+", text.replace(">", "\r")):
        line = raw.strip()
        if line:
            lines.append(line)
    return lines


def normalise(command: str) -> str:
    """A command as the adapter compares it: upper case, no spaces."""
    return "".join(command.split()).upper()


def strip_echo(lines: list[str], command: str) -> tuple[list[str], bool]:
    """Drop the echo of ``command`` (adapters that keep ``AT E1`` or refuse ``AT E0``).
    Returns the lines left and whether an echo was there."""
    if lines and normalise(lines[0]) == normalise(command):
        return lines[1:], True
    return lines, False


@dataclass
class Classified:
    """An answer sorted: frames to parse and the adapter's own words."""

    frames: list[str] = field(default_factory=list)
    no_data: bool = False
    refused: bool = False  # "?"
    stopped: bool = False
    damaged: int = 0


def classify(command: str, lines: Iterable[str]) -> Classified:
    """Sort an OBD request's answer lines; raise for the ones that end the request.

    ``ObdVehicleError`` for ``VEHICLE_ERRORS`` and ``BUS INIT: ...ERROR``;
    ``ObdAdapterError`` for ``ADAPTER_ERRORS``, ``ERRxx``, a reset banner, and
    garbage (a line that is neither hex data nor a known message)."""
    out = Classified()
    for line in lines:
        upper = line.upper()
        if upper == "NO DATA":
            out.no_data = True
        elif upper == "?":
            out.refused = True
        elif upper == "STOPPED":
            out.stopped = True
        elif upper in CHATTER:
            continue
        elif upper.startswith("BUS INIT"):
            if "ERROR" in upper:
                raise ObdVehicleError(f"{command}: {line} (no answer from the vehicle)")
        elif any(upper.startswith(e) for e in VEHICLE_ERRORS):
            raise ObdVehicleError(f"{command}: {line}")
        elif any(upper.startswith(e) for e in ADAPTER_ERRORS) or re.match(r"^ERR\d", upper):
            raise ObdAdapterError(f"{command}: adapter says {line}")
        elif upper.startswith("ELM") or upper.startswith("STN"):
            raise ObdAdapterError(f"{command}: the adapter reset itself ({line})")
        elif any(upper.endswith(e) or upper.startswith(e) for e in DAMAGED_LINES):
            out.damaged += 1
            log.warning("%s: damaged frame dropped: %s", command, line)
        elif _HEX.match(upper.replace(" ", "")) or _CAF_INDEX.match(upper):
            out.frames.append(upper)
        else:
            raise ObdAdapterError(f"{command}: garbage from the adapter: {line[:60]!r}")
    return out


def _hex_bytes(text: str, line: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError as exc:
        raise ObdAdapterError(f"garbage from the adapter: {line[:60]!r}") from exc


def split_header(line: str, *, is_can: bool) -> tuple[int, bytes]:
    """A headers-on line -> (header, bytes after it).

    CAN: the 11-bit id (3 digits) or 29-bit id (8 digits) is told apart by the
    line's own shape; legacy: the 3 header bytes packed into an int (priority,
    target, source), the checksum still on the data."""
    if " " in line:
        tokens = line.split()
        if is_can and len(tokens[0]) == 3:
            return int(tokens[0], 16), _hex_bytes("".join(tokens[1:]), line)
        flat = "".join(tokens)
    else:
        flat = line
    width = (3 if len(flat) % 2 else 8) if is_can else 6
    if len(flat) <= width or (len(flat) - width) % 2:
        raise ObdAdapterError(f"garbage from the adapter: {line[:60]!r}")
    return int(flat[:width], 16), _hex_bytes(flat[width:], line)


@dataclass
class _Partial:
    """One ECU's multi-frame answer being put together."""

    length: int
    data: bytearray
    next_seq: int = 1


def reassemble_can(frames: Iterable[tuple[int, bytes]]) -> tuple[list[Reply], int]:
    """ISO-TP frames (id, PCI + data), several ECUs interleaved -> whole replies, in
    the order their first frame arrived; also the number of multi-frame answers
    left incomplete (a frame lost, or the adapter stopped at the reply count).

    Flow-control frames are skipped; a frame out of sequence drops that answer
    with a warning; an ISO 14229 "response pending" (7F xx 78) is no answer."""
    slots: list[tuple[int, bytes] | _Partial | None] = []
    open_: dict[int, int] = {}  # ecu -> index in slots of its partial answer
    for ecu, raw in frames:
        if not raw:
            continue
        kind, low = raw[0] >> 4, raw[0] & 0x0F
        if kind == 0 and low and len(raw) >= low + 1:
            payload = raw[1 : 1 + low]
            if not (len(payload) == 3 and payload[0] == 0x7F and payload[2] == _NEGATIVE_PENDING):
                slots.append((ecu, payload))
        elif kind == 1 and len(raw) >= 2:
            if ecu in open_:
                log.warning("ECU %X: new first frame before the last answer ended", ecu)
                slots[open_[ecu]] = None
            open_[ecu] = len(slots)
            slots.append(_Partial(((low << 8) | raw[1]), bytearray(raw[2:])))
        elif kind == 2 and ecu in open_:
            part = slots[open_[ecu]]
            assert isinstance(part, _Partial)
            if low != part.next_seq:
                log.warning("ECU %X: frame %d where %d was due: answer dropped",
                            ecu, low, part.next_seq)
                slots[open_.pop(ecu)] = None
                continue
            part.data += raw[1:]
            part.next_seq = (part.next_seq + 1) & 0x0F
            if len(part.data) >= part.length:
                slots[open_.pop(ecu)] = (ecu, bytes(part.data[: part.length]))
        elif kind == 3:
            continue  # flow control (ours, echoed by some adapters)
        else:
            log.warning("ECU %X: frame %s does not fit ISO-TP: dropped", ecu, raw.hex())
    replies = [Reply(s[0], s[1]) for s in slots if isinstance(s, tuple)]
    return replies, len(open_)


def parse_headers_on(frames: list[str], *, is_can: bool) -> tuple[list[Reply], int]:
    """Headers-on lines -> replies (and the count of incomplete multi-frame answers).

    Legacy protocols: one reply per line, keyed by the source address, the
    checksum dropped (a multi-line legacy answer, such as a VIN in five
    messages, comes back as five replies in order: joining them is the
    service's business, their layout being per service)."""
    parsed = [split_header(line, is_can=is_can) for line in frames]
    if is_can:
        return reassemble_can(parsed)
    replies = []
    for header, data in parsed:
        if len(data) < 2:
            raise ObdAdapterError(f"a frame too short for a legacy protocol: {header:06X}")
        replies.append(Reply(header & 0xFF, data[:-1]))
    return replies, 0


def parse_headers_off(frames: list[str], *, ecu: int) -> tuple[list[Reply], int]:
    """Headers-off lines (CAN auto formatting on) -> replies, all from ``ecu``.

    ``410C1AF8``: a whole answer; ``014`` then ``0: ...`` ``1: ...``: one
    multi-frame answer of 0x014 bytes."""
    replies: list[Reply] = []
    length: int | None = None
    buf = bytearray()
    for line in frames:
        indexed = _CAF_INDEX.match(line)
        if indexed and length is not None:
            buf += _hex_bytes(indexed.group(2).replace(" ", ""), line)
            if len(buf) >= length:
                replies.append(Reply(ecu, bytes(buf[:length])))
                length, buf = None, bytearray()
        elif indexed:
            raise ObdAdapterError(f"a continuation line with no length line before it: {line!r}")
        elif len(line) == 3 and length is None:
            length = int(line, 16)
        else:
            replies.append(Reply(ecu, _hex_bytes(line.replace(" ", ""), line)))
    return replies, int(length is not None)


def parse_voltage(lines: list[str]) -> float | None:
    """``AT RV`` -> volts: "12.4V" -> 12.4; None when there is no number."""
    for line in lines:
        match = re.match(r"^(\d{1,2}(?:\.\d+)?)\s*V?$", line.strip(), re.IGNORECASE)
        if match:
            return float(match.group(1))
    return None


def find_version(lines: Iterable[str]) -> str | None:
    """The adapter's banner ("ELM327 v1.5") among ``AT Z`` / ``AT I`` answer lines."""
    for line in lines:
        match = re.search(r"(ELM327|STN\d+|OBDLink)\S*\s*v?[\d.]+\S*", line, re.IGNORECASE)
        if match:
            return match.group(0)
    return None
