"""The connectivity gate against real kernel state.

Each test makes two network namespaces of its own, ``A`` (the box) and ``B``
(the far side), joined by veth pairs. The code under test runs inside ``A`` in a
child process (``ip netns exec``) that answers one JSON line per command, so it
reads the kernel's real links, addresses and routes while the test changes them
from outside. Nothing touches the host's interfaces or routes, and no packet
can leave the two namespaces: the only one ever sent is the DNS query of the
unresolvable-name test, to a server address inside ``B``.

Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN); elsewhere the tests skip.
"""

from __future__ import annotations

import json
import selectors
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers.netns import Net

from agent.errors import ConfigError
from agent.upload.connectivity import InterfaceRules, LinkClass

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, threading, time
from dataclasses import asdict
from agent.upload.connectivity import Connectivity, InterfaceRules

conn = Connectivity(InterfaceRules.with_overrides(json.loads(sys.argv[1])))
for line in sys.stdin:
    cmd, _, arg = line.strip().partition(" ")
    if cmd == "check":
        st = conn.status(arg)
        link = None if st.link is None else asdict(st.link)
        out = {"link": link, "reason": st.reason, "rejected": list(st.rejected)}
    else:  # wait TIMEOUT STOP_AFTER (a negative STOP_AFTER: no stop event is set)
        timeout, stop_after = map(float, arg.split())
        stop = threading.Event()
        if stop_after >= 0:
            threading.Timer(stop_after, stop.set).start()
        t0, c0 = time.monotonic(), time.process_time()
        changed = conn.wait_for_change(timeout, stop)
        out = {"changed": changed, "elapsed": time.monotonic() - t0,
               "cpu": time.process_time() - c0}
    print(json.dumps(out), flush=True)
"""


class Child:
    """The connectivity code living in namespace A, one command and one reply at a time."""

    def __init__(self, ns: str, rules: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", CHILD, json.dumps(rules)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, cwd=ROOT)

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def reply(self, timeout: float = 10.0) -> dict[str, Any]:
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout):
                pytest.fail(f"no answer from the child within {timeout} s")
        line = self.proc.stdout.readline()
        if not line:
            assert self.proc.stderr is not None
            pytest.fail(f"child died: {self.proc.wait(5)}: {self.proc.stderr.read()}")
        result: dict[str, Any] = json.loads(line)
        return result

    def check(self, endpoint: str) -> dict[str, Any]:
        self.send(f"check {endpoint}")
        return self.reply()

    def wait(self, timeout: float, stop_after: float = -1.0) -> dict[str, Any]:
        self.send(f"wait {timeout} {stop_after}")
        return self.reply(timeout + 5)

    def settle(self) -> None:
        """Consume the notifications of the setup, so the next wait sees only what follows."""
        for _ in range(20):
            if not self.wait(0.3)["changed"]:
                return
        pytest.fail("the namespace never went quiet")

    def until_usable(self, endpoint: str, within: float = 5.0) -> dict[str, Any]:
        """Check, and on no link wait for a change and check again: the uploader's own loop."""
        deadline = time.monotonic() + within
        while True:
            got = self.check(endpoint)
            if got["link"] is not None or time.monotonic() > deadline:
                return got
            self.wait(0.5)

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def spawn(net: Net, rules: dict[str, str] | None = None) -> Child:
    """A child process in namespace A (closed with the namespaces)."""
    child = Child(net.a, rules or {})
    net.children.append(child)
    return child


def _usable(got: dict[str, Any], name: str) -> dict[str, Any]:
    assert got["link"] is not None, got["reason"]
    link: dict[str, Any] = got["link"]
    assert link["name"] == name, got
    return link


def _unusable(got: dict[str, Any], because: str) -> None:
    assert got["link"] is None, got
    assert because in got["reason"], got


