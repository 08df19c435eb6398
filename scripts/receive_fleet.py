"""What scripts/bench_receive.py sends, and how: a fleet's batches and the concurrent
senders (the receivers are scripts/receiver_processes.py).

The fleet: the sample drive (tests/data/sample_drive.log) through the demo's
pipeline (dbc/demo_vehicle.dbc, agent/defaults/demo.toml's selection and rules),
cut as the agent's uploader cuts batches (at most ``batch_seconds`` of the
records' own time and ``batch_items`` records, agent.upload.settings), encoded
at zstd 3. Every vehicle of the fleet drives it under its own pseudonym, a few
minutes after the previous one (so its batch ids, sequence numbers and
timestamps are its own), all encoded once, before anything is timed.

The senders: threads, each with its own :class:`~agent.upload.http.HttpTransport`
(one keep-alive connection, the agent's content type and ``Idempotency-Key``),
a fixed number per receiver, all taking the next batch from one queue: a
receiver that is done sooner takes more, as behind a least-connections load
balancer.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass

import benchlib
from bench_batch import demo_config
from receiver_processes import BenchError

from agent.batch import (
    Batch,
    SignalKey,
    SignalMeta,
    dbc_fingerprint,
    encode,
    pseudonymous_vehicle_id,
    signal_metadata,
)
from agent.errors import UploadError
from agent.frames import Sample
from agent.pipeline import Pipeline
from agent.upload.http import HttpTransport
from agent.upload.settings import UploadConfig
from agent.upload.transport import TransportConfig

SECRET = b"bench-receive fleet pseudonym key"
START_GAP_US = 5 * 60 * 1_000_000  # each vehicle starts its drive 5 min after the last


@dataclass(frozen=True)
class Upload:
    """One encoded batch, as a vehicle would send it."""

    batch_id: str
    vehicle: str
    payload: bytes
    samples: int


def drive_windows(frames: int | None, seconds: float, items: int) -> list[list[Sample]]:
    """The sample drive's samples as the demo keeps them, cut into batches: at most
    ``seconds`` of frame time and ``items`` samples each (the first ``frames`` only)."""
    config = demo_config(benchlib.SAMPLE_DRIVE)
    pipeline = Pipeline.from_config(config)
    for ch in pipeline.channels:
        ch.source.close()  # only its decoder and rules are used here
    decode_frame = pipeline.channels[0].decoder.decode
    keep = pipeline.rules.filter_decoded
    out: list[list[Sample]] = []
    start: float | None = None
    for frame in benchlib.read_frames(benchlib.SAMPLE_DRIVE.log, frames):
        if start is None or frame.timestamp - start >= seconds or len(out[-1]) >= items:
            out.append([])
            start = frame.timestamp
        decoded = decode_frame(frame)
        if decoded is not None:
            kept = keep(decoded)
            if len(out[-1]) + len(kept) > items:  # the store cuts between chunks, not frames
                out.append([])
                start = frame.timestamp
            out[-1].extend(kept)
    return [w for w in out if w]


def vehicle_uploads(name: str, windows: list[list[Sample]], shift_us: int,
                    meta: dict[SignalKey, SignalMeta]) -> list[Upload]:
    """``windows`` as the batches of the vehicle ``name`` (its VIN), timestamps moved by
    ``shift_us`` microseconds, with the signals' metadata as the agent sends it."""
    fingerprint = dbc_fingerprint([benchlib.SAMPLE_DRIVE.dbc])
    vehicle = pseudonymous_vehicle_id(name, SECRET)
    out: list[Upload] = []
    seq = 0
    for window in windows:
        samples = [s._replace(timestamp=(round(s.timestamp * 1e6) + shift_us) / 1e6)
                   for s in window]
        batch = Batch(vehicle, seq, seq + len(samples) - 1, fingerprint,
                      samples).with_metadata(meta)
        seq = batch.seq_last + 1
        out.append(Upload(batch.batch_id, vehicle, encode(batch, level=3), len(samples)))
    return out


