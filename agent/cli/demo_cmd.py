"""``bavard demo``: the simulated vehicle -> the agent -> a receiver, all on this machine.

The agent is the real service (agent.service.daemon, as ``bavard run`` runs it)
with the embedded demo configuration, its buffer in a temporary directory, and
an ``[upload]`` to the reference receiver (agent.receiver) listening on
127.0.0.1. At the end the sources stop, the buffer drains to the receiver, and
the receiver's summary shows what arrived.

Two channels: the simulated vehicle's CAN bus, decoded through its DBC, and
the same vehicle's OBD-II port: simulated engine and gearbox ECUs
(agent.sources.simulator.obd_ecu) answer on a virtual CAN bus, and the
agent's OBD channel asks them for PIDs, trouble codes (one appears at the
harsh brake) and the VIN, through ISO-TP as on a real car.

While it runs, the technician's commands reach the agent on its control
socket, in the demo's temporary directory: the demo prints the
``bavard status --socket ...`` line to try in another terminal.

By default the whole drive cycle plays (cold start, city, highway, harsh
brake, parking, a minute parked: 300 s of vehicle time) at ten times real time,
so in about 30 s.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

from agent.sources.simulator.plan import DEFAULT_CYCLE_LENGTH

HELP = "drive the simulated vehicle through the agent to a receiver on this machine, live"
DRAIN_SECONDS = 15.0  # at the end: how long the buffer may take to reach the receiver
DEFAULT_SPEED = 10.0  # the 300 s drive cycle in about 30 s
OBD_BUS = "bavard-demo-obd"  # the virtual bus of demo.toml's OBD channel
FLAT_OUT = 100.0  # --speed 0: the simulated ECUs' vehicle time runs this fast
DEMO_PURPOSES = ("fleet", "insurance")  # what the demo's destinations receive


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=float, default=0.0,
                        help="stop after this many seconds of wall time (default 0: when the "
                             "drive cycle ends)")
    parser.add_argument("--speed", type=float, default=DEFAULT_SPEED,
                        help=f"simulation speed: 1 = real time, 10 = ten times, 0 = flat out "
                             f"(default {DEFAULT_SPEED:g}: the whole drive cycle in about "
                             f"{DEFAULT_CYCLE_LENGTH / DEFAULT_SPEED:.0f} s)")
    parser.add_argument("--seed", type=int, default=1, help="simulator seed")
    parser.add_argument("--dir", type=Path, default=None,
                        help="keep the buffer (DIR/state) and the receiver's database "
                             "(DIR/received) here (default: a temporary directory, removed "
                             "at the end)")


def _toml_string(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's, non-ASCII left as it is)."""
    return json.dumps(text, ensure_ascii=False)


def demo_config(state: Path, url: str, seed: int, speed: float,
                socket: Path | None = None) -> str:
    """The demo's configuration; ``state`` and ``socket`` (the control socket's path;
    None: the default's) should be absolute (a relative path would be taken relative to
    the configuration file's directory)."""
    text = resources.files("agent").joinpath("defaults/demo.toml").read_text(encoding="utf-8")
    text = text.replace("seed = 1", f"seed = {seed}").replace("speed = 1.0", f"speed = {speed}")
    return text + (f"\n[store]\nstate_dir = {_toml_string(str(state))}\ncommit_interval = 0.5\n"
                   f"\n[upload]\nurl = {_toml_string(url)}\nbatch_seconds = 600.0\n"
                   f"linger = 3.0\npurpose = \"fleet\"\n"
                   f"\n[destinations.insurer]\nurl = {_toml_string(url)}\n"
                   f"purpose = \"insurance\"\nlinger = 3.0\n"
                   + ("" if socket is None else
                      # group "": the demo's user only (no group bavard needed here)
                      f"\n[control]\nsocket = {_toml_string(str(socket))}\ngroup = \"\"\n"))


def console_line(socket: Path) -> str:
    return (f"  console  bavard status --socket {socket}   (and bavard live, record, "
            "pause, upload --now: the same --socket, while the demo runs)")


def render(daemon: Any, receiver: Any, elapsed: float, out: TextIO,
           console: Path | None = None) -> None:
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
            what = "OBD replies" if ch.config.obd is not None else "frames"
            lines.append(f"  decode  {ch.config.name}: {st.decoded:,} {what} decoded, "
                         f"{st.unchanged:,} skipped unchanged")
        lines.append(f"  rules   dropped {rules.unchanged:,} unchanged, "
                     f"{rules.rate_limited:,} rate-limited; {pipeline.events_in} events "
                     "from the sources")
    if daemon.store is not None:
        classes = daemon.store.stats().classes
        lines.append(f"  buffer  {sum(c.items for c in classes.values()):,} records waiting, "
                     f"{sum(c.acked for c in classes.values()):,} delivered and deleted")
    if up is not None:
        lines.append(f"  upload  {up.batches:,} batches, {up.items:,} records, "
                     f"{up.bytes / 1024:,.1f} KiB sent ({up.bytes / max(frames, 1):.2f} B per "
                     f"bus frame), {up.transient} retried, {up.refused} refused")
    router = getattr(daemon, "router", None)
    if router is not None:
        for dest in router.status():
            sent = daemon.uploaders.get(dest["destination"])
            lines.append(f"  owner   {dest['destination']} ({dest['purpose']}): "
                         f"{sum(dest['stored'].values()):,} items stored, "
                         f"{sent.stats.batches if sent else 0:,} batches sent"
                         + (_positions(dest["positions"]) if dest["positions"] else ""))
        if router.insights is not None:
            lines.append(f"  insights  {router.insight_events} events worked out on the box")
    lines.append(f"  receiver  {got.get('stored', 0):,} batches stored, "
                 f"{got.get('duplicates', 0)} duplicates dropped, {got.get('invalid', 0)} invalid")
    if console is not None:
        lines.append(console_line(console))
    out.write("\n".join(lines) + "\n")


