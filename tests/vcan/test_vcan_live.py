"""``bavard live --interface socketcan --channel vcan0 --dbc ...`` on a real kernel,
without a service: ``canplayer`` plays the start of the sample drive onto vcan0 and
the JSON lines ``live`` writes (standard output is a pipe) hold, signal by signal,
the values ``bavard decode`` makes of the same log. Timestamps are the kernel's
receive times, so they are left out; the channel is the bus's.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections import defaultdict
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.vcan.conftest import wait_until

pytestmark = pytest.mark.vcan

LOG = ROOT / "tests" / "data" / "sample_drive.log"
DBC = ROOT / "dbc" / "demo_vehicle.dbc"
FRAMES = 600  # lines of the sample drive played: 1.7 s of driving

Values = dict[tuple[str, str], list[object]]


def by_signal(lines: list[str]) -> Values:
    values: Values = defaultdict(list)
    for line in lines:
        record = json.loads(line)
        values[(record["message"], record["signal"])].append(record["value"])
    return dict(values)


def test_live_reads_a_bus_directly(vcan0: str, tmp_path: Path) -> None:
    log, first, rest = tmp_path / "drive.log", tmp_path / "first.log", tmp_path / "rest.log"
    played = LOG.read_text().splitlines(keepends=True)[:FRAMES]
    log.write_text("".join(played))
    first.write_text(played[0])
    rest.write_text("".join(played[1:]))
    decoded = subprocess.run([sys.executable, "-m", "agent", "decode", str(log), "--dbc",
                              str(DBC)], cwd=ROOT, capture_output=True, text=True, check=True,
                             timeout=120)
    expected = by_signal(decoded.stdout.splitlines())
    total = sum(map(len, expected.values()))
    before = len(Path("/proc/net/can/rcvlist_all").read_text().splitlines())
    live = subprocess.Popen([sys.executable, "-m", "agent", "live", "--interface", "socketcan",
                             "--channel", vcan0, "--dbc", str(DBC)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    assert live.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(live.stdout or ()), daemon=True)
    reader.start()
    try:
        opened = wait_until(
            lambda: len(Path("/proc/net/can/rcvlist_all").read_text().splitlines()) > before
            or live.poll() is not None, 60)
        assert opened and live.poll() is None, live.communicate()
        # the log's first frame, then the rest once it came out: live reads by then (under
        # QEMU its start-up takes seconds, during which the socket's queue would overflow)
        subprocess.run(["canplayer", "-I", str(first), f"{vcan0}=can0"], check=True, timeout=60)
        assert wait_until(lambda: len(lines) > 0, 60), "no sample of the first frame"
        subprocess.run(["canplayer", "-I", str(rest), f"{vcan0}=can0"], check=True, timeout=60)
        assert wait_until(lambda: len(lines) >= total, 30), f"{len(lines)} of {total} samples"
        live.send_signal(signal.SIGTERM)
        live.wait(30)
        reader.join(10)
    finally:
        if live.poll() is None:
            live.kill()
            live.wait()
    assert live.returncode == 0
    stderr = live.stderr.read() if live.stderr else ""
    assert "reading the bus socketcan:vcan0 directly, not through the service" in stderr
    assert {json.loads(line)["channel"] for line in lines} == {vcan0}
    assert by_signal(lines) == expected
    assert total > 3000
