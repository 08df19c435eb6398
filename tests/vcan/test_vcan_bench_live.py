"""scripts/bench_live.py in a kernel with vcan0: its smoke run prints each
contender's CPU per bus frame, and its check fails when a contender stored
other values (``--wrong``). The figures themselves are the script's business
(README "Figures"); these runs only show that it measures and checks."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.vcan.conftest import SLOW

pytestmark = pytest.mark.vcan


def bench(vcan0: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_live.py"), "--quick",
                           *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300 * SLOW, check=False)


def test_quick_run_prints_each_contenders_cpu_per_bus_frame(vcan0: str) -> None:
    done = bench(vcan0)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "demo sample drive (demo_vehicle.dbc), the demo's selection and rules" in out, out
    assert "1,000 frames/s: 1,000 frames, 1,000 of them selected" in out, out
    for row in ("(a)      python-can recv + cantools decode, on-change",
                "(c)      bavard now, reader 'auto'"):
        assert row in out, out
    assert "CanBusSource, reader 'bcm'" in out, out  # auto is BCM on a decoded SocketCAN bus
    assert out.count(" µs/frame ") == 2 and "1.000 of (a)" in out, out
    assert "checked against cantools + on-change: (a) " in out, out
    assert "demo sample drive, 1,000 frames/s: (c) = " in out, out


def test_quick_run_fails_when_a_contender_stored_other_values(vcan0: str) -> None:
    done = bench(vcan0, "--wrong", "c:value")
    said = done.stdout + done.stderr
    assert done.returncode == 1, said
    assert "CHECK FAILED: demo sample drive, 1,000/s, (c): " in said, said
    assert "stored value" in said, said
