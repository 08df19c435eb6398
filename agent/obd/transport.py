"""The interface every OBD-II adapter implements.

A request is a service payload without any header (``b"\x01\x0c"``: mode 01,
PID 0C); the replies are the ISO-TP payloads each ECU sent back, whole
(multi-frame answers reassembled), keyed by the ECU's reply id: 0x7E8..0x7EF
for 11-bit CAN, 0x18DAF1xx for 29-bit CAN, and for the older protocols
(J1850, ISO 9141, KWP) the ECU's source address.

Errors (agent.errors): ``ObdAdapterError`` when the adapter itself fails
(unplugged, garbage, refuses what it must do: reopen it with backoff),
``ObdVehicleError`` when the adapter works but the vehicle does not answer at
all (ignition off: UNABLE TO CONNECT, BUS INIT ERROR, CAN ERROR). A request
that no ECU answers (NO DATA, or silence until the timeout on native CAN) is
not an error: it returns an empty list.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

ENGINE_REQUEST = 0x7E0  # the engine ECU's physical request id (its replies: 0x7E8)
# the engine ECU's reply id: 11-bit CAN, 29-bit CAN, the older protocols' source address
ENGINE_REPLIES = (0x7E8, 0x18DAF110, 0x10)


def physical_request_id(reply_id: int) -> int | None:
    """The id to ask one ECU by, from its reply id on CAN: 0x7E8 -> 0x7E0,
    0x18DAF110 -> 0x18DA10F1; None for the older protocols' source addresses."""
    if 0x7E8 <= reply_id <= 0x7EF:
        return reply_id - 8
    if reply_id & 0x1FFFFF00 == 0x18DAF100:
        return 0x18DA00F1 | (reply_id & 0xFF) << 8
    return None


class Reply(NamedTuple):
    """One ECU's whole answer to a request."""

    ecu: int  # the reply id (0x7E8..0x7EF, 0x18DAF1xx), or the source address
    data: bytes  # the ISO-TP payload: b"\x41\x0c\x1a\xf8" for RPM


class Transport(Protocol):
    """An open OBD-II adapter. Not thread-safe: one request at a time."""

    #: one line for people: "ELM327 v1.5 on /dev/ttyUSB0 at 38400 baud" / "socketcan can0"
    description: str
    #: the vehicle protocol in use: "ISO 15765-4 (CAN 11/500)", "SAE J1850 PWM", ...
    protocol: str
    #: True on CAN protocols: mode 03/07/0A replies carry a count byte, 29-bit ids exist
    is_can: bool

    def request(self, payload: bytes, *, ecu: int | None = None, expect: int | None = None,
                timeout: float | None = None) -> list[Reply]:
        """Send ``payload``; return every reply, in the order they arrived.

        ``ecu``: the physical request id of one ECU (``ENGINE_REQUEST``), or None for
        a functional request that every ECU may answer. ``expect``: how many replies
        are expected, when known (an ELM327 then stops waiting at that count instead
        of at its timeout; native CAN stops collecting). ``timeout``: seconds to wait
        for the replies (None: the transport's own)."""
        ...

    def battery_voltage(self) -> float | None:
        """The supply voltage at the OBD port (ELM327 ``AT RV``), None where unknown."""
        ...

    def close(self) -> None:
        """Release the port or socket. Safe to call more than once."""
        ...