def _prompt_change(net: Net, child: Child, *change: str) -> None:
    """Run ``ip -n A ...`` while the child waits: it must wake within 2 s."""
    child.settle()
    child.send("wait 10 -1")
    time.sleep(0.2)  # let it block in select first
    net.ip(net.a, *change)
    t0 = time.monotonic()
    got = child.reply(15)
    assert got["changed"] is True, got
    assert time.monotonic() - t0 < 2.0, got


def test_link_flapping(net: Net) -> None:
    net.veth("eth0", "p0", "10.213.0.1/24", "10.213.0.2/24")
    child = spawn(net)
    link = _usable(child.until_usable("10.213.0.2"), "eth0")
    assert link["link_class"] == LinkClass.UNMETERED
    assert (link["address"], link["gateway"], link["kernel_default"]) == ("10.213.0.1", None, True)

    _prompt_change(net, child, "link", "set", "dev", "eth0", "down")
    _unusable(child.check("10.213.0.2"), "eth0 (unmetered): down")

    _prompt_change(net, child, "link", "set", "dev", "eth0", "up")
    _usable(child.until_usable("10.213.0.2"), "eth0")

    net.ip(net.b, "link", "set", "dev", "p0", "down")  # the far end goes: carrier lost
    assert child.wait(5)["changed"]
    _unusable(child.check("10.213.0.2"), "eth0 (unmetered): no carrier")
    net.ip(net.b, "link", "set", "dev", "p0", "up")
    _usable(child.until_usable("10.213.0.2"), "eth0")


def test_address_removed(net: Net) -> None:
    net.veth("eth0", "p0", "10.213.0.1/24", "10.213.0.2/24")
    child = spawn(net)
    _usable(child.until_usable("10.213.0.2"), "eth0")
    _prompt_change(net, child, "addr", "del", "10.213.0.1/24", "dev", "eth0")
    _unusable(child.check("10.213.0.2"), "eth0 (unmetered): no IPv4 address")
    net.ip(net.a, "addr", "add", "10.213.0.1/24", "dev", "eth0")
    _usable(child.until_usable("10.213.0.2"), "eth0")


def test_route_removed(net: Net) -> None:
    net.veth("eth0", "p0", "10.213.0.1/24", "10.213.0.2/24")
    child = spawn(net)
    _unusable(child.until_usable("172.31.255.1", within=0.5), "no route to 172.31.255.1")
    net.ip(net.a, "route", "add", "172.31.255.0/24", "via", "10.213.0.2", "dev", "eth0")
    link = _usable(child.until_usable("172.31.255.1"), "eth0")
    assert link["gateway"] == "10.213.0.2"
    _prompt_change(net, child, "route", "del", "172.31.255.0/24")
    _unusable(child.check("172.31.255.1"), "eth0 (unmetered): no route to 172.31.255.1")


def test_unmetered_preferred_over_the_kernels_choice(net: Net) -> None:
    net.veth("eth0", "p0", "10.213.0.1/24", "10.213.0.2/24")
    net.veth("wwan0", "p1", "10.213.1.1/24", "10.213.1.2/24")
    for dev, gw, metric in (("wwan0", "10.213.1.2", "100"), ("eth0", "10.213.0.2", "200")):
        net.ip(net.a, "route", "add", "172.31.255.0/24", "via", gw, "dev", dev, "metric", metric)
    child = spawn(net)
    link = _usable(child.until_usable("172.31.255.1"), "eth0")
    assert (link["link_class"], link["kernel_default"]) == (LinkClass.UNMETERED, False)

    net.ip(net.b, "link", "set", "dev", "p0", "down")
    assert child.wait(5)["changed"]
    got = child.check("172.31.255.1")
    link = _usable(got, "wwan0")
    assert (link["link_class"], link["kernel_default"]) == (LinkClass.METERED, True)
    assert got["rejected"] == ["eth0 (unmetered): no carrier"]


def test_configured_classes(net: Net) -> None:
    net.veth("vbav0", "p0", "10.213.0.1/24", "10.213.0.2/24")
    _unusable(spawn(net).check("10.213.0.2"), "no interface matches the class rules")
    link = _usable(spawn(net, {"vbav*": "metered"}).until_usable("10.213.0.2"), "vbav0")
    assert link["link_class"] == LinkClass.METERED


