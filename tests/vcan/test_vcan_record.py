"""``bavard record --interface socketcan --channel vcan0`` on a real kernel, beside
``candump -l`` run at the same time: the two files hold the same lines.

Decisions:

* **What goes on the bus**: ``canplayer`` plays a log of the edge cases (an empty
  frame, 0x7FF, a 29-bit id below 0x800, CAN FD with and without the bit rate
  switch and the error state flag, 64 bytes), then ``cangen -m`` mixes 400 random
  frames of every kind, remote frames included.
* **What is compared**: the lines of both files, text for text (candump writes the
  kernel's receive time, the same for both sockets), remote frames (``123#R4``)
  included.
* **Readiness**: both sockets are open once the kernel lists two receivers on vcan0
  (``/proc/net/can/rcvlist_all``: neither sets a filter); the recording's
  --duration counts from the opening of its bus, so Python's start-up under QEMU
  does not eat into it.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from agent.sources.candump import parse_candump
from tests.conftest import ROOT
from tests.vcan.conftest import SLOW, wait_until

pytestmark = pytest.mark.vcan

EDGES = """\
(1700000000.000000) can0 123#DEADBEEF
(1700000000.001000) can0 7FF#
(1700000000.002000) can0 00000042#AA
(1700000000.003000) can0 1ABCDEF0#0102030405060708
(1700000000.004000) can0 321##1{fd64}
(1700000000.005000) can0 18DAF110##0112233445566778899AABBCC
(1700000000.006000) can0 124##3AABB
(1700000000.007000) can0 125##2
"""
DURATION = 3.0 * SLOW  # seconds of recording: the frames go out in the first half


def receivers(iface: str) -> int:
    """Sockets without a filter that receive from ``iface``."""
    lines = Path("/proc/net/can/rcvlist_all").read_text().splitlines()
    return sum(1 for line in lines if line.split()[:1] == [iface])


def test_record_writes_what_candump_writes(vcan0: str, tmp_path: Path) -> None:
    edges = tmp_path / "edges.log"
    edges.write_text(EDGES.format(fd64=bytes(range(64)).hex().upper()))
    out = tmp_path / "bavard.log"
    dump_dir = tmp_path / "candump"
    dump_dir.mkdir()
    before = receivers(vcan0)
    candump = subprocess.Popen(["candump", "-l", vcan0], cwd=dump_dir,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    record = subprocess.Popen([sys.executable, "-m", "agent", "record", "--interface",
                               "socketcan", "--channel", vcan0, "--duration", str(DURATION),
                               "-o", str(out), "--json"], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: receivers(vcan0) >= before + 2 or record.poll() is not None,
                          30), "the two sockets never opened"
        assert record.poll() is None, record.communicate()
        subprocess.run(["canplayer", "-I", str(edges), f"{vcan0}=can0"], check=True,
                       timeout=30)
        subprocess.run(["cangen", vcan0, "-m", "-g", "1", "-n", "400"], check=True,
                       timeout=60)
        stdout, stderr = record.communicate(timeout=DURATION + 30)
    finally:
        for proc in (record, candump):
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    assert record.returncode == 0, stderr
    summary = json.loads(stdout)
    assert summary["ended"] == "duration" and summary["error"] is None
    assert DURATION <= summary["seconds"] < DURATION + 2 * SLOW
    (dumped,) = dump_dir.glob("candump-*.log")
    theirs = dumped.read_text().splitlines()
    assert len(theirs) == 8 + 400  # candump saw every frame sent
    remote = [line for line in theirs if re.fullmatch(r"\(\S+\) \S+ [0-9A-F]+#R\w*", line)]
    assert remote  # cangen -m sends some
    ours = out.read_text().splitlines()
    assert ours == theirs
    assert summary["frames"] == len(ours)
    # what candump wrote of the edge cases, read back the same way by the project's reader
    frames = list(parse_candump(ours[:8]))
    assert [(f.arbitration_id, f.is_extended, f.is_fd, f.data.hex().upper()) for f in frames] \
        == [(0x123, False, False, "DEADBEEF"), (0x7FF, False, False, ""),
            (0x42, True, False, "AA"), (0x1ABCDEF0, True, False, "0102030405060708"),
            (0x321, False, True, bytes(range(64)).hex().upper()),
            (0x18DAF110, True, True, "112233445566778899AABBCC"),
            (0x124, False, True, "AABB"), (0x125, False, True, "")]
    # CAN FD flags as the kernel gives them: FDF 4, plus BRS 1 and ESI 2 as sent
    assert [line.split()[2].split("##")[1][0] for line in ours[4:8]] == ["5", "4", "7", "6"]
    assert list(tmp_path.glob(".bavard.log.*")) == []


def test_a_bus_that_is_not_there(vcan0: str, tmp_path: Path) -> None:
    out = tmp_path / "x.log"
    done = subprocess.run([sys.executable, "-m", "agent", "record", "--interface", "socketcan",
                           "--channel", "vcan9", "--duration", "1", "-o", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60 * SLOW)
    assert done.returncode == 1
    assert "bavard record: cannot open socketcan:vcan9" in done.stderr
    assert list(tmp_path.iterdir()) == []
