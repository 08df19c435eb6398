"""A buffer made by the real store from the sample drive replayed through the real
pipeline, for the commands that read the buffer (``export``, ``plot``).

Two channels replay the same drive: ``can0`` decoded through the demo DBC (counters
and checksums left out, at most ten samples a second per signal), ``raw0`` stored as
raw frames; plus a few events. The lists are what the store was given.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from agent.config import parse_config
from agent.frames import Event, Frame, Sample
from agent.pipeline import Pipeline
from agent.store import DB_NAME, Store, StoreConfig, read_stats_file

ROOT = Path(__file__).resolve().parents[2]
LOG = ROOT / "tests" / "data" / "sample_drive.log"
DBC = ROOT / "dbc" / "demo_vehicle.dbc"
START = 1767225600.0  # the sample drive's first second (2026-01-01T00:00:00Z)
EVENTS = [Event(START + 1.5, "can0", "dtc", "P0301", 2),
          Event(START + 61.25, "can0", "dtc", "P0420, \"cat\"", 1),  # a comma and quotes
          Event(START + 200.0, "raw0", "note", "ünïcode", 0)]
CONFIG = f"""
[[channels]]
name = "can0"
log = "{LOG}"
dbc = "{DBC}"
speed = 0
[[channels]]
name = "raw0"
log = "{LOG}"
mode = "raw"
speed = 0
[selection]
exclude = ["*Counter*", "*Checksum*"]
[[signals]]
match = "*"
min_period = 0.1
[store]
state_dir = "{{state}}"
commit_interval = 0.2
chunk_items = 5000
"""


@dataclass(frozen=True)
class SampleBuffer:
    config: Path
    state: Path
    samples: list[Sample]
    frames: list[Frame]
    events: list[Event]


def make_sample_buffer(base: Path) -> SampleBuffer:
    state = base / "state"
    config = base / "bavard.toml"
    config.write_text(CONFIG.format(state=state))
    pipeline = Pipeline.from_config(parse_config(config.read_text(), base_dir=ROOT))
    samples: list[Sample] = []
    frames: list[Frame] = []
    with Store(StoreConfig(state_dir=state, commit_interval=0.2, chunk_items=5000)) as store:

        def sink(items: list[Sample]) -> None:
            samples.extend(items)
            store.put_samples(items)

        def raw_sink(items: list[Frame]) -> None:
            frames.extend(items)
            store.put_frames(items)

        worker = threading.Thread(target=pipeline.run, args=(sink, threading.Event(), raw_sink))
        worker.start()
        worker.join(timeout=120)
        assert not worker.is_alive()
        store.put_events(EVENTS)
        store.flush()
    stats = read_stats_file(state / DB_NAME, time.time())
    assert stats.classes["samples"].items == len(samples) > 10_000
    assert stats.classes["frames"].items == len(frames) == 84_240
    assert stats.classes["events"].items == len(EVENTS)
    return SampleBuffer(config, state, samples, frames, list(EVENTS))


def encoded_batches(buffer: SampleBuffer, vehicle: str, max_items: int = 4000) -> list[bytes]:
    """Everything ``buffer`` holds, taken out as the uploader takes it (``next_batch``,
    the demo DBC's signal metadata) and encoded; the batches are acknowledged."""
    import cantools

    from agent.batch import Batch, encode, signal_metadata

    signals = signal_metadata("can0", [cantools.database.load_file(DBC)])
    payloads = []
    with Store(StoreConfig(state_dir=buffer.state)) as store:
        while (stored := store.next_batch(max_items)) is not None:
            payloads.append(encode(Batch(vehicle, stored.seq_first, stored.seq_last, "fp",
                                         stored.samples, stored.events,
                                         stored.frames).with_metadata(signals)))
            store.ack(stored.seq_first, stored.seq_last)
    return payloads
