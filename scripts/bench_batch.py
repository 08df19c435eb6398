#!/usr/bin/env python3
"""Upload size: bavard batches against zstd of candump text, at equal information
and as the agent is configured.

Each log is cut into batches of 60 s (by the frames' own timestamps; the last,
shorter batch counts too), encoded at zstd level 3; next to each, the candump
text (``(ts) can0 ID#DATA``) of the same stretch, compressed at zstd level 3.
Two rows per log:

(a) equal information: every signal of every frame the DBC knows (no change
    filter, no selection, counters and checksums kept), against the candump
    text of those same frames only (frames of ids the DBC does not know are
    left out of both). Checked: every batch decoded back gives, frame by frame,
    the values cantools decodes from the frame (lossless).
(b) the agent's real configuration: the demo's ``[selection]`` and
    ``[[signals]]`` (agent/defaults/demo.toml) on this log, against the
    candump text of every frame. The row says what it leaves out: frames of
    unknown ids, the signals the selection does not take (counters and
    checksums), values the rules drop (unchanged, within a deadband, sooner
    than a minimum period). Checked: every batch decodes back to what went
    in, and its samples are what the same rules keep from cantools' values of
    the selected signals (counters and checksums aside).

A difference ends the run with exit status 1.

Usage: scripts/bench_batch.py [--level N] [--seconds S] [--frames N] [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import benchlib
import zstandard
from benchlib import Case, Mismatch, Stored, Values

from agent.batch import Batch, dbc_fingerprint, decode, encode, signal_metadata
from agent.config import ChannelConfig, Config, parse_config
from agent.decode.decoder import ChannelDecoder
from agent.frames import Decoded, Frame, Sample
from agent.pipeline import Pipeline
from agent.policy.rules import RuleSet
from agent.policy.selection import Selector

VEHICLE = "3f2c9a0e5b7d41c8a6e2f90b1d4c7e35"
KEYS = ("equal", "agent")  # the two rows, for --wrong


@dataclass
class Row:
    frames: int = 0  # bus frames the candump text holds
    samples: int = 0
    batches: int = 0
    batch_bytes: int = 0
    candump_bytes: int = 0
    encode_s: float = 0.0
    decode_s: float = 0.0
    back: list[Sample] = dataclasses.field(default_factory=list)  # every batch, decoded


def candump_line(f: Frame) -> str:
    ident = f"{f.arbitration_id:08X}" if f.is_extended else f"{f.arbitration_id:03X}"
    sep = "##0" if f.is_fd else "#"
    return f"({f.timestamp:.6f}) {f.channel} {ident}{sep}{f.data.hex().upper()}\n"


class Batcher:
    """Cuts (frames, samples) into batches, encodes them, and zstd's the frames'
    candump text next to them."""

    def __init__(self, dbc: Path, databases: list[Any], level: int) -> None:
        self.meta = signal_metadata("can0", databases)
        self.fingerprint = dbc_fingerprint([dbc])
        self.level = level
        self.compressor = zstandard.ZstdCompressor(level=3)
        self.row = Row()
        self.seq = 0

    def close(self, frames: list[Frame], samples: list[Sample]) -> None:
        row = self.row
        if not frames:
            return
        batch = Batch(VEHICLE, self.seq, self.seq + max(len(samples), 1) - 1, self.fingerprint,
                      samples).with_metadata(self.meta)
        self.seq = batch.seq_last + 1
        start = time.perf_counter()
        data = encode(batch, level=self.level)
        row.encode_s += time.perf_counter() - start
        start = time.perf_counter()
        back = decode(data)
        row.decode_s += time.perf_counter() - start
        if back != batch:
            raise Mismatch(f"batch {row.batches} did not decode to what went in")
        text = "".join(candump_line(f) for f in frames).encode("ascii")
        row.batches += 1
        row.frames += len(frames)
        row.samples += len(samples)
        row.batch_bytes += len(data)
        row.candump_bytes += len(self.compressor.compress(text))
        row.back.extend(back.samples)


def windows(frames: Sequence[Frame], seconds: float) -> list[list[int]]:
    """Frame indexes cut into stretches of ``seconds`` by the frames' timestamps."""
    out: list[list[int]] = []
    start: float | None = None
    for i, frame in enumerate(frames):
        if start is None or frame.timestamp - start >= seconds:
            out.append([])
            start = frame.timestamp
        out[-1].append(i)
    return out


# --- (a) equal information


