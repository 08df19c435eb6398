"""``bavard run`` with a native OBD channel on vcan0, against ``bavard simulate --obd-only``
on the same bus, both as processes in the real kernel: the PIDs, the trouble code of
the harsh brake and the VIN reach the store."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.sources.simulator.obd_ecu import DEFAULT_VIN
from tests.vcan.conftest import SLOW
from tests.vcan.test_vcan_daemon import Output, bavard_run, stop, stored_values

pytestmark = pytest.mark.vcan

SPEED = 8  # vehicle seconds per second: the harsh brake's code after about 27 s


def test_bavard_run_with_a_native_obd_channel(vcan0: str, tmp_path: Path) -> None:
    state = tmp_path / "state"
    config = tmp_path / "bavard.toml"
    config.write_text(f"""
[[channels]]
name = "obd"
obd = true
interface = "socketcan"
channel = "{vcan0}"
pids = {{ENGINE_RPM = 0.5, VEHICLE_SPEED = 0.5, COOLANT_TEMPERATURE = 2.0}}
dtc_interval = 1
timeout = {0.2 * SLOW}

[store]
state_dir = "{state}"
commit_interval = 0.2
""")
    ecus = subprocess.Popen([sys.executable, "-m", "agent", "simulate", "--interface",
                             "socketcan", "--channel", vcan0, "--obd-only", "--speed",
                             str(SPEED)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    ecu_output = Output(ecus)
    try:
        with bavard_run(config) as (daemon, output):
            found = output.wait_for(r"obd: dtc\.set P0500 stored", 60)  # times SLOW
            assert found, output.so_far() + ecu_output.so_far()
            assert stop(daemon) < 5 * SLOW, output.so_far()
        text = output.text()
    finally:
        ecus.terminate()
        ecus.wait(timeout=10 * SLOW)
    assert "Traceback" not in text, text
    events: list = []  # type: ignore[type-arg]
    values = stored_values(state, events, channel="obd")
    assert len(values[("OBD", "ENGINE_RPM")]) >= 3
    assert max(values[("OBD", "VEHICLE_SPEED")]) > 50  # the drive reached the road
    kinds = [(e.kind, e.detail.split(" (")[0]) for e in events]
    assert ("dtc.set", "P0500 stored") in kinds, kinds
    assert ("dtc.set", "P0500 pending") in kinds, kinds
    assert (state / "vehicle.vin").read_text() == DEFAULT_VIN
