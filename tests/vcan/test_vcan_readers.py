"""The three ways of reading a live SocketCAN bus store the same samples.

``canplayer`` plays the start of the demo sample drive onto vcan0 once, while
three pipelines with the demo configuration's selection and rules read it at
the same time, each through its own socket and in its own process
(tests/vcan/pipeline_child.py): CAN_BCM content filtering (``reader = "bcm"``:
the kernel hands over a frame only when a selected bit changed), a raw CAN_RAW
socket (``"raw"``) and python-can (``"python-can"``, the path every other
interface takes).

Decisions:

* **Same input**: one play, three sockets: every socket sees the same frames
  with the same kernel receive timestamp, so the samples are compared whole,
  timestamps included, not only their values.
* **The rules**: the demo's. ``*Speed*`` keeps a change beyond a 0.5 deadband
  and a heartbeat every 10 s (its messages reach bavard whole: RX_FILTER_ID);
  every other signal every change (content filtered by the kernel).
* **Pace**: 4,000 frames of the drive at the car's own pace (11.4 s, bursts as
  on the car): python-can's path must keep up under QEMU/TCG on two shared
  cores. Nothing may be lost: python-can counts no overflow, so each pipeline
  must have taken in every frame the kernel handed its socket (python-can and
  raw: all 4,000), with no chunk dropped and no overflow counted.
* **Separate processes**: three pipelines in one process share one GIL and,
  under TCG, starve each other into overflows that say nothing of the readers.
"""


from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.vcan.conftest import SLOW

pytestmark = pytest.mark.vcan

LOG = ROOT / "tests" / "data" / "sample_drive.log"
DBC = ROOT / "dbc" / "demo_vehicle.dbc"
READERS = ("bcm", "raw", "python-can")
FRAMES = 4_000

CONFIG = """
[[channels]]
name = "vehicle"
interface = "socketcan"
channel = "{iface}"
dbc = "{dbc}"
reader = "{reader}"

[selection]
include = ["*"]
exclude = ["*Counter*", "*Checksum*"]

[[signals]]
match = "*Speed*"
on_change = true
deadband = 0.5
max_period = 10.0

[[signals]]
match = "*"
on_change = true
"""


def first_frames(log: Path, out: Path, count: int) -> Path:
    """The first ``count`` lines of a candump log."""
    with log.open() as f:
        out.write_text("".join(line for _, line in zip(range(count), f, strict=False)))
    return out


@contextlib.contextmanager
def children(configs: dict[str, Path]) -> Iterator[dict[str, subprocess.Popen[str]]]:
    """One tests/vcan/pipeline_child.py per configuration, each ready (its socket open);
    killed at the end if still running (a failed assertion)."""
    procs = {name: subprocess.Popen(
        [sys.executable, "-m", "tests.vcan.pipeline_child", str(path)], cwd=ROOT,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for name, path in configs.items()}
    try:
        for name, proc in procs.items():
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready", f"{name}: did not start"
        yield procs
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def result(name: str, proc: subprocess.Popen[str]) -> dict[str, Any]:
    """What a child kept, once its standard input is closed (here)."""
    out, _ = proc.communicate(timeout=60 * SLOW)
    assert proc.returncode == 0, f"{name}: exit status {proc.returncode}"
    found: dict[str, Any] = json.loads(out)
    assert not found["alive"], f"{name}: its pipeline did not stop"
    return found


def test_bcm_raw_and_python_can_store_the_same_samples(vcan0: str, tmp_path: Path) -> None:
    log = first_frames(LOG, tmp_path / "drive.log", FRAMES)
    configs = {}
    for reader in READERS:
        configs[reader] = tmp_path / f"{reader}.toml"
        configs[reader].write_text(CONFIG.format(iface=vcan0, dbc=DBC, reader=reader))
    with children(configs) as procs:
        subprocess.run(["canplayer", "-I", str(log), f"{vcan0}=can0"], check=True,
                       timeout=60 * SLOW)
        # each child's standard input closed in turn (by communicate): the bus is quiet now
        found = {name: result(name, proc) for name, proc in procs.items()}
    for reader, run in found.items():
        (channel,) = run["channels"]
        assert channel["error"] is None, f"{reader}: {channel['error']}"
        assert channel["dropped"] == 0, f"{reader}: {channel['dropped']} frames dropped"
        assert channel["skipped"].get("rx_overflow", 0) == 0, f"{reader}: {channel['skipped']}"
    bcm, raw, pycan = (found[r] for r in READERS)
    assert raw["frames_in"] == pycan["frames_in"] == FRAMES, "a reader fell behind"
    # the kernel spared bavard work: fewer frames reached the BCM pipeline
    assert 0 < bcm["frames_in"] < FRAMES
    assert len(raw["samples"]) > 3_000  # the comparison had something to compare
    assert ordered(raw["samples"]) == ordered(pycan["samples"])
    assert ordered(bcm["samples"]) == ordered(raw["samples"])


def ordered(samples: list[list[Any]]) -> list[list[Any]]:
    """Samples in bus order (the pipelines' chunks may interleave messages differently)."""
    return sorted(samples, key=lambda s: (s[0], s[2], s[3]))