def test_ipv6(net: Net) -> None:
    net.veth("wlan0", "p0", "fd00:213::1/64", "fd00:213::2/64")
    child = spawn(net)
    link = _usable(child.until_usable("fd00:213::2"), "wlan0")
    assert link["address"] == "fd00:213::1"
    _unusable(child.check("10.213.0.2"), "wlan0 (unmetered): no IPv4 address")
    _unusable(child.check("fd00:214::1"), "wlan0 (unmetered): no route to fd00:214::1")


def test_host_names(net: Net) -> None:
    net.veth("eth0", "p0", "10.213.0.1/24", "10.213.0.2/24")
    net.ip(net.a, "route", "add", "172.31.255.0/24", "via", "10.213.0.2")
    net.etc("hosts", "172.31.255.1 receiver.bavard.test\n")
    net.etc("nsswitch.conf", "hosts: files dns\n")
    # the only DNS server is an address in B where nothing listens: refused at once
    net.etc("resolv.conf", "nameserver 10.213.0.2\noptions timeout:1 attempts:1\n")
    child = spawn(net)
    link = _usable(child.until_usable("receiver.bavard.test"), "eth0")
    assert link["endpoint"] == "172.31.255.1"
    t0 = time.monotonic()
    _unusable(child.check("nowhere.invalid"), "cannot resolve 'nowhere.invalid'")
    assert time.monotonic() - t0 < 5


def test_endpoint_on_this_machine(net: Net) -> None:
    child = spawn(net)  # no classed interface at all, only lo
    for endpoint in ("127.0.0.1", "::1"):
        link = _usable(child.check(endpoint), "lo")
        assert link["link_class"] == LinkClass.UNMETERED


def test_wait_is_bounded_and_stoppable_without_spinning(net: Net) -> None:
    child = spawn(net)
    child.check("10.213.0.2")
    child.settle()
    got = child.wait(1.0)
    assert got["changed"] is False
    assert 0.9 <= got["elapsed"] < 1.8 and got["cpu"] < 0.1, got
    got = child.wait(30, stop_after=0.3)
    assert got["changed"] is False and got["elapsed"] < 1.3, got
    got = child.wait(0)
    assert got["changed"] is False and got["elapsed"] < 0.2, got


def test_changes_between_check_and_wait_are_not_lost(net: Net) -> None:
    net.veth("eth0", "p0", "10.213.0.1/24", "10.213.0.2/24")
    child = spawn(net)
    _usable(child.until_usable("10.213.0.2"), "eth0")
    child.settle()
    net.ip(net.a, "link", "set", "dev", "eth0", "down")  # before the wait starts
    got = child.wait(10)
    assert got["changed"] is True and got["elapsed"] < 0.5, got


def test_rules() -> None:
    rules = InterfaceRules()
    assert [rules.classify(n) for n in ("wwan0", "wwp0s20f0u6", "ppp0", "usb0")] == [
        LinkClass.METERED] * 4
    assert [rules.classify(n) for n in ("wlan0", "wlp2s0", "eth0", "enp3s0", "enx0c5b8f279a64")] \
        == [LinkClass.UNMETERED] * 5
    assert [rules.classify(n) for n in ("lo", "veth0", "docker0", "tun0")] == [None] * 4
    custom = InterfaceRules.with_overrides({"enx0c5b*": "metered", "veth*": "unmetered"})
    assert custom.classify("enx0c5b8f279a64") is LinkClass.METERED
    assert custom.classify("enp3s0") is LinkClass.UNMETERED
    assert custom.classify("veth3") is LinkClass.UNMETERED
    with pytest.raises(ConfigError, match=r"'tun\*': 'free' is not"):
        InterfaceRules.with_overrides({"tun*": "free", "wg*": "metered"})
