#!/usr/bin/env python3
"""Upload size: bavard batches against zstd of candump text, bytes per bus frame.

For each log: the frames are decoded through its DBC with every signal kept on
change (counters and checksums not selected, as the demo configures it), cut
into 60 s batches (by the frames' own timestamps; the last, shorter batch
counts too) and encoded at zstd level 3. Next to it, in the same run, the same
frames as candump text (``(ts) can0 ID#DATA``), compressed with zstd level 3
per 60 s. Every batch is decoded again and compared with what went in.

Logs: tests/data/sample_drive.log (dbc/demo_vehicle.dbc) and, when ../shared
is there, ../shared/corpus/motec/can_sample.log (sample_can_spec.dbc).

Usage: scripts/bench_batch.py [--level N] [--seconds S]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import zstandard  # noqa: E402

from agent.batch import Batch, dbc_fingerprint, decode, encode, signal_metadata  # noqa: E402
from agent.config import DEFAULT_VOLATILE, SignalRule  # noqa: E402
from agent.decode.dbc_files import load_dbc  # noqa: E402
from agent.decode.decoder import ChannelDecoder  # noqa: E402
from agent.frames import Frame, Sample  # noqa: E402
from agent.policy.rules import RuleSet  # noqa: E402
from agent.policy.selection import Selector  # noqa: E402
from agent.sources.replay import ReplaySource  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpus"
VEHICLE = "3f2c9a0e5b7d41c8a6e2f90b1d4c7e35"


@dataclass
class Result:
    frames: int = 0
    samples: int = 0
    batches: int = 0
    batch_bytes: int = 0
    candump_bytes: int = 0
    encode_s: float = 0.0
    decode_s: float = 0.0


def candump_line(f: Frame) -> str:
    ident = f"{f.arbitration_id:08X}" if f.is_extended else f"{f.arbitration_id:03X}"
    sep = "##0" if f.is_fd else "#"
    return f"({f.timestamp:.6f}) {f.channel} {ident}{sep}{f.data.hex().upper()}\n"


def bench(log: Path, dbc: Path, level: int, seconds: float) -> Result:
    db = load_dbc(dbc)
    rules = RuleSet([SignalRule("*", on_change=True)])
    decoder = ChannelDecoder("can0", [db], Selector(("*",), DEFAULT_VOLATILE),
                             lambda m, s: (True, 0.0, None), DEFAULT_VOLATILE)
    meta = signal_metadata("can0", [db])
    fingerprint = dbc_fingerprint([dbc])
    compressor = zstandard.ZstdCompressor(level=3)
    result = Result()
    seq = 0

    def close(frames: list[Frame], samples: list[Sample]) -> None:
        nonlocal seq
        if not frames:
            return
        batch = Batch(VEHICLE, seq, seq + max(len(samples), 1) - 1, fingerprint,
                      samples).with_metadata(meta)
        seq = batch.seq_last + 1
        start = time.perf_counter()
        data = encode(batch, level=level)
        result.encode_s += time.perf_counter() - start
        start = time.perf_counter()
        back = decode(data)
        result.decode_s += time.perf_counter() - start
        if back != batch:
            raise SystemExit(f"{log}: batch {result.batches} did not decode to what went in")
        text = "".join(candump_line(f) for f in frames).encode("ascii")
        result.batches += 1
        result.frames += len(frames)
        result.samples += len(samples)
        result.batch_bytes += len(data)
        result.candump_bytes += len(compressor.compress(text))

    frames: list[Frame] = []
    samples: list[Sample] = []
    start_ts: float | None = None
    with ReplaySource("bench", log, speed=0, channel="can0") as source:
        for frame in source.frames():
            if start_ts is None:
                start_ts = frame.timestamp
            if frame.timestamp - start_ts >= seconds:
                close(frames, samples)
                frames, samples, start_ts = [], [], frame.timestamp
            frames.append(frame)
            decoded = decoder.decode(frame)
            if decoded is not None:
                samples.extend(rules.filter_decoded(decoded))
    close(frames, samples)
    return result


def report(name: str, r: Result, level: int, seconds: float) -> None:
    per_frame = r.batch_bytes / r.frames
    candump = r.candump_bytes / r.frames
    print(f"{name}: {r.frames} frames, {r.samples} on-change samples, "
          f"{r.batches} batches of {seconds:g} s")
    print(f"  bavard batch, zstd-{level}:      {per_frame:6.2f} bytes per bus frame "
          f"({r.batch_bytes} bytes)")
    print(f"  candump text, zstd-3:       {candump:6.2f} bytes per bus frame "
          f"({r.candump_bytes} bytes)")
    print(f"  ratio: {per_frame / candump:.3f}  lossless: yes (every batch decoded and compared)")
    print(f"  encode {r.encode_s * 1e3 / r.batches:.0f} ms, decode "
          f"{r.decode_s * 1e3 / r.batches:.0f} ms per batch")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--level", type=int, default=3, help="zstd level of the batches")
    parser.add_argument("--seconds", type=float, default=60.0, help="batch length")
    args = parser.parse_args()

    report("sample drive (tests/data/sample_drive.log)",
           bench(ROOT / "tests" / "data" / "sample_drive.log", ROOT / "dbc" / "demo_vehicle.dbc",
                 args.level, args.seconds), args.level, args.seconds)
    motec = CORPUS / "motec"
    log, dbc = motec / "can_sample.log", motec / "sample_can_spec.dbc"
    if log.exists() and dbc.exists():
        report("motec corpus (../shared/corpus/motec/can_sample.log)",
               bench(log, dbc, args.level, args.seconds), args.level, args.seconds)
    else:
        print(f"motec corpus: skipped, {motec} is not there")
    return 0


if __name__ == "__main__":
    sys.exit(main())
