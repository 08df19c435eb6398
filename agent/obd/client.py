"""The OBD-II services (SAE J1979) on any transport: PIDs, trouble codes, VIN,
readiness, freeze frame, clearing.

Every answer is kept per ECU (its reply id): a car's engine (0x7E8) and
gearbox (0x7E9) answer the same functional request each for itself. A reply
whose bytes do not make sense is logged with the ECU and the bytes, and left
out; it never ends the caller's loop.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from agent.obd import dtc as dtcs
from agent.obd import pids as pid_table
from agent.obd.readiness import Readiness, decode_readiness
from agent.obd.transport import ENGINE_REQUEST, Reply, Transport
from agent.obd.vin import vin_from_reply

log = logging.getLogger(__name__)

# the trouble-code services: mode -> the name of what they hold
DTC_MODES = {0x03: "stored", 0x07: "pending", 0x0A: "permanent"}
BITMAPS = tuple(range(0x00, 0x100, 0x20))  # PIDs 00, 20, ... E0: which of the next 32 exist


@dataclass(frozen=True)
class FreezeFrame:
    """Mode 02, frame 0: the DTC that stored it and the PIDs' values at that moment."""

    ecu: int
    dtc: str | None
    values: dict[str, int | float]  # field name -> value


def ecu_name(ecu: int) -> str:
    """How people write an ECU's reply id: ``7E8``, ``18DAF110``."""
    return f"{ecu:03X}"