def run(args: argparse.Namespace) -> int:
    from agent.cli.receive_cmd import render as render_summary
    from agent.private_files import make_private_dir
    from agent.receiver.core import Receiver
    from agent.receiver.database import ReceiverDb
    from agent.receiver.http_server import serve
    from agent.receiver.summary import summarize
    from agent.service.daemon import Daemon
    from agent.sources.simulator.obd_ecu import SimulatedEcus

    with tempfile.TemporaryDirectory(prefix="bavard-demo-") as tmp:
        # absolute once and for all: the configuration file resolves relative paths
        # against its own directory (--dir demo1 gave demo1/demo1/state)
        base = (args.dir.expanduser() if args.dir else Path(tmp)).resolve()
        base.mkdir(parents=True, exist_ok=True)
        make_private_dir(base / "state")  # decoded vehicle data: 0700 whatever the umask
        _grant_demo_consent(base / "state")
        receiver = Receiver.open(base / "received")
        server = serve(receiver, "127.0.0.1", 0)
        config = base / "demo.toml"
        # the control socket in the temporary directory, whatever --dir says: a Unix
        # socket's path is at most 107 bytes, and --dir keeps files, not sockets
        socket = Path(tmp).resolve() / "control"
        config.write_text(demo_config(base / "state", server.url, args.seed,
                                      max(args.speed, 0.0), socket), encoding="utf-8")
        # the OBD channel's vehicle: the same drive cycle, on the configuration's virtual bus
        ecus = SimulatedEcus.open("virtual", OBD_BUS, seed=args.seed,
                                  speed=args.speed if args.speed > 0 else FLAT_OUT).start()
        daemon = Daemon(config)
        result: list[int] = []
        worker = threading.Thread(target=lambda: result.append(daemon.run()), name="agent",
                                  daemon=True)
        started = time.monotonic()
        worker.start()
        tty = sys.stdout.isatty()
        if not tty:
            sys.stdout.write(console_line(socket).lstrip() + "\n")
            sys.stdout.flush()
        try:
            while worker.is_alive():
                worker.join(timeout=1.0)
                elapsed = time.monotonic() - started
                if tty:
                    sys.stdout.write("\x1b[H\x1b[2J")
                    render(daemon, receiver, elapsed, sys.stdout,
                           socket if daemon.control is not None else None)
                    sys.stdout.flush()
                ended = _vehicle_stopped(daemon)
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
            ecus.stop()
            server.close()
            receiver.close()
        with ReceiverDb(base / "received", readonly=True) as db:
            sys.stdout.write("\n" + render_summary(summarize(db)) + "\n")
            sys.stdout.write("\n" + "\n".join(insight_lines(db)) + "\n")
        if args.dir is None:
            sys.stdout.write("(the demo's buffer and receiver database were in a temporary "
                             "directory; --dir DIR keeps them)\n")
        else:
            sys.stdout.write(f"the agent's buffer: bavard buffer --state-dir {base / 'state'}\n"
                             "  (its service.stop event waits there: a service uploads it "
                             "at its next start)\n"
                             f"its configuration: {config}\n")
    return result[0] if result else 1


def _positions(counts: dict[str, int]) -> str:
    return (f"; positions: {counts['released']} sent (geohash cells), {counts['in_zone']} in "
            f"the privacy zones, {counts['outside_trip']} outside a trip, "
            f"{counts['same_cell']} in a cell already sent")


def insight_lines(db: Any) -> list[str]:
    """The events the box worked out, as the receiver got them (each once, with the
    pseudonyms that received it)."""
    seen: dict[tuple[float, str, str], list[str]] = {}
    for vehicle in db.counters()["vehicles"]:
        for event in db.events(vehicle=vehicle):
            if event.channel == "insights":
                seen.setdefault((event.timestamp, event.kind, event.detail), []).append(
                    vehicle[:8])
    lines = ["events the box worked out (the receiver's copy; to the pseudonyms shown):"]
    for (ts, kind, detail), to in sorted(seen.items()):
        stamp = time.strftime("%H:%M:%S", time.localtime(ts))
        lines.append(f"  {stamp}  {kind:<28} {detail}  [{', '.join(to)}]")
    return lines if seen else []


def _grant_demo_consent(state: Path) -> None:
    """The demo's owner consents, on its own throwaway box, to what its destinations
    receive: a real box grants nothing until its owner says so (bavard consent)."""
    import os

    from agent.privacy.consent import ConsentBook

    book = ConsentBook(state)
    for purpose in DEMO_PURPOSES:
        book.grant(purpose, None, os.getuid())
    sys.stdout.write(f"consent granted on the demo's own box: {', '.join(DEMO_PURPOSES)}\n")


def _vehicle_stopped(daemon: Any) -> bool:
    """The simulated drive cycle has played to its end (the OBD channel, which asks
    its questions for ever, does not count)."""
    pipeline = daemon.pipeline
    if pipeline is None or not pipeline.frames_in:
        return False
    return all(ch.ended for ch in pipeline.channels if not ch.source.polled)


def _drain(daemon: Any, timeout: float) -> None:
    """Wait until the buffer is empty (everything reached the receiver) or ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and daemon.stores:
        if not any(c.items for store in daemon.stores.values()
                   for c in store.stats().classes.values()):
            return
        for uploader in daemon.uploaders.values():
            uploader.wake()
        time.sleep(0.2)
