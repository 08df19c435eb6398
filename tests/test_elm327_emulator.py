"""bavard's ELM327 layer against elm327-emulator (a real ELM327 peer) on a pty.

Skipped when the emulator's ``elm`` executable is not installed (a test-only
dependency: CC-BY-NC-SA). Quirks of the emulator: tests/helpers/elm_emulator.py.
"""

from __future__ import annotations

import time

import pytest
from helpers.elm_emulator import ElmEmulator, elm_emulator  # noqa: F401  (the fixture)

from agent.errors import ObdAdapterError
from agent.obd.elm327 import Elm327
from agent.obd.transport import ENGINE_REQUEST, Reply

pytestmark = pytest.mark.slow  # the emulator starts in ~1 s; open() takes ~2.6 s

ENGINE = 0x7E8


def open_elm(emulator: ElmEmulator) -> Elm327:
    return Elm327.open(str(emulator.link), protocol="6", timeout=2.0)


def test_pids_vin_and_dtcs(elm_emulator: ElmEmulator) -> None:  # noqa: F811
    vins = ["1FTFW1ET5DFC10312", "0MATZZZ99ZTS39002", "2HGCM82633A004352"]
    elm_emulator.set_dtcs(["0143", "0196", "4123"])  # the emulator's own shape: no count byte
    elm_emulator.set_vin(vins[0])
    with open_elm(elm_emulator) as elm:
        assert (elm.version, elm.protocol, elm.is_can) == (
            "ELM327 v1.5", "ISO 15765-4 (CAN 11/500)", True)
        assert [r.ecu for r in elm.first_replies] == [ENGINE]
        assert elm.first_replies[0].data[:2] == b"\x41\x00"

        rpm = elm.request(b"\x01\x0c", ecu=ENGINE_REQUEST, expect=1)
        assert len(rpm) == 1 and rpm[0].ecu == ENGINE
        assert rpm[0].data[:2] == b"\x41\x0c" and len(rpm[0].data) == 4

        several = elm.request(b"\x01\x0c\x0d\x05", ecu=ENGINE_REQUEST, expect=1)
        assert len(several) == 1 and several[0].ecu == ENGINE  # one multi-frame answer
        data = several[0].data
        assert (data[0], data[1], data[4], data[6], len(data)) == (0x41, 0x0C, 0x0D, 0x05, 8)
        assert elm.capabilities.count_suffix  # refused for multi-PID requests only

        for vin in vins:  # VINs that begin and end with 0, 1, 2 come back whole
            elm_emulator.set_vin(vin)
            assert elm.request(b"\x09\x02", ecu=ENGINE_REQUEST, expect=1) == [
                Reply(ENGINE, b"\x49\x02\x01" + vin.encode())]

        assert elm.request(b"\x03") == [Reply(ENGINE, bytes.fromhex("43014301964123"))]
        elm_emulator.set_dtcs(["0143", "0300"], count_byte=True)  # ISO 15765-4's shape
        assert elm.request(b"\x03") == [Reply(ENGINE, bytes.fromhex("430201430300"))]
        assert elm.request(b"\x04") == [Reply(ENGINE, b"\x44")]
        assert elm.request(b"\x03") == [Reply(ENGINE, b"\x43\x00")]
        assert elm.request(b"\x08\x00") == []  # NO DATA
        volts = elm.battery_voltage()
        assert volts is not None and 10 < volts < 16
        assert elm.command("AT XYZ") == ["?"]

        started = time.monotonic()
        for _ in range(50):
            assert elm.request(b"\x01\x0c", ecu=ENGINE_REQUEST, expect=1)
        assert time.monotonic() - started < 5  # a few ms each on the emulator


def test_emulator_killed_and_restarted_on_the_same_link(
        elm_emulator: ElmEmulator) -> None:  # noqa: F811
    elm_emulator.set_vin("1FTFW1ET5DFC10312")
    elm = open_elm(elm_emulator)
    first_pty = elm_emulator.pty
    elm_emulator.kill()
    with pytest.raises(ObdAdapterError):
        elm.request(b"\x01\x0c", ecu=ENGINE_REQUEST, expect=1)
    elm.close()
    elm_emulator.start()  # the link now points at the new pty; set_vin was replayed
    with open_elm(elm_emulator) as again:
        assert again.request(b"\x09\x02", ecu=ENGINE_REQUEST) == [
            Reply(ENGINE, b"\x49\x02\x01" + b"1FTFW1ET5DFC10312")]
    assert elm_emulator.starts == 2 and elm_emulator.pty  # (the pty number may be reused)
    assert first_pty
