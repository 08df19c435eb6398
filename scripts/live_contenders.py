#!/usr/bin/env python3
"""One contender of scripts/bench_live.py: reads vcan0 in its own process.

``live_contenders.py baseline --spec SPEC.json --out OUT.json``: the reader a
user of the plain libraries writes (Eclipse Kuksa's CAN provider does this):
python-can's socketcan ``Bus`` with a kernel filter per selected id,
``bus.recv()`` in a loop, cantools' ``by_id.get`` + ``Message.decode`` of the
known ids, and an on-change keep per selected signal (a value is kept when it
differs from the last one kept for that signal: no deadband, no heartbeat);
the kept samples are appended to a list in memory. Neither ``agent`` nor
anything of bavard is imported.

``live_contenders.py bavard --config CONFIG.toml --out OUT.json``: the service's
ingest path, :class:`agent.pipeline.Pipeline` into :class:`agent.store.Store`
(a SQLite store in a temporary directory), as scripts/bench_ingest.py drives
them; ``agent`` is the one ``PYTHONPATH`` names, so the driver runs the code of
an older commit or of the working tree.

The protocol with the driver: after its set-up (imports, DBC, socket open) the
contender takes its CPU time (user + system of the process, every thread, from
``getrusage``) and prints ``ready``; it reads until a line (or the end) comes
on its standard input, and takes its CPU time then: the window's figure. It
finishes what it received (the socket's queue read to its end, the store
flushed, the threads joined), takes its CPU time again (the cost of stopping,
reported apart), and only then, untimed, writes what it stored and its
counters to ``OUT.json``.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import threading
from pathlib import Path
from typing import Any

EXTENDED = 1 << 31  # dict key bit that keeps 29-bit ids apart from 11-bit ones
RECV_TIMEOUT = 0.2  # seconds: how soon (a) notices the stop on a quiet bus


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Window:
    """The contender's CPU time: at the end of its set-up, at the end of the window (a
    line, or the end, on standard input: ``stop`` is set then), at the end of its work."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.started = self.ended = 0.0
        threading.Thread(target=self._wait, daemon=True).start()

    def _wait(self) -> None:
        sys.stdin.readline()
        self.ended = cpu_seconds()
        self.stop.set()

    def ready(self) -> None:
        """Tells the driver to start the bus."""
        self.started = cpu_seconds()
        print("ready", flush=True)

    def figures(self) -> dict[str, float]:
        """CPU seconds in the window, and after it (finishing what was received)."""
        done = cpu_seconds()
        return {"cpu": self.ended - self.started, "cpu_after": done - self.ended}


def baseline(spec: dict[str, Any]) -> dict[str, Any]:
    """(a): python-can recv + cantools decode of the known ids + on-change per signal."""
    import can
    import cantools
    from cantools.database import DecodeError

    db: Any = cantools.database.load_file(spec["dbc"])
    selected: dict[str, list[str]] = spec["selected"]  # message -> its selected signals
    by_id: dict[int, Any] = {}
    filters = []
    for message in db.messages:
        if not selected.get(message.name):
            continue
        ext = message.is_extended_frame
        by_id[message.frame_id | EXTENDED if ext else message.frame_id] = message
        filters.append({"can_id": message.frame_id, "can_mask": 0x1FFFFFFF if ext else 0x7FF,
                        "extended": ext})
    bus = can.Bus(interface="socketcan", channel=spec["iface"], can_filters=filters)
    get = by_id.get
    last: dict[tuple[str, str], Any] = {}
    samples: list[tuple[float, str, str, Any]] = []
    received = 0
    window = Window()
    stop = window.stop
    window.ready()
    recv = bus.recv
    while True:
        msg = recv(0.0 if stop.is_set() else RECV_TIMEOUT)
        if msg is None:
            if stop.is_set():  # stopped, and the socket's queue is read to its end
                break
            continue
        received += 1
        fid = msg.arbitration_id
        message = get(fid | EXTENDED if msg.is_extended_id else fid)
        if message is None:
            continue
        try:
            values = message.decode(msg.data)
        except DecodeError:  # shorter than the DBC says, unknown multiplexer value
            continue
        name = message.name
        for signal in selected[name]:
            if signal in values:
                value = values[signal]
                key = (name, signal)
                if key not in last or last[key] != value:
                    last[key] = value
                    samples.append((msg.timestamp, name, signal, value))
    cpu = window.figures()
    bus.shutdown()
    out = []
    for ts, message_name, signal, value in samples:
        label = getattr(value, "name", None)
        number = value.value if label is not None else value
        out.append([ts, message_name, signal, number, None if label is None else str(label)])
    return {**cpu, "received": received, "samples": out,
            "reader": f"python-can {can.__version__} + cantools {cantools.__version__}"}


def reader_kinds(source: Any) -> set[str]:
    """The working tree's source reads through a reader object with a ``kind``: the
    kinds of those it holds (a BCM the kernel refused is replaced by a raw one)."""
    return {v.kind for v in vars(source).values() if isinstance(getattr(v, "kind", None), str)}


def bavard(config_path: Path, into: str) -> dict[str, Any]:
    """(b), (c): the pipeline into the store (``into`` "store"), or into a list in memory
    as (a) ("list": what the store costs shows apart), with the ``agent`` of
    ``PYTHONPATH``."""
    import tempfile

    import agent
    from agent.config import parse_config
    from agent.frames import Sample
    from agent.pipeline import Pipeline
    from agent.store import Store, StoreConfig

    config = parse_config(config_path.read_text(), base_dir=config_path.parent)
    with tempfile.TemporaryDirectory() as state:
        store = Store(StoreConfig(state_dir=Path(state))).start() if into == "store" else None
        kept: list[Sample] = []
        try:
            pipeline = Pipeline.from_config(config)
            channel = pipeline.channels[0]
            source = channel.source
            kinds = reader_kinds(source)

            def sink(samples: list[Sample]) -> None:
                if store is None:
                    kept.extend(samples)
                else:
                    store.put_samples(samples)

            window = Window()
            window.ready()
            pipeline.run(sink, window.stop)
            if store is not None:
                store.flush()
            cpu = window.figures()
            while store is not None and (batch := store.next_batch(max_items=50_000)) is not None:
                kept.extend(batch.samples)
                store.ack(batch.seq_first, batch.seq_last)
            held = [[s.timestamp, s.message, s.signal, s.value, s.label] for s in kept]
        finally:
            if store is not None:
                store.close()
    stats = {k: v for k, v in vars(source.stats).items()
             if isinstance(v, int | float) and not isinstance(v, bool)}
    reader = ", ".join(sorted(kinds | reader_kinds(source))) or None
    return {**cpu, "received": source.stats.frames, "samples": held,
            "queue_dropped": channel.dropped, "stats": stats,
            "skipped": dict(source.stats.skipped),
            "reader": f"{type(source).__name__}"
                      + (f", reader {reader!r}" if isinstance(reader, str) else ""),
            "agent": str(Path(agent.__file__).parent)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("baseline", "bavard"))
    parser.add_argument("--spec", type=Path, help="baseline: the DBC, interface, selection")
    parser.add_argument("--config", type=Path, help="bavard: the configuration file")
    parser.add_argument("--into", choices=("store", "list"), default="store",
                        help="bavard: where the kept samples go")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.kind == "baseline":
        result = baseline(json.loads(args.spec.read_text()))
    else:
        result = bavard(args.config, args.into)
    args.out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
