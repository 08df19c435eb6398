"""A real Mosquitto broker for tests, on a free loopback port, killable and restartable.

The broker keeps its port and its persistence file across restarts, and saves
its state after every change, so a subscriber's queued QoS 1 messages survive a
kill; ``persistence=False`` makes a restart forget every session and message, as
a crash of a broker without persistence does. ``tls`` (a trustme CA) makes the
main listener (``port``, ``url``) a TLS one, and adds a plain one on
``plain_port`` for the tests' own subscribers.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class BrokerTls:
    ca_file: Path
    cert_file: Path
    key_file: Path
    require_client_cert: bool = False


class Broker:
    def __init__(self, directory: Path, tls: BrokerTls | None = None,
                 persistence: bool = True) -> None:
        if not Path(MOSQUITTO).exists():
            pytest.skip("mosquitto is not installed (apt-get install -y mosquitto)")
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.plain_port = self.port if tls is None else free_port()
        self.tls = tls
        self.proc: subprocess.Popen[bytes] | None = None
        self.conf = self.dir / "mosquitto.conf"
        lines = [
            "allow_anonymous true",
            f"persistence {'true' if persistence else 'false'}",
            f"persistence_location {self.dir}/",
            "autosave_interval 1",
            "autosave_on_changes true",
            "max_queued_messages 100000",
            "message_size_limit 0",
            f"log_dest file {self.dir}/mosquitto.log",
            "log_type error",
            "log_type warning",
            "log_type notice",
        ]
        if os.geteuid() == 0:
            # started as root, mosquitto drops to its own user, which cannot write in
            # pytest's 0700 temporary directory: no persistence, sessions lost on restart
            lines.append("user root")
        lines.append(f"listener {self.plain_port} 127.0.0.1")
        if tls is not None:
            lines += [f"listener {self.port} 127.0.0.1",
                      f"cafile {tls.ca_file}", f"certfile {tls.cert_file}",
                      f"keyfile {tls.key_file}",
                      f"require_certificate {'true' if tls.require_client_cert else 'false'}"]
        self.conf.write_text("\n".join(lines) + "\n")

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> Broker:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}: {err}"
                                   f"{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout} s")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        if self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def restart(self, sig: int = signal.SIGTERM) -> None:
        self.stop(sig)
        self.start()

    def log(self) -> str:
        path = self.dir / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture
def broker(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A plain (no TLS) broker on 127.0.0.1, stopped at the end of the test."""
    b = Broker(tmp_path / "mosquitto").start()
    try:
        yield b
    finally:
        b.stop()
