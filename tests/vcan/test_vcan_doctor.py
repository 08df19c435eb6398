"""``bavard doctor`` on a real kernel's vcan0 (``scripts/test_vcan.sh -k doctor``):
netlink says vcan0 is a virtual link and up (a pass), the traffic check listens to
it directly (no service runs) while frames of the demo DBC and unknown ids are sent,
and once ``ip link set vcan0 down`` the link check fails with the line that fixes it."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.doctor.netlink import query_link
from tests.conftest import ROOT
from tests.vcan.conftest import IFACE, SLOW

DBC = ROOT / "dbc" / "demo_vehicle.dbc"

pytestmark = pytest.mark.vcan


def write_config(tmp_path: Path) -> Path:
    config = tmp_path / "bavard.toml"
    config.write_text(f"""
[[channels]]
name = "bench"
interface = "socketcan"
channel = "{IFACE}"
dbc = ["{DBC}"]

[store]
state_dir = "{tmp_path / 'state'}"

[control]
socket = "{tmp_path / 'control'}"
""")
    return config


def doctor(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", "doctor", "--config", str(config),
                           "--timeout", "2", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120 * SLOW)


@pytest.fixture
def sending(vcan0: str) -> Iterator[None]:
    """Frames on vcan0 every 5 ms: EngineData (0x100, in the DBC) three times out of
    four, 0x7FF (in no DBC) once."""
    import can

    stop = threading.Event()
    bus = can.Bus(interface="socketcan", channel=vcan0)

    def send() -> None:
        n = 0
        while not stop.wait(0.005) and n < 100_000:
            can_id = 0x7FF if n % 4 == 3 else 0x100
            bus.send(can.Message(arbitration_id=can_id, is_extended_id=False,
                                 data=bytes(8)))
            n += 1

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)
        bus.shutdown()


def by_name(out: str) -> dict[str, dict[str, str]]:
    return {c["name"]: c for c in json.loads(out)["checks"]}


def test_vcan0_up_passes_and_its_traffic_is_judged(tmp_path: Path, sending: None) -> None:
    info = query_link(IFACE)
    assert info is not None and info.kind == "vcan" and info.up
    done = doctor(write_config(tmp_path), "--json", "--listen", "1")
    checks = by_name(done.stdout)
    link = checks[f"CAN link {IFACE}"]
    assert link["status"] == "pass", done.stdout
    assert "vcan (virtual): no bus state, bitrate or error counters" in link["detail"]
    traffic = checks["traffic bench"]
    assert traffic["status"] == "pass", traffic
    assert "50% of the 2 ids seen are in the DBCs (1 unknown)" in traffic["detail"]
    assert "listened 1 s" in traffic["detail"]


def test_vcan0_down_fails_with_the_fix(tmp_path: Path,
                                       link_control: Callable[[str], None]) -> None:
    link_control("down")
    info = query_link(IFACE)
    assert info is not None and not info.up
    done = doctor(write_config(tmp_path), "--listen", "0.5")
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if f"CAN link {IFACE}" in line)
    assert lines[at].startswith("FAIL") and f"{IFACE} is down" in lines[at]
    assert lines[at + 1].strip() == f"fix: sudo ip link set {IFACE} up"