def fleet(vehicles: int, warm_ups: int, frames: int | None = None,
          seconds: float | None = None) -> tuple[list[Upload], list[Upload]]:
    """(the fleet's batches, ``warm_ups`` batches of vehicles of their own): every
    vehicle's first batch, then every vehicle's second, and so on, as they would
    arrive from a fleet driving at once."""
    usual = UploadConfig()
    windows = drive_windows(frames, seconds or usual.batch_seconds, usual.batch_items)
    meta = signal_metadata("can0", [benchlib.load(benchlib.SAMPLE_DRIVE)])
    per_vehicle = [vehicle_uploads(f"BVRDFLEET{k:08d}", windows, k * START_GAP_US, meta)
                   for k in range(vehicles)]
    uploads = [u for i in range(len(windows)) for v in per_vehicle for u in v[i:i + 1]]
    warm = [vehicle_uploads(f"BVRDWARMUP{k:07d}", windows[:1], 0, meta)[0]
            for k in range(warm_ups)]
    return uploads, warm


@dataclass(frozen=True)
class Sent:
    seconds: float  # first POST to the last 2xx answer
    cpu: float  # this process's CPU time meanwhile (the senders)
    per_receiver: list[int]  # batches each receiver answered


def send(urls: list[str], uploads: list[Upload], per_receiver: int,
         timeout: float = 600.0) -> Sent:
    """POST every upload once, ``per_receiver`` threads per URL taking from one queue.

    BenchError when a send fails (no retry: a bench that needed one is not measuring
    the steady state) or the whole does not end within ``timeout`` seconds.
    """
    todo: queue.SimpleQueue[Upload] = queue.SimpleQueue()
    for upload in uploads:
        todo.put(upload)
    threads = len(urls) * per_receiver
    start = threading.Barrier(threads + 1, timeout=30.0)
    done = [0] * threads
    last = [0.0] * threads
    errors: list[str] = []
    transports = [HttpTransport(TransportConfig(f"{url}/batches", timeout=60.0))
                  for url in urls for _ in range(per_receiver)]

    def work(n: int) -> None:
        transport = transports[n]
        start.wait()
        try:
            while not errors:
                try:
                    upload = todo.get_nowait()
                except queue.Empty:
                    return
                transport.send(upload.batch_id, upload.vehicle, upload.payload)
                last[n] = time.perf_counter()
                done[n] += 1
        except Exception as exc:  # reported; the bench then fails
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            transport.close()

    workers = [threading.Thread(target=work, args=(n,), name=f"sender-{n}", daemon=True)
               for n in range(threads)]
    for worker in workers:
        worker.start()
    start.wait()
    began, cpu = time.perf_counter(), time.process_time()
    deadline = began + timeout
    for worker in workers:
        worker.join(max(0.0, deadline - time.perf_counter()))
    cpu = time.process_time() - cpu
    if any(worker.is_alive() for worker in workers):
        errors.append(f"the sends did not end within {timeout:g} s")
        for transport in transports:
            transport.close()
    if errors:
        raise BenchError(f"a send failed: {errors[0]}")
    counts = [sum(done[i * per_receiver:(i + 1) * per_receiver]) for i in range(len(urls))]
    return Sent(max(last) - began, cpu, counts)


def warm_up(urls: list[str], uploads: list[Upload]) -> None:
    """One batch to each receiver (its first one pays the lazy imports), untimed."""
    for url, upload in zip(urls, uploads, strict=False):
        transport = HttpTransport(TransportConfig(f"{url}/batches", timeout=60.0))
        try:
            transport.send(upload.batch_id, upload.vehicle, upload.payload)
        except UploadError as exc:
            raise BenchError(f"warm-up send to {url} failed: {exc}") from None
        finally:
            transport.close()
