#!/usr/bin/env python3
"""Decode speed: cantools as a competent user writes it, against bavard's decode path.

All contenders decode the same frames, held in memory, in the same run:
- cantools: ``by_id.get(frame_id)`` (a dict built once from ``db.messages``),
  then ``msg.decode(data)`` for the frames the DBC knows (the baseline, 1.00x);
- bavard compiled decoders: generated per-message decoders, every signal of
  every frame the DBC knows, no change filter;
- cantools + skip unchanged payload bytes: the cheap trick a user would try
  first: remember the last payload per id, decode only when the bytes differ;
- bavard path (change filter): every signal kept on change, so a frame whose
  bits did not change (counters and checksums masked out) is skipped before
  decoding: what the agent runs for on-change signals without a heartbeat;
- bavard path, counters/checksums not selected: the same, without the
  counters and checksums (they protect the bus, they are not data).

Checked inside the run, before any timing (a difference ends the run with
exit status 1): the compiled decoders give cantools' values for every frame
the DBC knows; every frame a skipping contender decodes has cantools' values;
and what an on-change policy would store from each skipping contender (every
signal but counters and checksums) is, sample for sample, what it stores from
cantools' values of every frame.

The frames are frozen out of the garbage collector's reach (gc.freeze) for
every contender alike, so a collection does not walk 80k frames mid-run.

Each row: the best round's frames per CPU second of the process (all frames of
the log, known or not; CPU time, since the machine is shared), and the median
over rounds of the ratio to cantools in the same round (the figure to quote).

The bavard rows get the frames as the pipeline hands them to the decoder: in
chunks of 512 (``agent.pipeline.CHUNK_FRAMES``) to ``ChannelDecoder.decode_many``;
the cantools rows loop over the frames one by one, as a user writes it.

The logs: the demo sample drive, the corpus logs that come with the DBC of their
bus (motec), and cantools' socialledge test log, whose 5 frames are too few to
time: they are played 20,000 times in a row (timestamps shifted), as the title says.

Usage: scripts/bench_decode.py [--repeat N] [--frames N] [--quick] [--log L --dbc D]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import benchlib
from benchlib import Case, Emitted, Run, cantools_by_id, cantools_values

from agent.decode.decoder import ChannelDecoder
from agent.frames import Decoded, Frame
from agent.policy.selection import Selector

# frames per chunk as the pipeline hands them to the decoder (agent.pipeline.CHUNK_FRAMES;
# not imported, so that the bench runs without the sources' modules)
CHUNK_FRAMES = 512


@dataclass
class Contender:
    key: str  # for --wrong
    title: str
    prepare: Callable[[], Run]  # untimed: fresh state and decoders
    bavard: bool  # out holds (frame, Decoded); else (frame, message name, dict)
    every_frame: bool  # decodes every frame the DBC knows (no skipping)


def bavard(db: Any, frames: list[Frame], on_change: bool,
           agent_selection: bool = False) -> Callable[[], Run]:
    """``agent_selection``: the agent's default selection (counters and checksums
    left out); else every signal. The frames go in as the pipeline hands them to the
    decoder: chunks of ``CHUNK_FRAMES`` to ``decode_many`` (cut untimed, as a source
    thread cuts them)."""
    chunks = [frames[i:i + CHUNK_FRAMES] for i in range(0, len(frames), CHUNK_FRAMES)]

    def prepare() -> Run:
        rule = (lambda m, s: (True, 0.0, None)) if on_change else None
        wanted = benchlib.agent_selection(db) if agent_selection else Selector()
        decoder = ChannelDecoder("can0", [db], wanted, change_rule=rule,
                                 volatile=benchlib.VOLATILITY)
        decode_many = decoder.decode_many

        def run(out: list[Any] | None) -> None:
            if out is None:
                for chunk in chunks:
                    decode_many(chunk)
                return
            # which frame gave each record: the records carry the frame's timestamp
            # and come in the frames' order (checked: a record's timestamp is its frame's)
            for chunk in chunks:
                records = iter(decode_many(chunk))
                record = next(records, None)
                for f in chunk:
                    if record is not None and record.timestamp == f.timestamp and (
                            record.message == by_key.get(benchlib.frame_key(f))):
                        out.append((f, record))
                        record = next(records, None)
                if record is not None:
                    raise benchlib.Mismatch(f"{record.message} at {record.timestamp}: a record "
                                            "that no frame of its chunk gave, in that order")

        return run

    by_key = {key: m.name for key, m in cantools_by_id(db).items()}
    return prepare


def contenders(db: Any, frames: list[Frame]) -> list[Contender]:
    return [
        Contender("cantools", "cantools (by_id.get + Message.decode)",
                  benchlib.cantools_plain(db, frames), False, True),
        Contender("compiled", "bavard compiled decoders", bavard(db, frames, False),
                  True, True),
        Contender("cantools-skip", "cantools + skip unchanged payload bytes",
                  benchlib.cantools_skip_unchanged(db, frames), False, False),
        Contender("filter", "bavard path (change filter)", bavard(db, frames, True),
                  True, False),
        Contender("agent", "bavard path, counters/checksums not selected",
                  bavard(db, frames, True, agent_selection=True), True, False),
    ]


KEYS = ("cantools", "compiled", "cantools-skip", "filter", "agent")


def emitted(contender: Contender, frames: list[Frame]) -> list[Emitted]:
    """What one fresh run of ``contender`` decoded, frame by frame (untimed)."""
    index = {id(f): i for i, f in enumerate(frames)}
    out: list[Any] = []
    contender.prepare()(out)
    if contender.bavard:
        decoded: list[tuple[Frame, Decoded]] = out
        return [(index[id(f)], d.message, benchlib.bavard_values(d)) for f, d in decoded]
    return [(index[id(f)], name, cantools_values(values)) for f, name, values in out]


def check(db: Any, frames: list[Frame], all_contenders: list[Contender],
          wrong: tuple[str, str] | None) -> tuple[dict[str, int], int]:
    """Every contender's values against cantools' (see the module's docstring);
    returns the frames each decoded and the number of on-change samples."""
    ref = benchlib.reference(db, frames)
    short = benchlib.short_frames(db, frames)
    volatile = benchlib.volatility(db)
    stored = benchlib.on_change(((i, m, v) for i, (m, v) in sorted(ref.items())), volatile,
                                short)
    counts: dict[str, int] = {}
    for c in all_contenders:
        out = emitted(c, frames)
        if wrong is not None and wrong[0] == c.key:
            out = benchlib.corrupt(out, wrong[1], volatile)
        counts[c.key] = len(out)
        benchlib.check_frames(c.title, frames, ref, out, c.every_frame, volatile, short)
        if not c.every_frame:
            benchlib.check_stored(c.title, frames, stored,
                                  benchlib.on_change(out, volatile, short))
    return counts, len(stored)


def timed(run: Run) -> float:
    """CPU seconds of one run (the process's: another process on the shared machine
    does not count; the contenders are single-threaded)."""
    start = time.process_time()
    run(None)
    return time.process_time() - start


def bench(case: Case, repeat: int, limit: int | None, wrong: tuple[str, str] | None,
          played: int = 1) -> None:
    """``played``: the log's frames played that many times in a row (a tiny log)."""
    db = benchlib.load(case)
    frames = benchlib.read_frames(case.log, limit)
    if played > 1:
        frames = benchlib.copies(frames, played)
    by_id = cantools_by_id(db)
    known = sum(1 for f in frames if benchlib.frame_key(f) in by_id)
    all_contenders = contenders(db, frames)
    counts, stored = check(db, frames, all_contenders, wrong)
    gc.collect()
    gc.freeze()
    try:
        # round robin, so that each round's contenders share the machine's mood; the
        # ratio is the median over rounds of (cantools time / contender time)
        times: dict[str, list[float]] = {c.key: [] for c in all_contenders}
        for _ in range(repeat):
            for c in all_contenders:
                times[c.key].append(timed(c.prepare()))
    finally:
        gc.unfreeze()
    title = case.title if played == 1 else (
        f"{case.title}, its {len(frames) // played:,} frames played {played:,} times")
    print(f"{title}: {len(frames):,} frames, {known:,} in the DBC "
          f"({known / max(len(frames), 1):.0%}), {repeat} round{'s' if repeat > 1 else ''}")
    baseline = times["cantools"]
    for c in all_contenders:
        runs = times[c.key]
        ratio = statistics.median(b / t for b, t in zip(baseline, runs, strict=True))
        note = ""
        if not c.every_frame:
            note = f"   (skips {1 - counts[c.key] / max(known, 1):.0%} of DBC frames)"
        print(f"  {c.title:<46}{len(frames) / min(runs):11,.0f} frames/s {ratio:6.2f}x{note}")
    print(f"  checked: compiled decoders = cantools on all {counts['cantools']:,} DBC frames; "
          f"the skipping rows store cantools' {stored:,} on-change samples "
          "(counters and checksums left out)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9, help="rounds (default 9)")
    parser.add_argument("--frames", type=int, default=None,
                        help="only the first N frames of each log")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 1 round, 20,000 frames, sample drive only")
    benchlib.add_case_arguments(parser)
    benchlib.add_wrong_argument(parser, KEYS)
    args = parser.parse_args()
    if args.quick:
        args.repeat, args.frames, args.no_corpus = 1, args.frames or 20_000, True
    wrong = benchlib.parse_wrong(args.wrong, KEYS)
    for case in benchlib.cases(args):
        bench(case, args.repeat, args.frames, wrong)
    tiny = benchlib.SOCIALLEDGE
    if not args.no_corpus and tiny.log.is_file() and tiny.dbc.is_file():
        bench(tiny, args.repeat, args.frames, wrong, played=benchlib.SOCIALLEDGE_COPIES)
    elif not args.no_corpus:
        print(f"{tiny.title}: skipped, {tiny.log} or {tiny.dbc} is not there")
    return 0


if __name__ == "__main__":
    raise SystemExit(benchlib.run_checked(main))
