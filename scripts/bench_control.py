#!/usr/bin/env python3
"""Ingest with the control socket's subscribers: does a stuck client slow the pipeline?

The sample drive, repeated ``--repeat`` times (each copy's timestamps shifted
after the previous one, so it reads as one long drive), is replayed as fast as
possible through a real Pipeline (on-change for every signal, counters and
checksums not selected) into the SQLite store in a temporary state directory,
timed until the last sample is committed, in three conditions measured in the
same run, best of ``--rounds``:

1. no control server (``Pipeline.tap`` unset);
2. a control server with two stuck subscribers, one on frames and one on
   samples, that never read a byte;
3. a control server with one reader, another process, subscribed to every
   frame and every sample and reading all it is sent.

Printed: frames/s of each (wall clock) and frames per CPU-second of the
benchmark's process (every thread: pipeline, store, control server; what
other programs on the machine take does not count there), the ratios to (1),
what the stuck peers lost (their drops, counted), what the reader received
and was told it lost.

Checked: each condition read every frame; the store holds the same samples
in the three conditions (in the first round); each stuck peer lost items and
every item is accounted for (sent before its buffers filled, dropped and
counted, or still queued); the reader received or was told it lost every
frame and every sample. A difference ends the run with exit status 1.

A stuck peer's cost is mostly paid once: the JSON that fills its socket and its
1 MiB output buffer before the service stops converting for it (about 0.1 s of
CPU for the two here); after that, one comparison and one addition per record.
The longer the run, the closer (2) comes to (1).

Usage: scripts/bench_control.py [--repeat N] [--rounds N]   (--repeat 1 --rounds 1: a smoke run)
"""

from __future__ import annotations

import argparse
import gc
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import benchlib
from benchlib import Mismatch

from agent.config import parse_config
from agent.control import protocol
from agent.control.client import ControlClient
from agent.control.server import ControlServer
from agent.control.tap import Tap
from agent.errors import ControlError
from agent.frames import Sample
from agent.pipeline import Pipeline
from agent.store import Store, StoreConfig

CONDITIONS = ("alone", "stuck", "reader")
TITLES = {"alone": "(1) no control server",
          "stuck": "(2) two stuck subscribers (frames, samples), never read",
          "reader": "(3) one reader of every frame and every sample"}
WAIT = 60.0  # seconds: a subscriber appearing, a reader catching up


def repeat_log(source: Path, times: int, target: Path) -> int:
    """``source`` ``times`` over, each copy after the previous one; its frame count."""
    lines = source.read_text(encoding="ascii").splitlines()
    first = float(lines[0].split(")", 1)[0].strip("("))
    last = float(lines[-1].split(")", 1)[0].strip("("))
    span = last - first + 0.01
    with target.open("w", encoding="ascii") as out:
        for n in range(times):
            shift = n * span
            for line in lines:
                stamp, rest = line.split(")", 1)
                out.write(f"({float(stamp.strip('(')) + shift:.6f}){rest}\n")
    return len(lines) * times


@dataclass
class Outcome:
    frames: int
    seconds: float  # wall clock
    cpu: float  # CPU seconds of this process (every thread: pipeline, store, server)
    held: list[Sample] | None
    peers: dict[str, dict[str, Any]] = field(default_factory=dict)  # topic -> server stats
    reader: dict[str, dict[str, int]] = field(default_factory=dict)  # topic -> counts
    decoded: int = 0


