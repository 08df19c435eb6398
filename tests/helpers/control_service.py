
"""``bavard run`` as a process with its control socket in a test's directory, for the
technician's commands (``live``, ``record``) to talk to; every wait bounded."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from agent.control.client import ControlClient
from agent.errors import ControlError
from tests.helpers.consent import grant_for

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "tests" / "data" / "sample_drive.log"
DBC = ROOT / "dbc" / "demo_vehicle.dbc"

REPLAY = """
[[channels]]
name = "vehicle"
log = "{log}"
dbc = ["{dbc}"]
speed = {speed}
"""
SIMULATOR = """
[[channels]]
name = "vehicle"
simulate = true
speed = {speed}
"""
COMMON = """
[store]
state_dir = "{state}"
commit_interval = 0.2

[control]
socket = "{socket}"
"""


def write_config(tmp_path: Path, source: str = "replay", speed: float = 1.0,
                 log: Path = SAMPLE) -> tuple[Path, Path]:
    """A configuration with one channel ``vehicle`` (a replay of ``log`` or the
    simulator) and a control socket in ``tmp_path``: (its path, the socket's)."""
    socket = tmp_path / "control"
    channel = (REPLAY if source == "replay" else SIMULATOR).format(log=log, dbc=DBC,
                                                                     speed=speed)
    config = tmp_path / "bavard.toml"
    config.write_text(channel + COMMON.format(state=tmp_path / "state", socket=socket))
    return config, socket


@contextlib.contextmanager
def running_service(tmp_path: Path, source: str = "replay", speed: float = 1.0,
                    log: Path = SAMPLE, timeout: float = 30.0
                    ) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """The service, once its control socket answers; killed at the end if it still runs.
    Its stderr is in ``tmp_path/service.log``."""
    config, socket = write_config(tmp_path, source, speed, log)
    stderr = tmp_path / "service.log"
    grant_for(config)
    proc = subprocess.Popen([sys.executable, "-m", "agent", "run", "--config", str(config)],
                            stdout=subprocess.DEVNULL, stderr=stderr.open("wb"), cwd=ROOT)
    try:
        wait_for_socket(proc, socket, stderr, timeout)
        yield proc, socket
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def wait_for_socket(proc: subprocess.Popen[bytes], socket: Path, stderr: Path,
                    timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, f"the service exited: {stderr.read_text()}"
        try:
            with ControlClient.connect(socket, timeout=5):
                return
        except ControlError:
            assert time.monotonic() < deadline, (
                f"no control socket after {timeout} s: {stderr.read_text()}")
            time.sleep(0.1)