def equal_information(frames: list[Frame], db: Any, dbc: Path, cuts: list[list[int]],
                      level: int, ref: dict[int, tuple[str, Values]]) -> Row:
    """Every signal of the frames cantools decodes, batched; their candump text aside."""
    decoder = ChannelDecoder("can0", [db])  # every signal, no change filter
    batcher = Batcher(dbc, [db], level)
    for cut in cuts:
        known = [frames[i] for i in cut if i in ref]
        samples: list[Sample] = []
        for frame in known:
            decoded = decoder.decode(frame)
            if decoded is not None:
                samples.extend(decoded.samples())
        batcher.close(known, samples)
    return batcher.row


def per_frame(samples: list[Sample]) -> list[tuple[float, str, Values]]:
    """Decoded-back samples grouped into frames: a frame's samples are consecutive,
    share its timestamp and message, and hold each signal once."""
    out: list[tuple[float, str, Values]] = []
    for s in samples:
        if not out or out[-1][0] != s.timestamp or out[-1][1] != s.message \
                or s.signal in out[-1][2]:
            out.append((s.timestamp, s.message, {}))
        out[-1][2][s.signal] = (s.value, s.label)
    return out


def check_lossless(frames: list[Frame], back: list[Sample],
                   ref: dict[int, tuple[str, Values]]) -> None:
    """The batches, decoded back, give cantools' values frame by frame."""
    got = per_frame(back)
    want = sorted(ref.items())
    for (ts, message, values), (i, (ref_message, ref_values)) in zip(got, want, strict=False):
        where = f"frame {i} ({frames[i].timestamp:.6f} 0x{frames[i].arbitration_id:X})"
        if ts != frames[i].timestamp or message != ref_message:
            raise Mismatch(f"(a): the batches hold {message} at {ts:.6f} where cantools "
                           f"decodes {where} {ref_message}")
        diff = sorted(k for k in values.keys() | ref_values.keys()
                      if k not in values or k not in ref_values
                      or not benchlib.same(values[k], ref_values[k]))
        if diff:
            raise Mismatch(f"(a): {where} {message}: {diff[0]} is "
                           f"{values.get(diff[0])!r} in the batches, "
                           f"{ref_values.get(diff[0])!r} from cantools")
    if len(got) != len(want):
        raise Mismatch(f"(a): {len(got):,} frames in the batches, cantools decodes "
                       f"{len(want):,} DBC frames")


# --- (b) the agent as the demo configures it


def demo_config(case: Case) -> Config:
    """The demo's selection and rules, on this log (replayed as fast as possible)."""
    text = resources.files("agent").joinpath("defaults/demo.toml").read_text(encoding="utf-8")
    config = parse_config(text, base_dir=benchlib.ROOT, source="agent/defaults/demo.toml")
    channel = ChannelConfig(name="can0", dbc=(case.dbc,), log=case.log, speed=0)
    return dataclasses.replace(config, channels=(channel,))


@dataclass
class Left:
    unknown: int = 0  # frames of ids the DBC does not know
    not_selected: int = 0  # signal values the selection does not take
    dropped: int = 0  # selected values the rules drop (or the change filter skips)


def agent_row(case: Case, frames: list[Frame], cuts: list[list[int]], level: int
              ) -> tuple[Row, Pipeline, Config]:
    config = demo_config(case)
    pipeline = Pipeline.from_config(config)
    for ch in pipeline.channels:
        ch.source.close()  # only its decoder and rules are used here
    channel = pipeline.channels[0]
    decode_frame: Callable[[Frame], Decoded | None] = channel.decoder.decode
    keep = pipeline.rules.filter_decoded
    batcher = Batcher(case.dbc, channel.databases, level)
    for cut in cuts:
        samples: list[Sample] = []
        for i in cut:
            decoded = decode_frame(frames[i])
            if decoded is not None:
                samples.extend(keep(decoded))
        batcher.close([frames[i] for i in cut], samples)
    return batcher.row, pipeline, config


def check_agent(frames: list[Frame], stored: list[Sample], config: Config, databases: list[Any],
                ref: dict[int, tuple[str, Values]], is_volatile: benchlib.Volatile) -> None:
    """``stored`` is what the config's rules keep from cantools' values of the signals
    its selection takes, counters and checksums aside."""
    selected = Selector.from_config(config.selection, databases)
    rules = RuleSet(config.rules)
    want: list[Stored] = []
    for i in sorted(ref):
        message, values = ref[i]
        for signal, (value, label) in values.items():
            if not selected(message, signal) or is_volatile(message, signal):
                continue
            if rules.keep(Sample(frames[i].timestamp, "can0", message, signal, value)):
                want.append((frames[i].timestamp, message, signal, (value, label)))
    got = [(s.timestamp, s.message, s.signal, (s.value, s.label)) for s in stored
           if not is_volatile(s.message, s.signal)]
    benchlib.check_samples("(b) the batches", want, got, "the demo's rules on cantools' values")