def wait_for(condition: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench_control: {what} within {WAIT:.0f} s")
        time.sleep(0.01)


def run_once(config_text: str, condition: str, check: bool, workdir: Path) -> Outcome:
    config = parse_config(config_text, base_dir=benchlib.ROOT)
    server = reader = None
    stuck: list[Any] = []
    tap = Tap()
    socket_path = workdir / "control"
    with tempfile.TemporaryDirectory() as state:
        store = Store(StoreConfig(state_dir=Path(state))).start()
        try:
            pipeline = Pipeline.from_config(config)
            if condition != "alone":
                pipeline.tap = tap
                server = ControlServer(socket_path, {}, tap, hello={"version": "bench"},
                                       group=None)
                server.start()
                if condition == "stuck":
                    stuck = [stuck_peer(socket_path, "frames"), stuck_peer(socket_path, "samples")]
                else:
                    reader = subprocess.Popen(
                        [sys.executable, __file__, "--reader", str(socket_path)],
                        stdout=subprocess.PIPE, text=True)
                wait_for(lambda: len(tap.subscriptions()) == 2, "the subscribers did not come")
            def sink(samples: list[Sample]) -> None:
                store.put_samples(samples)

            # what earlier runs left (the reference samples of the check) is set aside
            # from the collector's passes: they would lengthen later runs' only
            gc.collect()
            gc.freeze()
            start, cpu = time.perf_counter(), time.process_time()
            pipeline.run(sink, threading.Event())
            store.flush()
            seconds = time.perf_counter() - start
            cpu = time.process_time() - cpu
            gc.unfreeze()
            held = read_back(store) if check else None
            outcome = Outcome(pipeline.frames_in, seconds, cpu, held,
                              decoded=pipeline.samples_decoded)
            if server is not None:
                if reader is not None:  # untimed: it reads what is left, then stops
                    totals = {"frames": pipeline.frames_in, "samples": pipeline.samples_decoded}
                    wait_for(lambda: caught_up(server, totals), "the reader did not catch up")
                    time.sleep(0.3)  # the line saying the last drops: written, then read
                outcome.peers = {p["topic"]: p for p in server.stats()["peers"]}
                server.close()
            if reader is not None:
                out, _ = reader.communicate(timeout=WAIT)
                outcome.reader = json.loads(out)
        finally:
            for peer in stuck:
                peer.close()
            if server is not None:
                server.close()
            if reader is not None and reader.poll() is None:
                reader.kill()
                reader.wait()
            store.close()
    return outcome


def stuck_peer(path: Path, topic: str) -> Any:
    """A peer that subscribes and never reads a byte."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(path))
    sock.sendall(protocol.encode({"v": 1, "id": 1, "cmd": "subscribe", "args": {"topic": topic}}))
    return sock


def caught_up(server: ControlServer, totals: dict[str, int]) -> bool:
    """Every item of each topic sent or counted as dropped, nothing waiting in a
    subscription nor in an output buffer."""
    peers = server.stats()["peers"]
    return len(peers) == len(totals) and all(
        p["sent"] + p["dropped"] == totals[p["topic"]] and not p["queued"] and not p["buffered"]
        for p in peers)


def read_back(store: Store) -> list[Sample]:
    out: list[Sample] = []
    while (batch := store.next_batch(max_items=50_000)) is not None:
        out.extend(batch.samples)
        store.ack(batch.seq_first, batch.seq_last)
    return out


# --- the reader: another process, one connection per topic, every item read


def reader_main(path: str) -> int:
    counts: dict[str, dict[str, int]] = {}

    def read(topic: str) -> None:
        mine = counts[topic] = {"items": 0, "dropped": 0, "lines": 0}
        try:
            with ControlClient.connect(path) as client:
                for message in client.stream(topic):
                    mine["items"] += len(message["items"])
                    mine["dropped"] += message["dropped"]
                    mine["lines"] += 1
        except ControlError:
            pass  # the service closed the connection: the end

    threads = [threading.Thread(target=read, args=(t,)) for t in ("frames", "samples")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps(counts))
    return 0


def report(total_frames: int, repeat: int, rounds: int, stored: int,
           results: dict[str, list[Outcome]]) -> None:
    best = {c: min(results[c], key=lambda o: o.seconds) for c in CONDITIONS}
    rate = {c: total_frames / best[c].seconds for c in CONDITIONS}
    per_cpu = {c: total_frames / min(o.cpu for o in results[c]) for c in CONDITIONS}
    print(f"sample drive x{repeat}: {total_frames:,} frames, {stored:,} samples stored, "
          f"{rounds} round{'s' if rounds > 1 else ''} (best of each)")
    print(f"  {'':<58}{'frames/s':>11}{'':8}{'frames per CPU-s':>18}")
    for c in CONDITIONS:
        print(f"  {TITLES[c]:<58}{rate[c]:>11,.0f}  {rate[c] / rate['alone']:.2f}x (1)"
              f"{per_cpu[c]:>12,.0f}  {per_cpu[c] / per_cpu['alone']:.2f}x (1)")
    for topic in ("frames", "samples"):
        peer = best["stuck"].peers[topic]
        print(f"  (2) stuck {topic} subscriber: {peer['sent']:,} items sent before its buffers "
              f"filled, {peer['dropped']:,} dropped and counted")
    for topic in ("frames", "samples"):
        got = best["reader"].reader[topic]
        print(f"  (3) reader, {topic}: {got['items']:,} received in {got['lines']:,} lines, "
              f"{got['dropped']:,} dropped and counted")
    print(f"  checked: the store holds the same {stored:,} samples in the three conditions; "
          "every frame and sample was sent to each peer or counted as lost")


def check_store(condition: str, reference: list[Sample], held: list[Sample],
                wrong: tuple[str, str] | None) -> None:
    """What ``condition`` stored is what (1) stored, sample for sample."""
    if wrong is not None and wrong[0] == condition:
        volatile = benchlib.VOLATILITY.for_databases([benchlib.load(benchlib.SAMPLE_DRIVE)])
        held = benchlib.corrupt_samples(held, wrong[1], volatile)
    benchlib.check_samples(f"{TITLES[condition]}, the store",
                           [(s.timestamp, s.message, s.signal, (s.value, s.label))
                            for s in reference],
                           [(s.timestamp, s.message, s.signal, (s.value, s.label))
                            for s in held], against="(1) no control server")


def check(total_frames: int, results: dict[str, list[Outcome]]) -> None:
    for c in CONDITIONS:
        for o in results[c]:
            if o.frames != total_frames:
                raise Mismatch(f"{TITLES[c]}: the pipeline read {o.frames:,} frames, the log "
                               f"holds {total_frames:,}")
    for o in results["stuck"]:
        for topic, total in (("frames", total_frames), ("samples", o.decoded)):
            peer = o.peers[topic]
            if peer["sent"] + peer["dropped"] + peer["queued"] != total or not peer["dropped"]:
                raise Mismatch(f"{TITLES['stuck']}: {topic}: {peer['sent']:,} sent, "
                               f"{peer['dropped']:,} dropped, {peer['queued']:,} queued, "
                               f"of {total:,}")
    for o in results["reader"]:
        for topic, total in (("frames", total_frames), ("samples", o.decoded)):
            got = o.reader[topic]
            if got["items"] + got["dropped"] != total:
                raise Mismatch(f"{TITLES['reader']}: {topic}: {got['items']:,} received and "
                               f"{got['dropped']:,} dropped, of {total:,}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10,
                        help="copies of the sample drive in the replayed log (84,240 frames "
                             "each; default 10: about ten seconds a run here)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each condition once "
                        "in each (default 3)")
    parser.add_argument("--reader", metavar="SOCKET", help=argparse.SUPPRESS)
    benchlib.add_wrong_argument(parser, ("stuck", "reader"))
    args = parser.parse_args()
    if args.reader:
        return reader_main(args.reader)
    if args.repeat < 1 or args.rounds < 1:
        parser.error("--repeat and --rounds are at least 1")
    wrong = benchlib.parse_wrong(args.wrong, ("stuck", "reader"))
    with tempfile.TemporaryDirectory(prefix="bench-control-") as tmp:
        workdir = Path(tmp)
        log = workdir / "drive.log"
        total = repeat_log(benchlib.SAMPLE_DRIVE.log, args.repeat, log)
        text = benchlib.REPLAY_CONFIG.format(log=log, dbc=benchlib.SAMPLE_DRIVE.dbc)
        results: dict[str, list[Outcome]] = {c: [] for c in CONDITIONS}
        reference: list[Sample] | None = None  # what (1) stored, in the first round
        for n in range(args.rounds):
            for c in CONDITIONS[n % 3:] + CONDITIONS[:n % 3]:  # each first in turn
                outcome = run_once(text, c, check=n == 0, workdir=workdir)
                results[c].append(outcome)
                if outcome.held is not None:  # the first round begins with (1)
                    if reference is None:
                        reference = outcome.held
                    else:
                        check_store(c, reference, outcome.held, wrong)
                    outcome.held = None
    assert reference is not None
    check(total, results)
    report(total, args.repeat, args.rounds, len(reference), results)
    return 0


if __name__ == "__main__":
    raise SystemExit(benchlib.run_checked(main))
