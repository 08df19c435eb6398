"""A real systemd-style notification socket for tests: AF_UNIX datagrams, path or abstract."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path


class NotifySocket:
    def __init__(self, where: Path | str) -> None:
        """``where``: a path, or ``@name`` for an abstract socket."""
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        where = str(where)
        self.address = where
        self.sock.bind("\0" + where[1:] if where.startswith("@") else where)
        self.messages: list[dict[str, str]] = []

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "NOTIFY_SOCKET": self.address, **extra}

    def receive(self, timeout: float) -> dict[str, str] | None:
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return None
        fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
        self.messages.append(fields)
        return fields

    def wait_for(self, key: str, value: str | None = None, timeout: float = 20.0
                 ) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            msg = self.receive(left)
            if msg is not None and key in msg and (value is None or msg[key] == value):
                return msg
        raise AssertionError(f"no {key}={value or '*'} within {timeout} s; got {self.messages}")

    def close(self) -> None:
        self.sock.close()