def left_out(frames: list[Frame], row: Row, pipeline: Pipeline,
             ref: dict[int, tuple[str, Values]]) -> Left:
    stats = pipeline.channels[0].decoder.stats
    taken = {(s.message, s.signal) for s in row.back}
    values = [(message, signal) for message, vals in ref.values() for signal in vals]
    selected = sum(1 for key in values if key in taken)
    return Left(unknown=sum(stats.unknown.values()), not_selected=len(values) - selected,
                dropped=selected - row.samples)


# --- report


def size(what: str, size: int, frames: int, per: str, more: str = "") -> None:
    print(f"      {what + ':':<40}{size / max(frames, 1):6.2f} bytes per {per} "
          f"({size:,} bytes{more})")


def bench(case: Case, level: int, seconds: float, limit: int | None,
          wrong: tuple[str, str] | None) -> None:
    db = benchlib.load(case)
    frames = benchlib.read_frames(case.log, limit)
    ref = benchlib.reference(db, frames)
    short = benchlib.short_frames(db, frames)
    cuts = windows(frames, seconds)
    volatile = benchlib.volatility(db)

    a = equal_information(frames, db, case.dbc, cuts, level, ref)
    back = a.back
    if wrong is not None and wrong[0] == "equal":
        back = benchlib.corrupt_samples(back, wrong[1], volatile)
    check_lossless(frames, back, ref)

    b, pipeline, config = agent_row(case, frames, cuts, level)
    stored = b.back
    if wrong is not None and wrong[0] == "agent":
        stored = benchlib.corrupt_samples(stored, wrong[1], volatile)
    check_agent(frames, stored, config, pipeline.channels[0].databases, ref, volatile)
    left = left_out(frames, b, pipeline, ref)

    n = len(frames)
    known = len(ref) + len(short)
    print(f"{case.title}: {n:,} frames, {known:,} in the DBC ({known / max(n, 1):.0%}), "
          f"{b.batches} batches of {seconds:g} s")
    if short:
        print(f"  {len(short):,} DBC frames shorter than the DBC says: left out of (a)")
    print("  (a) equal information: every signal of every DBC frame "
          "(no change filter, no selection, counters kept)")
    size(f"bavard batches, zstd-{level}", a.batch_bytes, a.frames, "DBC frame",
         f", {a.samples:,} samples")
    size("candump text of the DBC frames, zstd-3", a.candump_bytes, a.frames, "DBC frame")
    print(f"      ratio {a.batch_bytes / a.candump_bytes:.3f}; lossless: every batch decoded "
          "back gives cantools' values of every DBC frame")
    print("  (b) the agent as the demo configures it (agent/defaults/demo.toml: "
          "its [selection] and [[signals]] rules)")
    size(f"bavard batches, zstd-{level}", b.batch_bytes, b.frames, "bus frame",
         f", {b.samples:,} samples")
    size("candump text of every frame, zstd-3", b.candump_bytes, b.frames, "bus frame")
    print(f"      ratio {b.batch_bytes / b.candump_bytes:.3f}; left out: {left.unknown:,} "
          f"frames of unknown ids ({left.unknown / max(n, 1):.0%}), {left.not_selected:,} "
          "values of unselected signals "
          f"(counters, checksums), {left.dropped:,} values the rules drop (unchanged, "
          "within a deadband)")
    print("      checked: the batches hold what the demo's rules keep from cantools' values")
    batches = a.batches + b.batches
    print(f"  encode {(a.encode_s + b.encode_s) * 1e3 / batches:.0f} ms, decode "
          f"{(a.decode_s + b.decode_s) * 1e3 / batches:.0f} ms per batch")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--level", type=int, default=3, help="zstd level of the batches")
    parser.add_argument("--seconds", type=float, default=60.0, help="batch length")
    parser.add_argument("--frames", type=int, default=None,
                        help="only the first N frames of each log")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 20,000 frames of the sample drive, 10 s batches")
    benchlib.add_case_arguments(parser)
    benchlib.add_wrong_argument(parser, KEYS)
    args = parser.parse_args()
    if args.quick:
        args.frames, args.seconds, args.no_corpus = args.frames or 20_000, 10.0, True
    wrong = benchlib.parse_wrong(args.wrong, KEYS)
    for case in benchlib.cases(args):
        bench(case, args.level, args.seconds, args.frames, wrong)
    return 0


if __name__ == "__main__":
    raise SystemExit(benchlib.run_checked(main))
