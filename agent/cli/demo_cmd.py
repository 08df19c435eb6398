"""``bavard demo``: the simulated vehicle -> the agent -> a receiver, all on this machine.

The agent is the real service (agent.service.daemon, as ``bavard run`` runs it)
with the embedded demo configuration, its buffer in a temporary directory, and
an ``[upload]`` to the reference receiver (agent.receiver) listening on
127.0.0.1. At the end the sources stop, the buffer drains to the receiver, and
the receiver's summary shows what arrived.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

HELP = "drive the simulated vehicle through the agent to a receiver on this machine, live"
DRAIN_SECONDS = 15.0  # at the end: how long the buffer may take to reach the receiver


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=float, default=20.0,
                        help="seconds of wall time to run (default 20; 0 = the whole drive)")
    parser.add_argument("--speed", type=float, default=1.0,
                        help="simulation speed: 1 = real time, 10 = ten times, 0 = flat out")
    parser.add_argument("--seed", type=int, default=1, help="simulator seed")
    parser.add_argument("--dir", type=Path, default=None,
                        help="keep the buffer and the receiver's database here "
                             "(default: a temporary directory, removed at the end)")


def demo_config(state: Path, url: str, seed: int, speed: float) -> str:
    text = resources.files("agent").joinpath("defaults/demo.toml").read_text(encoding="utf-8")
    text = text.replace("seed = 1", f"seed = {seed}").replace("speed = 1.0", f"speed = {speed}")
    return text + (f'\n[store]\nstate_dir = "{state}"\ncommit_interval = 0.5\n'
                   f'\n[upload]\nurl = "{url}"\nbatch_seconds = 10.0\nlinger = 3.0\n')


def render(daemon: Any, receiver: Any, elapsed: float, out: TextIO) -> None:
    pipeline, uploader = daemon.pipeline, daemon.uploader
    frames = pipeline.frames_in if pipeline is not None else 0
    up = uploader.stats if uploader is not None else None
    got = receiver.stats()["total"]
    lines = [f"bavard demo: {elapsed:6.1f} s, {frames:,} bus frames "
             f"({frames / max(elapsed, 1e-9):,.0f}/s)"]
    if pipeline is not None:
        rules = pipeline.rules.stats
        for ch in pipeline.channels:
            st = ch.decoder.stats
            lines.append(f"  decode  {ch.config.name}: {st.decoded:,} frames decoded, "
                         f"{st.unchanged:,} skipped unchanged; rules dropped "
                         f"{rules.unchanged:,} unchanged, {rules.rate_limited:,} rate-limited")
    if daemon.store is not None:
        classes = daemon.store.stats().classes
        lines.append(f"  buffer  {sum(c.items for c in classes.values()):,} records waiting, "
                     f"{sum(c.acked for c in classes.values()):,} delivered and deleted")
    if up is not None:
        lines.append(f"  upload  {up.batches:,} batches, {up.items:,} records, "
                     f"{up.bytes / 1024:,.1f} KiB sent ({up.bytes / max(frames, 1):.2f} B per "
                     f"bus frame), {up.transient} retried, {up.refused} refused")
    lines.append(f"  receiver  {got.get('stored', 0):,} batches stored, "
                 f"{got.get('duplicates', 0)} duplicates dropped, {got.get('invalid', 0)} invalid")
    out.write("\n".join(lines) + "\n")


def run(args: argparse.Namespace) -> int:
    from agent.cli.receive_cmd import render as render_summary
    from agent.receiver.core import Receiver
    from agent.receiver.database import ReceiverDb
    from agent.receiver.http_server import serve
    from agent.receiver.summary import summarize
    from agent.service.daemon import Daemon

    with tempfile.TemporaryDirectory(prefix="bavard-demo-") as tmp:
        base = args.dir or Path(tmp)
        base.mkdir(parents=True, exist_ok=True)
        (base / "state").mkdir(exist_ok=True)
        receiver = Receiver.open(base / "received")
        server = serve(receiver, "127.0.0.1", 0)
        config = base / "demo.toml"
        config.write_text(demo_config(base / "state", server.url, args.seed,
                                      max(args.speed, 0.0)))
        daemon = Daemon(config)
        result: list[int] = []
        worker = threading.Thread(target=lambda: result.append(daemon.run()), name="agent",
                                  daemon=True)
        started = time.monotonic()
        worker.start()
        tty = sys.stdout.isatty()
        try:
            while worker.is_alive():
                worker.join(timeout=1.0)
                elapsed = time.monotonic() - started
                if tty:
                    sys.stdout.write("\x1b[H\x1b[2J")
                    render(daemon, receiver, elapsed, sys.stdout)
                    sys.stdout.flush()
                ended = daemon.pipeline is not None and daemon.pipeline.frames_in and (
                    daemon._pipeline_worker is None
                    or not daemon._pipeline_worker.thread.is_alive())
                if (args.duration and elapsed >= args.duration) or ended:
                    break
            daemon.stop_sources()
            _drain(daemon, DRAIN_SECONDS)
            if tty:
                sys.stdout.write("\x1b[H\x1b[2J")
            render(daemon, receiver, time.monotonic() - started, sys.stdout)
        except KeyboardInterrupt:
            pass
        finally:
            daemon.request_stop()
            worker.join(timeout=10)
            server.close()
            receiver.close()
        with ReceiverDb(base / "received", readonly=True) as db:
            sys.stdout.write("\n" + render_summary(summarize(db)) + "\n")
        if args.dir is None:
            sys.stdout.write("(the demo's buffer and receiver database were in a temporary "
                             "directory; --dir DIR keeps them)\n")
    return result[0] if result else 1


def _drain(daemon: Any, timeout: float) -> None:
    """Wait until the buffer is empty (everything reached the receiver) or ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and daemon.store is not None:
        stats = daemon.store.stats()
        if not any(c.items for c in stats.classes.values()):
            return
        if daemon.uploader is not None:
            daemon.uploader.wake()
        time.sleep(0.2)
