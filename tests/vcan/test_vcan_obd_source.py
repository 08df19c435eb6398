"""bavard's OBD-over-CAN source on a real kernel: the simulated ECUs on vcan0, the
source (the kernel's ISO-TP where the kernel has it) and its decoder in the same
machine; every value equals the simulator's, the VIN comes back whole, the trouble
code's events arrive in order."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agent.obd.settings import ObdSettings
from agent.sources.obd import ObdSource
from agent.sources.simulator.obd_ecu import DEFAULT_VIN, ENGINE_REPLY, SimulatedEcus, harsh_brake
from tests.test_obd_can import Still, move_to
from tests.test_obd_source import Reader
from tests.vcan.conftest import SLOW

pytestmark = pytest.mark.vcan

PIDS = (0x0C, 0x0D, 0x05, 0x2F, 0x42, 0x46)
FIELDS = {0x0C: "ENGINE_RPM", 0x0D: "VEHICLE_SPEED", 0x05: "COOLANT_TEMPERATURE",
          0x2F: "FUEL_LEVEL", 0x42: "CONTROL_MODULE_VOLTAGE", 0x46: "AMBIENT_AIR_TEMPERATURE"}


@pytest.fixture
def clock() -> Still:
    return Still()


@pytest.fixture
def ecus(vcan0: str, clock: Still) -> Iterator[SimulatedEcus]:
    start, _ = harsh_brake()
    ecus = SimulatedEcus.open("socketcan", vcan0, t0=start - 5.0, clock=clock).start()
    try:
        yield ecus
    finally:
        ecus.stop()
    assert ecus.errors == 0


def test_the_obd_source_on_vcan0(vcan0: str, ecus: SimulatedEcus, clock: Still) -> None:
    settings = ObdSettings(interface="socketcan", channel=vcan0,
                           pids=tuple((n, 0.0) for n in PIDS), dtc_interval=0.3 * SLOW,
                           timeout=0.2 * SLOW)
    source = ObdSource("obd", settings, backoff=(0.1, 0.5))
    with Reader(source) as reader:
        reader.wait_for(lambda: len(reader.values) >= 5, timeout=20 * SLOW)
        assert source.vin == DEFAULT_VIN
        truth = ecus.state()[ENGINE_REPLY].pids
        latest: dict[str, float] = {}
        for values in reader.values[-3:]:
            latest.update(values)
        assert {FIELDS[n]: latest[FIELDS[n]] for n in PIDS} == {
            FIELDS[n]: truth[n] for n in PIDS}
        # the harsh brake: P0500 pending, then stored with the MIL; then cleared by a
        # technician (mode 04 on the same bus), the permanent entry staying
        _, end = harsh_brake()
        move_to(ecus, clock, end + 1.0)
        reader.wait_for(lambda: any(e.kind == "obd.mil" for e in reader.events),
                        timeout=20 * SLOW)
        ecus.answer(b"\x04")  # a scan tool's clear, handed to the ECU directly
        reader.wait_for(lambda: reader.events[-1].detail.startswith("MIL off"),
                        timeout=20 * SLOW)
    said = [(e.kind, e.detail.split(" (")[0]) for e in reader.events]
    # one read found the three at once: stored (and its freeze frame), pending, permanent
    assert said == [("dtc.set", "P0500 stored"), ("dtc.freeze_frame", "P0500"),
                    ("dtc.set", "P0500 pending"), ("dtc.set", "P0500 permanent"),
                    ("obd.mil", "MIL on"),
                    ("dtc.cleared", "P0500 stored"), ("dtc.cleared", "P0500 pending"),
                    ("obd.mil", "MIL off")], said
    assert source.stats.gaps == 0
