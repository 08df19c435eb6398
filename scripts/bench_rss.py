#!/usr/bin/env python3
"""Memory of the real daemon under load: RSS of ``bavard run`` over N minutes at 4,000 frames/s.

The traffic: the demo vehicle's drive cycle (``dbc/demo_vehicle.dbc``, the
simulator's 84,240 frames in 240 s of vehicle time, 351 frames/s) repeated
back to back and time-compressed so that it comes at ``--rate`` frames/s
(default 4,000, a classic CAN bus near full load), written as a candump log
and replayed in real time (``speed = 1``) through the whole pipeline: decode,
selection, rules, the SQLite store. Upload is off. Why not ``simulate = true``
with ``speed = 11.4``: the simulator stops after one drive cycle (21 s at that
speed), and a live ``virtual`` bus cannot be fed from another process.

The configuration is the one of docs/bavard.example.toml in spirit: counters
and checksums not selected, every signal on change with a 60 s heartbeat.
Timestamps start at the current time, so no sample is too old for the store.

Measured from /proc/PID/status every ``--every`` seconds: VmRSS (resident now)
and VmHWM (the peak so far), printed each minute with the frame rate the daemon
itself reports (its ``STATUS=`` line on the notify socket), then the final and
peak figures. ``--with-largest`` adds a second, quiet channel (a python-can
``virtual`` bus) decoding with the corpus' largest DBC, to see what a big DBC
costs in the running daemon. For comparison, measured in the same run: the RSS of a bare
``python`` that imports python-can and cantools and loads one DBC (the same
demo DBC, and the corpus' largest).

Usage: scripts/bench_rss.py [--minutes 10] [--rate 4000] [--with-largest]
"""

from __future__ import annotations

import argparse
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_startup import (
    ROOT,
    largest_dbc,
    notify_socket,
    start_daemon,
    stop_daemon,
    tail,
    virtual_channel,
    write_config,
)

sys.path.insert(0, str(ROOT))
MiB = 1024 * 1024
CYCLE_SECONDS = 240.0  # the simulator's drive cycle, in vehicle time

CHANNEL = """[[channels]]
name = "can0"
log = "{log}"
speed = 1
dbc = "{dbc}"

[selection]
exclude = ["*Counter*", "*Checksum*"]

[[signals]]
match = "*"
on_change = true
max_period = 60.0
"""

BASELINE = """
import sys, can, cantools
db = cantools.database.load_file(sys.argv[1])
for line in open("/proc/self/status"):
    if line.startswith(("VmRSS", "VmHWM")):
        print(line.split()[1])
"""

_RATE = re.compile(r"([\d,]+) frames/s")


def write_traffic(path: Path, seconds: float, rate: float) -> tuple[int, float]:
    """A candump log of the drive cycle repeated for ``seconds`` at ``rate`` frames/s.
    Returns the frame count and the rate actually written."""
    from agent.sources.simulator import drive_cycle_frames
    from agent.sources.simulator.output import candump_line

    cycle = list(drive_cycle_frames(channel="can0"))
    t0 = cycle[0].timestamp
    compress = rate * CYCLE_SECONDS / len(cycle)  # vehicle seconds per wall second
    start, count, last = time.time(), 0, 0.0
    with path.open("w", encoding="ascii", newline="\n") as out:
        repeat = 0
        while True:
            lines = []
            for frame in cycle:
                ts = start + (repeat * CYCLE_SECONDS + frame.timestamp - t0) / compress
                if ts - start > seconds:
                    break
                lines.append(candump_line(frame._replace(timestamp=ts)) + "\n")
                last = ts
            out.writelines(lines)
            count += len(lines)
            if len(lines) < len(cycle):
                return count, count / max(last - start, 1e-9)
            repeat += 1


def status_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of ``pid``, in KiB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1])
    return out


def baseline_kib(dbc: Path) -> tuple[int, int]:
    out = subprocess.run([sys.executable, "-c", BASELINE, str(dbc)], check=True,
                         capture_output=True, text=True).stdout.split()
    return int(out[0]), int(out[1])


def drain_rates(sock: socket.socket, rates: list[float]) -> None:
    """Read pending notify datagrams; keep the frames/s of each STATUS line."""
    sock.setblocking(False)
    try:
        while True:
            try:
                text = sock.recv(4096).decode("utf-8", "replace")
            except BlockingIOError:
                return
            for line in text.split("\n"):
                if line.startswith("STATUS="):
                    match = _RATE.search(line)
                    if match:
                        rates.append(float(match.group(1).replace(",", "")))
    finally:
        sock.setblocking(True)


