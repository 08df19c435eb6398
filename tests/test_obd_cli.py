"""``bavard obd``: the technician's commands on an ELM327 (a scripted one, and
elm327-emulator) and on native CAN (the simulated ECUs on python-can's virtual bus)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.elm_emulator import ElmEmulator, elm_emulator  # noqa: F401 - a fixture
from helpers.elm_peer import ElmPeer
from test_obd_source import VIN, Car

from agent.cli.main import main
from agent.sources.simulator.obd_ecu import SimulatedEcus


@pytest.fixture
def car() -> Car:
    car = Car()
    car.stored, car.mil = ["P0143", "C0123"], True
    return car


@pytest.fixture
def peer(car: Car) -> Iterator[ElmPeer]:
    with ElmPeer(answers=car.answers(), protocol="6") as p:
        yield p


def obd(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["obd", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_scan_read_dtc_vin_readiness_on_an_elm327(peer: ElmPeer,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    port = ["--port", peer.path, "--timeout", "0.5"]
    code, out, _ = obd(capsys, "scan", *port)
    assert code == 0
    assert f"adapter   ELM327 v1.5 on {peer.path} at 38400 baud" in out
    assert "protocol  ISO 15765-4 (CAN 11/500)" in out and "battery   12.6 V" in out
    assert "ECU 7E8   5 PIDs supported: 01 04 05 0C 0D" in out
    assert "ENGINE_LOAD, COOLANT_TEMPERATURE, ENGINE_RPM, VEHICLE_SPEED" in out

    code, out, _ = obd(capsys, "read", "rpm", "0x0D", "COOLANT_TEMPERATURE", *port)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["ENGINE_RPM", "1726", "rpm", "(ECU", "7E8)"]
    assert lines[1].split() == ["VEHICLE_SPEED", "50", "km/h", "(ECU", "7E8)"]
    assert lines[2].split() == ["COOLANT_TEMPERATURE", "83", "degC", "(ECU", "7E8)"]

    code, out, _ = obd(capsys, "dtc", *port)
    assert code == 0
    assert out.splitlines()[0].split()[:4] == ["stored", "P0143", "ECU", "7E8"]  # ECU order
    assert "P0143  ECU 7E8  O2 sensor" in out

    code, out, _ = obd(capsys, "vin", *port, "--json")
    assert json.loads(out) == {"vin": VIN, "problems": []}

    code, out, _ = obd(capsys, "readiness", *port)
    assert code == 0 and "ECU 7E8: MIL ON, 2 codes, spark ignition" in out


def test_json_output(peer: ElmPeer, capsys: pytest.CaptureFixture[str]) -> None:
    port = ["--port", peer.path, "--json"]
    code, out, _ = obd(capsys, "read", "ENGINE_RPM", "ODOMETER", *port)
    doc = json.loads(out)
    assert code == 0
    assert doc["values"] == {"ENGINE_RPM": {"value": 1726.0, "ecu": "7E8", "unit": "rpm"}}
    assert doc["no_data"] == ["ODOMETER"]
    code, out, _ = obd(capsys, "dtc", *port)
    doc = json.loads(out)
    assert [d["code"] for d in doc["stored"]] == ["P0143", "C0123"]
    assert doc["pending"] == [] and doc["permanent"] == []
    code, out, _ = obd(capsys, "scan", *port)
    assert json.loads(out)["ecus"] == {"7E8": ["01", "04", "05", "0C", "0D"]}


def test_watch_repeats_and_stops_at_count(peer: ElmPeer,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = obd(capsys, "read", "ENGINE_RPM", "--watch", "--interval", "0",
                       "--count", "3", "--json", "--port", peer.path)
    assert code == 0
    assert [json.loads(line)["values"]["ENGINE_RPM"]["value"] for line in
            out.splitlines()] == [1726.0] * 3


def test_clear_needs_yes(peer: ElmPeer, car: Car, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = obd(capsys, "dtc", "--clear", "--port", peer.path)
    assert code == 2 and "add --yes" in err
    assert not any(r == "04" for r in peer.received)  # the adapter was not even opened
    peer.answers["04"] = lambda p, r: (car.stored.clear(), [("7E8", "0144")])[1]
    code, out, _ = obd(capsys, "dtc", "--clear", "--yes", "--port", peer.path)
    assert code == 0 and out.strip() == "cleared by ECU 7E8"
    assert car.stored == []


def test_bad_input_says_where(peer: ElmPeer, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = obd(capsys, "read", "ENGIN_RPM", "--port", peer.path)
    assert code == 2 and "unknown PID 'ENGIN_RPM'; did you mean ENGINE_RPM" in err
    code, _, err = obd(capsys, "read", "0x20", "--port", peer.path)
    assert code == 2 and "PID 20 (PIDS_SUPPORTED_21_40) says which PIDs exist" in err
    code, _, err = obd(capsys, "vin", "--timeout", "0", "--port", peer.path)
    assert code == 2 and "bavard obd vin: --timeout must be above 0" in err
    code, _, err = obd(capsys, "vin", "--port", str(tmp_path / "ttyUSB9"))
    assert code == 1 and f"bavard obd: {tmp_path / 'ttyUSB9'}:" in err
    peer.obd_override = ["UNABLE TO CONNECT"]
    code, _, err = obd(capsys, "scan", "--port", peer.path)
    assert code == 1 and "UNABLE TO CONNECT" in err


def test_native_can_on_the_simulated_ecus(capsys: pytest.CaptureFixture[str]) -> None:
    channel = "bavard-test-obd-cli"
    with SimulatedEcus.open("virtual", channel, speed=1.0).start() as ecus:
        can = ["--can", channel, "--interface", "virtual", "--json"]
        code, out, _ = obd(capsys, "vin", *can)
        assert code == 0 and json.loads(out)["vin"] == ecus.vin
        code, out, _ = obd(capsys, "scan", *can)
        ecu_ids = set(json.loads(out)["ecus"])
        assert code == 0 and ecu_ids == {"7E8", "7E9"}
        code, out, _ = obd(capsys, "read", "ENGINE_RPM", "VEHICLE_SPEED", *can)
        assert code == 0 and set(json.loads(out)["values"]) == {"ENGINE_RPM", "VEHICLE_SPEED"}
        code, out, _ = obd(capsys, "readiness", *can)
        assert code == 0 and set(json.loads(out)) == {"7E8", "7E9"}


@pytest.mark.slow
def test_on_elm327_emulator(elm_emulator: ElmEmulator,  # noqa: F811
                            capsys: pytest.CaptureFixture[str]) -> None:
    elm_emulator.set_vin("2FTFW1ET2DFC10310")
    elm_emulator.set_dtcs(stored=["0143", "0196"], count_byte=True)
    port = ["--port", str(elm_emulator.link), "--protocol", "6", "--json"]
    code, out, _ = obd(capsys, "vin", *port)
    assert code == 0 and json.loads(out)["vin"] == "2FTFW1ET2DFC10310"
    code, out, _ = obd(capsys, "dtc", *port)
    assert [d["code"] for d in json.loads(out)["stored"]] == ["P0143", "P0196"]
    code, out, _ = obd(capsys, "read", "ENGINE_RPM", "FUEL_LEVEL", *port)
    values = json.loads(out)["values"]
    assert code == 0 and values["FUEL_LEVEL"]["value"] == pytest.approx(66.67, abs=0.01)
