"""OBD-II channels in the configuration: both adapters, the PIDs, every problem named."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import parse_config
from agent.errors import ConfigError
from agent.obd.settings import DEFAULT_PIDS


def problems(text: str, tmp_path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, base_dir=tmp_path)
    return info.value.problems


def test_an_elm327_channel_and_a_native_one(tmp_path: Path) -> None:
    config = parse_config("""
[[channels]]
name = "elm"
obd = true
port = "socket://127.0.0.1:35000"
baudrate = 38400
protocol = 6
pids = {ENGINE_RPM = 0.5, "0x0D" = 1, coolant_temperature = 10}
dtc_interval = 60

[[channels]]
name = "native"
obd = true
interface = "socketcan"
channel = "can0"
extended = true
mode = "raw"
""", tmp_path)
    elm, native = config.channels
    assert elm.kind == native.kind == "obd"
    assert elm.obd is not None and native.obd is not None
    assert (elm.obd.adapter, elm.obd.port, elm.obd.baudrate, elm.obd.protocol) == (
        "elm327", "socket://127.0.0.1:35000", 38400, "6")
    assert elm.obd.pids == ((0x0C, 0.5), (0x0D, 1.0), (0x05, 10.0))
    assert elm.obd.dtc_interval == 60.0 and elm.dbc == ()
    assert (native.obd.adapter, native.obd.where, native.obd.extended) == (
        "can", "socketcan can0", True)
    assert dict(native.obd.pids) == DEFAULT_PIDS and native.mode == "raw"


def test_every_problem_of_an_obd_channel_names_its_key(tmp_path: Path) -> None:
    found = problems("""
[[channels]]
name = "a"
obd = true
port = "/dev/ttyUSB0"
interface = "socketcan"
channel = "can0"
extended = true
dbc = "x.dbc"
pids = {ENGINE_RPMM = 1, VEHICLE_SPEED = -1, "0x00" = 1, RPM = 1, ENGINE_RPM = 2}
protocol = "Z"
dtc_interval = 0

[[channels]]
name = "b"
obd = true

[[channels]]
name = "c"
interface = "virtual"
channel = "x"
dbc = "x.dbc"
pids = {ENGINE_RPM = 1}
port = "/dev/ttyUSB0"
""", tmp_path)
    text = "\n".join(found)
    assert "channels[0].port: give port (an ELM327) or interface (native CAN), not both" in text
    assert "channels[0].extended: only valid with interface (native OBD)" in text
    assert "channels[0].dbc: not used by an OBD channel" in text
    assert "channels[0].pids.ENGINE_RPMM: unknown PID 'ENGINE_RPMM'" in text
    assert "did you mean ENGINE_RPM" in text  # the close match
    assert "channels[0].pids.VEHICLE_SPEED: must be from 0 to 86_400, got -1" in text
    assert "channels[0].pids.0x00: PID 00 (PIDS_SUPPORTED_01_20) says which PIDs exist" in text
    assert "channels[0].pids.ENGINE_RPM: PID 0C (ENGINE_RPM) is listed twice" in text
    assert "channels[0].protocol: must be one of auto, 1, 2" in text
    assert "channels[0].dtc_interval: must be from 1 to 86_400, got 0" in text
    assert ("channels[1]: obd = true needs port (an ELM327) or interface and channel "
            "(native OBD on a CAN bus)") in text
    assert "channels[2].pids: only valid with obd = true" in text
    assert "channels[2].port: only valid with obd = true" in text


def test_obd_with_log_or_simulate_is_refused(tmp_path: Path) -> None:
    (tmp_path / "d.log").write_text("(1.0) can0 123#00\n")
    found = problems('[[channels]]\nname = "a"\nobd = true\nport = "/dev/x"\nlog = "d.log"\n',
                     tmp_path)
    assert found == ["channels[0].log: not valid with obd = true"]


def test_globs_may_name_obd_signals_beside_dbc_ones(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from agent.cli.main import main

    path = tmp_path / "bavard.toml"
    path.write_text("""
[[channels]]
name = "obd"
obd = true
interface = "socketcan"
channel = "can0"

[[channels]]
name = "veh"
simulate = true

[selection]
include = ["OBD.*", "EngineData.*", "OBD.ENGINE_RPMM"]

[[signals]]
match = "OBD.ENGINE_RPM"
on_change = true
""")
    assert main(["config", "check", str(path)]) == 0
    err = capsys.readouterr().err
    assert "selection.include[2]: 'OBD.ENGINE_RPMM' matches no signal" in err
    assert "include[0]" not in err and "signals[0]" not in err


def test_a_bad_channel_is_said_once(tmp_path: Path) -> None:
    found = problems('[[channels]]\nname = "a"\nobd = true\ninterface = "socketcan"\n'
                     'channel = [1]\n', tmp_path)
    assert found == ["channels[0].channel: expected a string, got an array"]
