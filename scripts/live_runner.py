"""Running one contender of scripts/bench_live.py on vcan0: its process, the bus, its counters.

The contender (scripts/live_contenders.py) starts in its own process and says
when its set-up is done; canplayer then plays the retimed log on vcan0; half a
second after it ended the contender is told to stop, and reports its CPU time,
what it received and what it stored. vcan0's own drop counters must not move
meanwhile (a frame vcan0 dropped was never on the bus).

Lost frames: for a reader that receives every selected frame (python-can, the
raw CAN_RAW reader) the selected frames played minus those it received (the
socket's drops included), plus the pipeline's queue drops; for CAN_BCM, which
wakes the reader only on a change, the socket's SO_RXQ_OVFL count (the
reader's ``skipped["rx_overflow"]``) plus the queue drops.
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import benchlib
from benchlib import Case

IFACE = "vcan0"
SETTLE = 0.5  # seconds the contender keeps reading after canplayer ended
READY_TIMEOUT = 300.0  # seconds for a contender's set-up (imports under TCG: ~6 s)
CONTENDERS = Path(__file__).resolve().with_name("live_contenders.py")
# The demo's [selection] and [[signals]] (agent/defaults/demo.toml; checked at start)
DEMO_RULES = """
[selection]
include = ["*"]
exclude = ["*Counter*", "*Checksum*"]

[[signals]]
match = "*Speed*"
min_period = 0.0
on_change = true
deadband = 0.5
max_period = 10.0

[[signals]]
match = "*"
on_change = true
"""
CHANNEL = """
[[channels]]
name = "can0"
interface = "socketcan"
channel = "{iface}"
dbc = "{dbc}"
{reader}"""


@dataclass(frozen=True)
class Contender:
    name: str  # a, b, c, c-raw: the row, and the --wrong name
    title: str
    pythonpath: Path | None  # the agent tree; None for (a)
    reader: str | None  # the configuration's reader key; None: not written


@dataclass
class Run:
    """One contender at one rate: what it cost and what it stored."""

    cpu: float  # CPU seconds in the window
    after: float  # CPU seconds after it: the stop, the last frames, the store flushed
    rows: list[list[Any]]
    received: int  # frames the contender's socket gave it
    lost: int | None  # None: not known
    reader: str
    wall: tuple[float, float, float]  # seconds: its set-up, canplayer's run, its end


def vcan_missing() -> str | None:
    """Why this kernel cannot play the bus (no AF_CAN, no vcan0), or None."""
    if not hasattr(socket, "AF_CAN"):
        return "this Python has no AF_CAN"
    try:
        socket.socket(socket.AF_CAN, socket.SOCK_RAW, socket.CAN_RAW).close()
    except OSError as exc:
        return f"this kernel has no CAN_RAW sockets ({exc})"
    if not Path(f"/sys/class/net/{IFACE}").exists():
        return f"no {IFACE} interface"
    return None


def vcan_counters() -> dict[str, int]:
    """vcan0's own drop counters: a frame it dropped never reached any socket."""
    base = Path(f"/sys/class/net/{IFACE}/statistics")
    return {n: int((base / n).read_text()) for n in ("rx_dropped", "tx_dropped")}


def before_tree(rev: str, into: Path) -> Path:
    """agent/ and dbc/ of commit ``rev``, extracted into ``into``."""
    archive = subprocess.run(["git", "-c", f"safe.directory={benchlib.ROOT}", "-C",
                              str(benchlib.ROOT), "archive", rev, "agent", "dbc"],
                             capture_output=True, check=False)
    if archive.returncode != 0:
        raise SystemExit(f"git archive {rev}: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def check_demo_rules() -> None:
    """DEMO_RULES are still the demo configuration's [selection] and [[signals]]."""
    demo = tomllib.loads((benchlib.ROOT / "agent" / "defaults" / "demo.toml").read_text())
    ours = tomllib.loads(DEMO_RULES)
    if {k: demo.get(k) for k in ours} != ours:
        raise SystemExit("bench_live.py: DEMO_RULES no longer match agent/defaults/demo.toml")


def start(contender: Contender, work: Path, case: Case, selected: dict[str, list[str]],
          into: str) -> tuple[subprocess.Popen[str], Path]:
    """The contender's process, once it said its set-up is done; and where it will
    write its results."""
    tag = contender.name
    out = work / f"{tag}.json"
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    if contender.pythonpath is None:
        spec = work / "baseline.json"
        spec.write_text(json.dumps({"dbc": str(case.dbc), "iface": IFACE, "selected": selected}))
        cmd = ["baseline", "--spec", str(spec)]
        env.pop("PYTHONPATH", None)
    else:
        reader = "" if contender.reader is None else f'reader = "{contender.reader}"\n'
        config = work / f"{tag}.toml"
        config.write_text(CHANNEL.format(iface=IFACE, dbc=case.dbc, reader=reader) + DEMO_RULES)
        cmd = ["bavard", "--config", str(config), "--into", into]
        env["PYTHONPATH"] = str(contender.pythonpath)
    proc = subprocess.Popen([sys.executable, str(CONTENDERS), *cmd, "--out", str(out)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], READY_TIMEOUT)
    line = proc.stdout.readline() if ready else ""
    if line.strip() != "ready":
        proc.kill()
        proc.wait()
        raise SystemExit(f"({contender.name}): did not start (said {line.strip()!r}; its errors "
                         "are above)")
    return proc, out


def run_one(contender: Contender, work: Path, case: Case, log: Path, rate: int, count: int,
            selected: dict[str, list[str]], expected: int, into: str) -> Run:
    """The contender alone while canplayer plays ``log`` (``count`` frames at ``rate``);
    ``expected``: the selected frames among them."""
    began = time.monotonic()
    proc, out = start(contender, work, case, selected, into)
    setup = time.monotonic() - began
    before = vcan_counters()
    began = time.monotonic()
    player = subprocess.run(["canplayer", "-I", str(log), f"{IFACE}=can0"],
                            capture_output=True, text=True, timeout=count / rate * 20 + 60,
                            check=False)
    played = time.monotonic() - began
    time.sleep(SETTLE)
    assert proc.stdin is not None
    proc.stdin.write("stop\n")
    proc.stdin.close()
    stopped = time.monotonic()
    if proc.wait(timeout=300) != 0:
        raise SystemExit(f"({contender.name}): failed (status {proc.returncode}; its errors "
                         "are above)")
    if player.returncode != 0:
        raise SystemExit(f"canplayer failed: {player.stderr.strip()}")
    wall = (setup, played, time.monotonic() - stopped)
    after = vcan_counters()
    if after != before:
        raise SystemExit(f"{IFACE} dropped frames itself: {before} -> {after}")
    result = json.loads(out.read_text())
    reader = result["reader"]
    queue = result.get("queue_dropped", 0)
    if "'bcm'" in reader:  # woken on changes only: the kernel's drop count says it
        lost = result["skipped"].get("rx_overflow", 0) + queue
    else:
        lost = expected - result["received"] + queue
    return Run(result["cpu"], result["cpu_after"], result["samples"], result["received"], lost,
               reader, wall)