class ObdClient:
    """The services, on an open transport (which the client does not own)."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        #: how many ECUs answered 01 00 to everyone (``supported(None)``): a request to
        #: everyone then stops waiting once that many replied, instead of at its timeout
        self.ecus: int | None = None

    def everyone(self, payload: bytes) -> list[Reply]:
        """A functional request, every ECU's reply (as many as answered 01 00 expected)."""
        return self.transport.request(payload, ecu=None, expect=self.ecus)

    # -- mode 01 ------------------------------------------------------------------------

    def supported(self, ecu: int | None = None) -> dict[int, set[int]]:
        """The mode 01 PIDs each ECU supports (bitmaps 00, 20, ... followed while the
        last one says the next exists). ``ecu``: one ECU's request id, else all."""
        found: dict[int, set[int]] = {}
        base_ok: set[int] | None = None  # ECUs that said the next bitmap exists
        for base in BITMAPS:
            replies = self.transport.request(bytes((0x01, base)), ecu=ecu)
            more: set[int] = set()
            for reply in replies:
                if base_ok is not None and reply.ecu not in base_ok:
                    continue
                try:
                    pairs = pid_table.split_mode01(reply.data)
                except ValueError as exc:
                    log.warning("ECU %s: bad reply to 01 %02X (%s): %s", ecu_name(reply.ecu),
                                base, reply.data.hex(" "), exc)
                    continue
                for number, data in pairs:
                    if number != base:
                        continue
                    have = pid_table.supported_pids(base, data)
                    found.setdefault(reply.ecu, set()).update(have)
                    if base + 0x20 in have:
                        more.add(reply.ecu)
            if not more:
                break
            base_ok = more
        if ecu is None and found:
            self.ecus = len(found)
        return found

    def read(self, numbers: list[int], ecu: int | None = ENGINE_REQUEST) -> list[Reply]:
        """One mode 01 request for up to six PIDs; the replies as they came. The engine
        ECU is asked by default, physically, so that one reply is expected."""
        expect = 1 if ecu is not None else None
        return self.transport.request(pid_table.mode01_request(numbers), ecu=ecu,
                                      expect=expect)

    def read_all(self, numbers: list[int], ecu: int | None = ENGINE_REQUEST,
                 per_request: int = 6) -> list[Reply]:
        """Every PID of ``numbers``, ``per_request`` to a request; a request of several
        that nobody answers is asked again PID by PID (an ECU that refuses several in
        one answers NO DATA to the whole request, not only to the PIDs it lacks)."""
        replies: list[Reply] = []
        for i in range(0, len(numbers), per_request):
            chunk = numbers[i:i + per_request]
            replies.extend(self.read(chunk, ecu) or self.read_each(chunk, ecu))
        return replies

    def read_each(self, numbers: list[int], ecu: int | None = ENGINE_REQUEST
                  ) -> list[Reply]:
        """One request per PID (after a request of several that nobody answered);
        nothing more to ask when there is only one."""
        if len(numbers) < 2:
            return []
        return [reply for number in numbers for reply in self.read([number], ecu)]

    def readiness(self, ecu: int | None = None) -> dict[int, Readiness]:
        """PID 01 of each ECU: the MIL, the DTC count, the monitors."""
        out = {}
        replies = (self.everyone(b"\x01\x01") if ecu is None
                   else self.transport.request(b"\x01\x01", ecu=ecu, expect=1))
        for reply in replies:
            try:
                for number, data in pid_table.split_mode01(reply.data):
                    if number == 0x01:
                        out[reply.ecu] = decode_readiness(data)
            except ValueError as exc:
                log.warning("ECU %s: bad reply to 01 01 (%s): %s", ecu_name(reply.ecu),
                            reply.data.hex(" "), exc)
        return out

    # -- trouble codes ---------------------------------------------------------------------

    def dtcs(self, mode: int) -> dict[int, list[str]]:
        """The codes of one service (03 stored, 07 pending, 0A permanent), by ECU; an ECU
        that answers with none is listed with an empty list."""
        out: dict[int, list[str]] = {}
        for reply in self.everyone(bytes((mode,))):
            try:
                codes = dtcs.parse_dtc_reply(reply.data, self.transport.is_can)
            except ValueError as exc:
                log.warning("ECU %s: bad reply to %02X (%s): %s", ecu_name(reply.ecu), mode,
                            reply.data.hex(" "), exc)
                continue
            if reply.data[:1] == bytes((mode + 0x40,)):
                out.setdefault(reply.ecu, [])
                out[reply.ecu].extend(c for c in codes if c not in out[reply.ecu])
        return out

    def all_dtcs(self) -> dict[str, dict[int, list[str]]]:
        """Stored, pending and permanent codes: kind -> ECU -> codes."""
        return {name: self.dtcs(mode) for mode, name in DTC_MODES.items()}

    def clear(self) -> list[int]:
        """Mode 04: clear the stored and pending codes and the freeze frames (the MIL goes
        off, the readiness monitors restart). The ECUs that confirmed it."""
        return [r.ecu for r in self.everyone(b"\x04") if r.data[:1] == b"\x44"]

    def freeze_frame(self, numbers: list[int], ecu: int | None = ENGINE_REQUEST
                     ) -> FreezeFrame | None:
        """Frame 0 of mode 02: the code that stored it (PID 02) and ``numbers``' values."""
        replies = [r for r in self.transport.request(b"\x02\x02\x00", ecu=ecu,
                                                     expect=1 if ecu is not None else None)
                   if not refused(r)]
        if not replies:
            return None
        first = replies[0]
        code = None
        try:
            for number, _frame, data in pid_table.split_mode02(first.data):
                if number == 0x02 and data != b"\x00\x00":
                    code = dtcs.decode_dtc(data[0], data[1])
        except ValueError as exc:
            log.warning("ECU %s: bad freeze frame reply (%s): %s", ecu_name(first.ecu),
                        first.data.hex(" "), exc)
            return None
        values: dict[str, int | float] = {}
        for number in numbers:
            pid = pid_table.PIDS.get(number)
            if pid is None or not pid.fields:
                continue
            for reply in self.transport.request(bytes((0x02, number, 0x00)), ecu=ecu,
                                                expect=1 if ecu is not None else None):
                if reply.ecu != first.ecu or refused(reply):
                    continue  # another ECU's, or "not in the freeze frame"
                try:
                    for got, _frame, data in pid_table.split_mode02(reply.data):
                        if got == number:
                            values.update(zip((f.name for f in pid.fields), pid.decode(data),
                                              strict=True))
                except ValueError as exc:
                    log.warning("ECU %s: bad freeze frame value (%s): %s",
                                ecu_name(reply.ecu), reply.data.hex(" "), exc)
        return FreezeFrame(first.ecu, code, values)

    # -- vehicle information ------------------------------------------------------------------

    def vin(self) -> str | None:
        """The VIN (mode 09 PID 02), whole: the first ECU that gives a readable one."""
        for reply in self.everyone(b"\x09\x02"):
            try:
                return vin_from_reply(reply.data)
            except ValueError as exc:
                log.warning("ECU %s: unreadable VIN reply (%s): %s", ecu_name(reply.ecu),
                            reply.data.hex(" "), exc)
        return None


def refused(reply: Reply) -> bool:
    """A negative response (``7F <mode> <reason>``): the ECU says it will not answer
    that (0x12: not supported), which is an answer, not bad bytes."""
    return reply.data[:1] == b"\x7f"


def decode_mode01(reply: Reply) -> dict[str, int | float]:
    """The fields of a mode 01 reply, by name; ValueError on bytes that make no sense."""
    out: dict[str, int | float] = {}
    for number, data in pid_table.split_mode01(reply.data):
        pid = pid_table.PIDS[number]
        out.update(zip((f.name for f in pid.fields), pid.decode(data), strict=True))
    return out


__all__ = ["DTC_MODES", "FreezeFrame", "ObdClient", "decode_mode01", "ecu_name", "refused"]
