"""Two network namespaces of a test's own, A (the box) and B (the far side).

Nothing touches the host's interfaces or routes: veth pairs join A and B only,
and both namespaces are deleted at the end. Needs root (CAP_SYS_ADMIN,
CAP_NET_ADMIN); elsewhere the tests that use the ``net`` fixture skip.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

NETNS_ETC = Path("/etc/netns")  # `ip netns exec` bind-mounts /etc/netns/NS/* over /etc/*


class Net:
    """Two namespaces of our own, A and B, and the children running in A."""

    def __init__(self) -> None:
        base = f"bavard-t-{os.getpid()}"
        self.a, self.b = f"{base}-a", f"{base}-b"
        self.children: list[Any] = []  # anything with close(), closed first
        self.made_etc_netns = False

    def ip(self, ns: str, *args: str) -> None:
        subprocess.run(["ip", "-n", ns, *args], check=True, capture_output=True, timeout=10)

    def veth(self, name: str, peer: str, mine: str, theirs: str) -> None:
        """``name`` in A with address ``mine``, ``peer`` in B with ``theirs``, both up."""
        self.ip(self.a, "link", "add", name, "type", "veth", "peer", "name", peer, "netns", self.b)
        nodad = ["nodad"] if ":" in mine else []
        self.ip(self.a, "addr", "add", mine, "dev", name, *nodad)
        self.ip(self.b, "addr", "add", theirs, "dev", peer, *nodad)
        self.ip(self.a, "link", "set", name, "up")
        self.ip(self.b, "link", "set", peer, "up")

    def etc(self, name: str, text: str) -> None:
        """A file seen as /etc/NAME by the processes started in A from now on."""
        self.made_etc_netns = self.made_etc_netns or not NETNS_ETC.exists()
        (NETNS_ETC / self.a).mkdir(parents=True, exist_ok=True)
        (NETNS_ETC / self.a / name).write_text(text)

    def destroy(self) -> None:
        for child in self.children:
            child.close()
        for ns in (self.a, self.b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
        shutil.rmtree(NETNS_ETC / self.a, ignore_errors=True)
        if self.made_etc_netns:
            with contextlib.suppress(OSError):
                NETNS_ETC.rmdir()


@pytest.fixture
def net() -> Iterator[Net]:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    if shutil.which("ip") is None:
        pytest.skip("iproute2 `ip` is not installed")
    net = Net()
    try:
        for ns in (net.a, net.b):
            made = subprocess.run(["ip", "netns", "add", ns], capture_output=True, text=True,
                                  timeout=10)
            if made.returncode != 0:
                pytest.skip(f"`ip netns add {ns}` failed: {made.stderr.strip()}")
        net.ip(net.a, "link", "set", "lo", "up")
        net.ip(net.b, "link", "set", "lo", "up")
        net.ip(net.b, "addr", "add", "172.31.255.1/32", "dev", "lo")  # the far endpoint
        yield net
    finally:
        net.destroy()
