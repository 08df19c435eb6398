"""An ELM327 (or clone) on a serial port or ``socket://``: bavard's own layer over pyserial.

Why not python-obd: it is GPL-2.0-only, it cuts VINs, it mixes ECUs, and it
cannot append the reply count or fall back on clones. This layer only talks
to the adapter; what the bytes mean is ``pids``/``dtc``/``vin``'s business.

What ``open`` does, in order (each step's why beside it in ``_initialise``):
find the baud rate (``ATI`` at 38400, 9600, 115200, 500000 until a ``>``
prompt answers), ``ATZ`` (reset), ``ATE0 ATL0 ATS0 ATH1``, ``ATAT1`` and
``ATST`` (adaptive timing, a shorter wait for ECUs that stay silent),
``ATSP<protocol>``, a first ``0100`` that makes the adapter find the
vehicle's protocol, and ``ATDPN`` to learn which one it found.

Clones: whatever the adapter refuses with ``?`` among the optional commands
(adaptive timing, ``ATST``, ``ATCP``, the reply count appended to a request,
even ``ATH1``) is remembered in ``capabilities`` and done without; an adapter
that keeps echoing has its echo stripped from every answer.

Errors (``agent.errors``): ``ObdAdapterError`` when the adapter fails (I/O
error or unplugged, no prompt before the deadline, garbage, refused a command
it must know, reset itself, said BUFFER FULL / LV RESET / ACT ALERT, STOPPED
twice); ``ObdVehicleError`` when the vehicle does not answer at all
(UNABLE TO CONNECT, BUS INIT: ...ERROR, CAN ERROR, BUS ERROR, FB ERROR, and
NO DATA to the first ``0100``). NO DATA to any later request is an empty list.
No other exception leaves this module for an I/O failure; a bad argument
(an empty payload, an unknown protocol) is a ``ValueError``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import serial

from agent.errors import ObdAdapterError, ObdVehicleError
from agent.obd import elm327_lines as lines_
from agent.obd.transport import Reply

log = logging.getLogger(__name__)

BAUDRATES = (38400, 9600, 115200, 500000)  # the order freediag tries them in
_POLL = 0.02  # seconds a single pyserial read may block: the deadline is ours
_MAX_ANSWER = 64 * 1024  # bytes: more than any answer, less than a stream of garbage
_FUNCTIONAL_11 = 0x7DF
_FUNCTIONAL_29 = 0x18DB33F1


@dataclass
class Capabilities:
    """What this adapter accepted at ``open`` (or later refused with ``?``)."""

    echo_off: bool = True  # False: it kept echoing after ATE0 (the echo is stripped)
    headers: bool = True  # ATH1: needed to keep ECUs apart
    adaptive_timing: bool = True  # ATAT1
    set_timeout: bool = True  # ATST xx
    count_suffix: bool = True  # "010C1": stop waiting after that many replies
    set_header: bool = True  # ATSH: physical addressing
    can_priority: bool = True  # ATCP: the 29-bit id's top bits


class Elm327:
    """An ELM327 adapter; implements ``agent.obd.transport.Transport``.

    Build it with ``Elm327.open(port, ...)``; the constructor opens nothing.
    ``port``: a device path (``/dev/ttyUSB0``, a udev symlink) or a pyserial URL
    (``socket://192.168.0.10:35000`` for Wi-Fi adapters). ``baudrate`` None:
    found by trying ``BAUDRATES``. ``protocol``: "auto" or an ELM327 protocol
    number "1".."9", "A".."C" ("6": ISO 15765-4 CAN 11/500). ``timeout``: seconds
    a request may wait for the prompt; ``search_timeout``: the same for the
    first ``0100``, during which the adapter searches the protocol (seconds
    on K-line). ``elm_timeout_ms``: the adapter's own wait for silent ECUs
    (``ATST``; adaptive timing shortens it further). Not thread-safe.
    """

    def __init__(self, port: str, *, baudrate: int | None = None, protocol: str = "auto",
                 timeout: float = 2.0, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, search_timeout: float = 15.0,
                 elm_timeout_ms: int = 100, probe_timeout: float = 0.5) -> None:
        wanted = "0" if protocol.strip().lower() in ("auto", "0") else protocol.strip().upper()
        if wanted not in lines_.PROTOCOLS:
            raise ValueError(f"ELM327 protocol {protocol!r}: 'auto' or one of 1-9, A-C")
        self.port = port
        self.baudrate = baudrate
        self.timeout = timeout
        self.search_timeout = search_timeout
        self.elm_timeout_ms = elm_timeout_ms
        self.probe_timeout = probe_timeout
        self._wanted_protocol = wanted
        self._clock = clock
        self._sleep = sleep
        self._serial: Any = None
        self._header: tuple[int | None, int] | None = None  # (priority, header) last set
        self._closed = False
        self._suffix_worked = False  # once the reply count worked, a "?" is per request
        self._no_suffix: set[bytes] = set()  # requests asked without the reply count
        self.capabilities = Capabilities()
        self.version = ""
        self.protocol_number = ""
        self.protocol = ""
        self.is_can = False
        self.description = f"ELM327 on {port} (not open)"
        #: the replies to the first 0100 (the engine's supported PIDs, every ECU that answered)
        self.first_replies: list[Reply] = []

    # -- opening -----------------------------------------------------------------------------

    @classmethod
    def open(cls, port: str, **kw: Any) -> Elm327:
        """Open ``port``, find the adapter and the vehicle; see the class for ``kw``.
        Raises ObdAdapterError (no adapter there) or ObdVehicleError (no vehicle).
        ``vehicle`` False: the adapter only (``bavard doctor`` reads its voltage
        whether a vehicle answers or not); :meth:`find_vehicle` does the rest."""
        vehicle = bool(kw.pop("vehicle", True))
        self = cls(port, **kw)
        try:
            self._open_port()
            self._initialise()
            if vehicle:
                self.find_vehicle()
        except BaseException:
            self.close()
            raise
        return self

    def _open_port(self) -> None:
        try:
            self._serial = serial.serial_for_url(
                self.port, baudrate=self.baudrate or BAUDRATES[0], timeout=_POLL,
                write_timeout=max(self.timeout, 1.0))
        except Exception as exc:  # SerialException, OSError, ValueError (bad URL)
            raise ObdAdapterError(f"{self.port}: cannot open: {exc}") from exc
        if self.baudrate is None:
            self.baudrate = self._detect_baudrate()

    def _detect_baudrate(self) -> int:
        """The first of ``BAUDRATES`` at which ``ATI`` brings back a ``>`` prompt.

        ``ATI`` rather than a bare CR: a real ELM327 repeats its last command on
        a bare CR, and whatever half line sits in its buffer only turns ATI into
        a ``?``, which still ends with the prompt we are looking for."""
        for baud in BAUDRATES:
            try:
                self._serial.baudrate = baud
                self._serial.reset_input_buffer()
                self._serial.write(b"ATI\r")
                raw = self._read_prompt(self.probe_timeout, "ATI")
            except ObdAdapterError as exc:
                if not isinstance(exc.__cause__, TimeoutError):
                    raise  # an I/O error: no other baud rate will help
                log.debug("%s: no prompt at %d baud", self.port, baud)
                continue
            except Exception as exc:
                raise ObdAdapterError(f"{self.port}: cannot set {baud} baud: {exc}") from exc
            if raw.rstrip().endswith(b">"):
                log.info("%s: adapter answers at %d baud", self.port, baud)
                return baud
        raise ObdAdapterError(
            f"{self.port}: no ELM327 prompt at {', '.join(map(str, BAUDRATES))} baud")

    def _initialise(self) -> None:
        caps = self.capabilities
        # reset: every setting back to the power-on defaults, whatever the last user left
        # (lenient: a real ELM327 may emit a stray byte or two while it resets)
        answer = self._at("ATZ", timeout=max(self.timeout, 5.0), required=False, lenient=True)
        if answer is None:  # a clone without ATZ: a warm start does the same
            answer = self._at("ATWS", timeout=max(self.timeout, 5.0), lenient=True)
        self._sleep(0.1)  # some clones print the prompt before they listen again
        version = lines_.find_version(answer or []) or lines_.find_version(
            self._at("ATI", required=False) or [])
        self.version = version or "ELM327 (unknown version)"
        self._at("ATE0", required=False)  # echo off (an echo that stays is stripped anyway)
        # no LF after CR (split_lines copes either way); its answer shows whether ATE0 worked
        _, echoed = self._exchange("ATL0", self.timeout)
        caps.echo_off = not echoed
        if echoed:
            log.warning("%s: adapter keeps echoing after ATE0: echo stripped", self.port)
        self._at("ATS0", required=False)  # no spaces: a third fewer bytes (both parse)
        caps.headers = self._at("ATH1", required=False) is not None  # ids: ECUs apart
        if not caps.headers:
            log.warning("%s: adapter refuses ATH1: replies cannot be told apart by ECU",
                        self.port)
        caps.adaptive_timing = self._at("ATAT1", required=False) is not None
        st = max(1, min(255, round(self.elm_timeout_ms / 4)))  # ATST counts 4 ms steps
        caps.set_timeout = self._at(f"ATST{st:02X}", required=False) is not None
        self._at(f"ATSP{self._wanted_protocol}")

    def find_vehicle(self) -> None:
        """``0100`` with the adapter's default (functional) header: the adapter
        searches the protocol; then ``ATDPN`` says which one it found."""
        found, _ = self._exchange("0100", self.search_timeout)
        sorted_ = lines_.classify("0100", found)  # UNABLE TO CONNECT & co. raise here
        if sorted_.refused:
            raise ObdAdapterError(f"{self.port}: adapter refused 0100")
        if sorted_.no_data or not sorted_.frames:
            raise ObdVehicleError(f"{self.port}: 0100: {' / '.join(found) or 'no answer'} "
                                  "(no vehicle answers: ignition off?)")
        dpn = self._at("ATDPN", required=False)
        if dpn:
            number = lines_.protocol_number(dpn[0])
        elif self._wanted_protocol != "0":
            number = self._wanted_protocol
        else:
            raise ObdAdapterError(f"{self.port}: adapter refused ATDPN")
        self.protocol_number = number
        self.protocol = lines_.PROTOCOLS[number]
        self.is_can = number in lines_.CAN_PROTOCOLS
        self.first_replies = self._parse(sorted_.frames, None)[0]
        where = self.port if "://" in self.port else f"{self.port} at {self.baudrate} baud"
        self.description = f"{self.version} on {where}"
        log.info("%s: %s, %s, %s", self.port, self.version, self.protocol, self.capabilities)

    # -- talking -----------------------------------------------------------------------------

    def command(self, at: str) -> list[str]:
        """Send a raw command (``AT RV``, ``AT DP``...) and return its answer's lines,
        echo stripped, ``?`` included: for the technician's console and tests.
        Changing the reply format (ATH0, ATCAF0) confuses later requests: reopen."""
        text = at.strip()
        lines, _ = self._exchange(text, self.timeout)
        if lines_.normalise(text).startswith(("ATSH", "ATCP", "ATZ", "ATWS", "ATD")):
            self._header = None
        return lines

    def battery_voltage(self) -> float | None:
        """The supply voltage at the OBD port (``AT RV``); None when refused."""
        answer = self._at("ATRV", required=False)
        return lines_.parse_voltage(answer) if answer else None

    def request(self, payload: bytes, *, ecu: int | None = None, expect: int | None = None,
                timeout: float | None = None) -> list[Reply]:
        """Send one service request; every ECU's whole reply in arrival order
        (see ``agent.obd.transport.Transport.request``).

        On a 29-bit bus ``ecu`` is a 29-bit request id (``0x18DA10F1``); an
        11-bit id there (``ENGINE_REQUEST`` from a caller that does not know the
        bus) is sent functionally. On legacy protocols ``ecu`` is ignored."""
        if not 1 <= len(payload) <= 7:
            raise ValueError(f"an ELM327 request carries 1 to 7 bytes, not {len(payload)}")
        wait = self.timeout if timeout is None else timeout
        if self.is_can and self.capabilities.set_header:
            self._address(ecu, wait)
        plain = payload.hex().upper()
        suffix = (self.capabilities.count_suffix and expect is not None and 1 <= expect <= 15
                  and payload not in self._no_suffix)
        stopped = 0
        for _ in range(4):  # at most: one STOPPED retry, one suffix fallback, one cut answer
            text = plain + (f"{expect:X}" if suffix else "")
            found, _echo = self._exchange(text, wait)
            sorted_ = lines_.classify(text, found)
            if sorted_.refused and suffix:
                suffix = False
                if self._suffix_worked:  # refused for this request only (e.g. several PIDs)
                    self._no_suffix.add(payload)
                    log.info("%s: adapter refuses the reply count on %s", self.port, text)
                else:
                    log.warning("%s: adapter refuses the reply count (%s): plain queries",
                                self.port, text)
                    self.capabilities.count_suffix = False
                continue
            if sorted_.refused:
                raise ObdAdapterError(f"{self.port}: adapter refused {text!r}")
            if sorted_.stopped and not sorted_.frames:
                stopped += 1
                if stopped > 1:
                    raise ObdAdapterError(f"{self.port}: {text}: STOPPED twice")
                log.info("%s: %s: STOPPED, asking again", self.port, text)
                continue
            replies, incomplete = self._parse(sorted_.frames, ecu)
            if incomplete and suffix:
                # the count counted frames, not answers: ask again, waiting for all
                log.info("%s: %s cut a multi-frame answer: asked again without it",
                         self.port, text)
                self._no_suffix.add(payload)
                suffix = False
                continue
            if suffix:
                self._suffix_worked = True
            return replies
        raise ObdAdapterError(f"{self.port}: {plain}: no usable answer")

    def _parse(self, frames: list[str], ecu: int | None) -> tuple[list[Reply], int]:
        if self.capabilities.headers:
            return lines_.parse_headers_on(frames, is_can=self.is_can)
        default = ecu + 8 if ecu is not None and ecu <= 0x7FF else 0x7E8
        return lines_.parse_headers_off(frames, ecu=default if self.is_can else 0x10)

    def _address(self, ecu: int | None, wait: float) -> None:
        """Point the adapter's header at one ECU or at all (only when it changes)."""
        bits29 = self.protocol_number in lines_.CAN_29BIT_PROTOCOLS
        if bits29:
            can_id = ecu if ecu is not None and ecu > 0x7FF else _FUNCTIONAL_29
            wanted: tuple[int | None, int] = ((can_id >> 24) & 0x1F, can_id & 0xFFFFFF)
        else:
            can_id = ecu if ecu is not None and ecu <= 0x7FF else _FUNCTIONAL_11
            wanted = (None, can_id)
        if wanted == self._header:
            return
        priority, header = wanted
        change_priority = priority is not None and self.capabilities.can_priority and (
            self._header is None or self._header[0] != priority)
        if change_priority and self._at(f"ATCP{priority:02X}", timeout=wait,
                                        required=False) is None:
            self.capabilities.can_priority = False  # most adapters default to 18 anyway
        command = f"ATSH{header:06X}" if bits29 else f"ATSH{header:03X}"
        if self._at(command, timeout=wait, required=False) is None:
            log.warning("%s: adapter refuses %s: every request goes functional",
                        self.port, command)
            self.capabilities.set_header = False
        self._header = wanted

    def _at(self, command: str, *, timeout: float | None = None, required: bool = True,
            lenient: bool = False) -> list[str] | None:
        """An AT command's answer lines; ``?`` -> None, or ObdAdapterError when required."""
        wait = self.timeout if timeout is None else timeout
        found, _ = self._exchange(command, wait, lenient=lenient)
        if "STOPPED" in found:  # still busy with an abandoned request: ask once more
            found, _ = self._exchange(command, wait, lenient=lenient)
        if found[-1:] == ["?"]:
            if required:
                raise ObdAdapterError(f"{self.port}: adapter refused {command}")
            log.info("%s: adapter refuses %s", self.port, command)
            return None
        return found

    def _exchange(self, command: str, timeout: float, *,
                  lenient: bool = False) -> tuple[list[str], bool]:
        """Write ``command``, read up to the prompt; the answer's lines (echo stripped)
        and whether there was an echo. Undecodable bytes are garbage (ObdAdapterError),
        unless ``lenient``: then they are dropped."""
        port = self._require_open()
        try:
            port.reset_input_buffer()  # a late answer to an abandoned request
            port.write(command.encode("ascii") + b"\r")
        except Exception as exc:  # SerialException, OSError, termios.error
            raise ObdAdapterError(f"{self.port}: {command}: {exc}") from exc
        raw = self._read_prompt(timeout, command)
        text = raw.decode("ascii", errors="replace")
        if lenient:
            text = "".join(c for c in text if " " <= c < "\ufffd" or c in "\r\n")
        elif "\ufffd" in text or any(c < " " and c not in "\r\n\t" for c in text):
            raise ObdAdapterError(f"{self.port}: {command}: garbage from the adapter: {raw[:40]!r}")
        found = lines_.split_lines(text)
        found, echoed = lines_.strip_echo(found, command)
        log.debug("%s: %s -> %s", self.port, command, found)
        return found, echoed

    def _read_prompt(self, timeout: float, command: str) -> bytes:
        """Bytes up to the ``>`` prompt; ObdAdapterError when it does not come in time.

        Bounded twice: by the deadline on the injected clock, and by a number of
        reads (pyserial blocks at most ``_POLL`` each), so a frozen test clock
        cannot make it spin for ever."""
        port = self._require_open()
        deadline = self._clock() + timeout
        buf = bytearray()
        reads = int(timeout / _POLL) * 4 + 50
        for _ in range(reads):
            try:
                chunk = port.read(port.in_waiting or 1)
            except Exception as exc:
                raise ObdAdapterError(f"{self.port}: {command}: {exc}") from exc
            buf += chunk
            if b">" in chunk:
                return bytes(buf[: buf.rindex(b">") + 1])
            if len(buf) > _MAX_ANSWER:
                raise ObdAdapterError(f"{self.port}: {command}: endless answer (garbage?)")
            if self._clock() >= deadline:
                break
        raise ObdAdapterError(
            f"{self.port}: {command}: no prompt within {timeout:g} s "
            f"(got {bytes(buf[:40])!r})") from TimeoutError(command)

    def _require_open(self) -> Any:
        if self._serial is None or self._closed:
            raise ObdAdapterError(f"{self.port}: adapter is closed")
        return self._serial

    def close(self) -> None:
        """Release the port. Safe to call more than once."""
        self._closed = True
        port, self._serial = self._serial, None
        if port is not None:
            try:
                port.close()
            except Exception as exc:  # an unplugged adapter may fail even to close
                log.debug("%s: close: %s", self.port, exc)

    def __enter__(self) -> Elm327:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Elm327 {self.description}>"
