"""The whole chain on the vehicle: replay -> decode -> policy -> store -> batches.

What the pipeline kept is what the store hands out for upload, in order, once,
and what the batch format carries back, bit for bit.
"""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

from agent.batch import Batch, decode, encode, pseudonymous_vehicle_id
from agent.batch.model import signal_metadata
from agent.config import parse_config
from agent.decode.dbc_files import load_dbc
from agent.frames import Frame, Sample
from agent.pipeline import Pipeline
from agent.store import Store, StoreConfig
from tests.conftest import ROOT

LOG = ROOT / "tests" / "data" / "sample_drive.log"
DBC = ROOT / "dbc" / "demo_vehicle.dbc"
VEHICLE = pseudonymous_vehicle_id("WVWZZZ1JZXW000001", b"0123456789abcdef-test-secret")


def run_into_store(text: str, state: Path) -> tuple[Pipeline, list[Sample], list[Frame], Store]:
    pipeline = Pipeline.from_config(parse_config(text, base_dir=ROOT))
    store = Store(StoreConfig(state_dir=state, commit_interval=0.2)).start()
    kept: list[Sample] = []
    raw: list[Frame] = []

    def sink(samples: list[Sample]) -> None:
        kept.extend(samples)
        store.put_samples(samples)

    def raw_sink(frames: list[Frame]) -> None:
        raw.extend(frames)
        store.put_frames(frames)

    worker = threading.Thread(target=pipeline.run, args=(sink, threading.Event(), raw_sink))
    worker.start()
    worker.join(timeout=120)
    assert not worker.is_alive()
    store.flush()
    return pipeline, kept, raw, store


def drain(store: Store) -> list[Batch]:
    batches = []
    for _ in range(1000):  # bounded
        stored = store.next_batch(max_seconds=60)
        if stored is None:
            break
        seq_first, seq_last, samples, events, frames = stored
        batches.append(Batch(VEHICLE, seq_first, seq_last, "", samples, events, frames))
        assert store.ack(seq_first, seq_last) == stored.items
    return batches


def test_decoded_samples_reach_batches_once_and_exactly(tmp_path: Path) -> None:
    text = f"""
[[channels]]
name = "can0"
log = "{LOG}"
dbc = "{DBC}"
speed = 0
[selection]
exclude = ["*Counter*", "*Checksum*"]
[[signals]]
match = "*"
on_change = true
"""
    pipeline, kept, _, store = run_into_store(text, tmp_path / "state")
    try:
        assert pipeline.frames_in == 84_240
        assert len(kept) == 122_970  # as tests/test_pipeline.py computes independently
        known = signal_metadata("can0", [load_dbc(DBC)])
        batches = drain(store)
        assert store.next_batch() is None
        stats = store.stats()
    finally:
        store.close()
    assert stats.classes["samples"].items == 0
    assert stats.classes["samples"].acked == len(kept)
    # sequence ranges follow each other without a gap or an overlap
    for a, b in itertools.pairwise(batches):
        assert b.seq_first == a.seq_last + 1
    got: list[Sample] = []
    for batch in batches:
        full = batch.with_metadata(known)
        back = decode(encode(full))
        assert back == full
        got.extend(back.samples)
    assert got == kept


def test_raw_channel_frames_are_stored_as_they_are(tmp_path: Path) -> None:
    text = f"""
[[channels]]
name = "raw0"
log = "{LOG}"
mode = "raw"
speed = 0
"""
    pipeline, _, raw, store = run_into_store(text, tmp_path / "state")
    try:
        batches = drain(store)
    finally:
        store.close()
    assert len(raw) == pipeline.frames_in == 84_240
    frames = [f for b in batches for f in b.frames]
    assert frames == raw
    assert all(f.channel == "raw0" for f in frames[:10])
    back = decode(encode(batches[0]))
    assert back.frames == batches[0].frames