def mib(kib: float) -> str:
    return f"{kib / 1024:6.1f} MiB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=10.0, help="how long (default 10)")
    parser.add_argument("--rate", type=float, default=4000.0, help="frames/s (default 4000)")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--with-largest", action="store_true",
                        help="add a quiet channel (virtual bus) with the corpus' largest DBC")
    args = parser.parse_args()
    from agent import __version__
    from agent.resources import demo_dbc_path

    dbc = Path(demo_dbc_path())
    seconds = args.minutes * 60
    print(f"bavard {__version__}, Python {sys.version.split()[0]}; {args.minutes:g} min at "
          f"{args.rate:,.0f} frames/s, demo vehicle DBC, store on, upload off"
          + (", plus a quiet channel with the largest corpus DBC" if args.with_largest else ""))
    base_rss, base_hwm = baseline_kib(dbc)
    big = largest_dbc()
    big_rss, big_hwm = baseline_kib(big)
    with tempfile.TemporaryDirectory(prefix="bavard-rss-") as tmp:
        work = Path(tmp)
        log = work / "traffic.log"
        frames, rate = write_traffic(log, seconds + 30.0, args.rate)  # 30 s to spare
        print(f"traffic: {frames:,} frames at {rate:,.0f} frames/s "
              f"({log.stat().st_size / MiB:,.0f} MiB of candump)")
        channels = CHANNEL.format(log=log, dbc=dbc)
        if args.with_largest:
            channels = virtual_channel(big) + channels
        config = write_config(work, channels)
        daemon_log = work / "daemon.log"
        with notify_socket(work) as sock:
            daemon = start_daemon(config, sock, work / "cache", daemon_log)
            assert daemon.ready is not None
            pid = daemon.process.pid
            print(f"READY after {daemon.ready - daemon.started:.2f} s; pid {pid}\n")
            print("  minute      VmRSS       VmHWM   frames/s (daemon's STATUS)")
            began = time.monotonic()
            samples: list[tuple[float, int, int]] = []
            rates: list[float] = []
            next_print = 60.0
            try:
                while True:
                    elapsed = time.monotonic() - began
                    if daemon.process.poll() is not None:
                        raise RuntimeError(f"the daemon exited early ({daemon.process.poll()}):"
                                           f"\n{tail(daemon_log)}")
                    kib = status_kib(pid)
                    samples.append((elapsed, kib["VmRSS"], kib["VmHWM"]))
                    drain_rates(sock, rates)
                    if elapsed >= next_print or elapsed >= seconds:
                        recent = rates[-6:] or [0.0]
                        print(f"  {elapsed / 60:6.1f}  {mib(kib['VmRSS'])}  {mib(kib['VmHWM'])}"
                              f"   {statistics.mean(recent):8,.0f}", flush=True)
                        next_print += 60.0
                    if elapsed >= seconds:
                        break
                    time.sleep(min(args.every, max(0.0, seconds - elapsed)))
            finally:
                stop_seconds, status = stop_daemon(daemon)
        db_size = sum(p.stat().st_size for p in (work / "state").glob("buffer.sqlite3*"))
    final = samples[-1]
    peak = max(final[2], max(s[1] for s in samples))  # VmHWM is updated lazily by the kernel
    settled = [s for s in samples if s[0] >= min(60.0, seconds / 2)]
    print(f"\nfinal VmRSS {mib(final[1])}, peak {mib(peak)}; target <= 80 MiB: "
          f"{'met' if peak <= 80 * 1024 else 'NOT met'}")
    if len(settled) >= 2:
        growth = (settled[-1][1] - settled[0][1]) / max((settled[-1][0] - settled[0][0]) / 60,
                                                          1e-9)
        print(f"RSS change after the first minute: {growth / 1024:+.2f} MiB/min")
    steady = rates[1:-1] or rates or [0.0]  # the first and last windows hold no traffic
    print(f"daemon frames/s (median of its STATUS lines): {statistics.median(steady):,.0f}")
    print(f"buffer on disk at the end: {db_size / MiB:,.1f} MiB; SIGTERM -> exit "
          f"{stop_seconds:.2f} s, status {status}")
    print("baseline, python + python-can + cantools + one DBC (VmRSS / VmHWM):")
    print(f"  demo_vehicle.dbc          {mib(base_rss)} / {mib(base_hwm)}")
    print(f"  {big.name:25s} {mib(big_rss)} / {mib(big_hwm)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
