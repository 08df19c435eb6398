#!/usr/bin/env python3
"""CPU per bus frame on a real SocketCAN bus: python-can + cantools, bavard before, bavard now.

In a kernel with a vcan0 (here, or, when this kernel has none, inside the kernel
tier's guest: the script runs itself again through scripts/vcan_run.sh), for
each log (the demo sample drive with the demo DBC, the motec corpus log with
its DBC) and each rate (1,000, 4,000, 8,000 frames/s), the same N frames
(rate x --seconds; the log retimed to 1/rate apart, order kept) are played on
vcan0 by canplayer from the guest's /tmp, once for each contender, one
contender at a time, each in its own process (scripts/live_contenders.py):

  (a)      python-can ``Bus(interface="socketcan")`` with a kernel filter per
           selected id, ``recv()``, cantools ``by_id.get`` + ``decode`` of the
           known ids, on-change per selected signal (no deadband, no heartbeat),
           samples appended to a list in memory;
  (b)      bavard before this issue (``git archive`` of agent/ and dbc/ at
           --before REV): Pipeline + Store (the SQLite store in a temporary
           directory; ``--into list``: a list, as (a), so that what the store
           costs shows apart), the demo's selection and rules;
  (c)      bavard of the working tree, the same, ``reader = "auto"``;
  (c-raw)  the same with ``reader = "raw"`` (--readers names the rows).

The figure: CPU seconds (user + system of the contender's process, every
thread, getrusage) from the end of its set-up to the end of its window (the
bus played, then 0.5 s more), divided by the N frames played on the bus, and
its ratio to (a). What it spends after the window (the stop: the socket's
queue read out, the store flushed, the threads joined) is printed apart
("stopping"): a cost per run, not per frame. Lost frames (scripts/live_runner.py
says how each reader's are counted; vcan0's own drop counters must stay at 0):
a contender that lost frames did the work of fewer frames than the bus
carried, so its figure is a floor of its cost (its CPU per frame received is
printed too), and the summary says which way that bends the ratio.

Checked (scripts/live_check.py says exactly what): what each contender stored
is what cantools + on-change gives on the played frames, per signal, in order;
a difference ends the run with exit status 1. ``--wrong NAME:KIND`` corrupts one
contender's samples first, to see the check fail.

Under emulation (QEMU without KVM) the guest runs Python tens of times slower
than the host, so that every contender is CPU-bound long before 1,000 frames/s
and the ratios say nothing. ``--slowdown auto`` times the same pure-Python
work (cantools decoding 20,000 frames of the sample drive, best of 3, process
CPU time) on the host and in the guest and divides each rate by the guest's
slowdown: the guest then carries the load the rate would put on the host, and
the rows say both rates. (``--slowdown N`` divides by N; 1, the default, plays
the rates as they are.)

Usage: scripts/bench_live.py [--rates 1000,4000,8000] [--seconds 4] [--quick]
       [--slowdown auto|N]
       [--before REV] [--readers auto,raw] [--into store|list] [--no-corpus]
       [--log L --dbc D] [--wrong NAME:KIND]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import benchlib
import live_check
import live_runner
from benchlib import Case
from live_runner import CHANNEL, DEMO_RULES, IFACE, Contender, Run

from agent.config import READERS, parse_config
from agent.policy.rules import RuleSet
from agent.policy.selection import Selector

IN_GUEST = "BAVARD_BENCH_LIVE_GUEST"  # set when the script runs itself in the guest
HOST_WORK = "BAVARD_BENCH_LIVE_HOST_WORK"  # the calibration's CPU seconds on the host


def calibration() -> float:
    """CPU seconds of a fixed pure-Python work here: cantools decoding the first 20,000
    frames of the sample drive (best of 3)."""
    db = benchlib.load(benchlib.SAMPLE_DRIVE)
    run = benchlib.cantools_plain(db, benchlib.read_frames(benchlib.SAMPLE_DRIVE.log, 20_000))()
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        run(None)
        best = min(best, time.process_time() - start)
    return best


def slowdown(arg: str) -> tuple[float, str]:
    """The factor the rates are divided by, and a line saying where it comes from."""
    if arg != "auto":
        factor = float(arg)
        if not factor >= 1:
            raise SystemExit(f"--slowdown: expected auto or a number >= 1, got {arg!r}")
        return factor, f"rates divided by {factor:g} (--slowdown)"
    host = os.environ.get(HOST_WORK)
    here = calibration()
    if host is None:  # a native vcan0: the host is here
        return 1.0, "--slowdown auto: run on the host itself, rates as they are"
    factor = max(1.0, here / float(host))
    return factor, (f"--slowdown auto: the calibration took {float(host) * 1e3:.0f} ms CPU on "
                    f"the host and {here * 1e3:.0f} ms here: rates divided by {factor:.1f}")
BEFORE = "0692f2a"  # the last commit before the issue: bavard "before"


def contenders(args: argparse.Namespace, before: Path | None) -> list[Contender]:
    """(a), (b) (unless ``before`` is None), then a (c) row for each ``--readers`` key
    (``auto``: (c) itself)."""
    out = [Contender("a", "python-can recv + cantools decode, on-change", None, None)]
    if before is not None:
        out.append(Contender("b", f"bavard before ({args.before}), the pipeline", before, None))
    for reader in args.readers:
        if reader not in READERS:
            raise SystemExit(f"--readers: {reader!r} is not one of {', '.join(READERS)}")
        name = "c" if reader == "auto" else f"c-{reader}"
        out.append(Contender(name, f"bavard now, reader {reader!r}", benchlib.ROOT, reader))
    return out


def bench_case(case: Case, args: argparse.Namespace, roster: list[Contender], work: Path,
               wrong: tuple[str, str] | None) -> list[str]:
    """Every rate for one log; the summary lines for the end."""
    db = benchlib.load(case)
    frames = benchlib.read_frames(case.log)
    config = parse_config(CHANNEL.format(iface=IFACE, dbc=case.dbc, reader="") + DEMO_RULES,
                          base_dir=benchlib.ROOT)
    chosen = Selector.from_config(config.selection, [db])
    rules = RuleSet(config.rules)

    def exact(key: live_check.Key) -> bool:
        rule = rules.rule_for(*key)
        return (rule is not None and rule.on_change and not rule.deadband
                and rule.max_period is None and not rule.min_period)

    def heartbeat(key: live_check.Key) -> bool:
        rule = rules.rule_for(*key)
        return rule is not None and rule.max_period is not None

    selected = {m.name: [s.name for s in m.signals if chosen(m.name, s.name)]
                for m in db.messages}
    ids = {m.frame_id | benchlib.EXTENDED if m.is_extended_frame else m.frame_id
           for m in db.messages if selected[m.name]}
    print(f"{case.title} ({case.dbc.name}), the demo's selection and rules: "
          f"{len(ids)} of {len(db.messages)} messages selected, {len(frames):,} frames in the log")
    summary = []
    costs: dict[str, list[tuple[int, float]]] = {}  # contender -> (frames, CPU) of each rate
    for nominal in args.rates:
        rate = max(1, round(nominal / args.factor))
        count = rate * args.seconds
        played = live_check.retimed(frames, rate, count)
        log = work / f"played-{rate}.log"
        live_check.write_log(played, log)
        expected = sum(benchlib.frame_key(f) in ids for f in played)
        ref = live_check.reference(benchlib.reference(db, played), chosen)
        played_at = "" if rate == nominal else f" (played at {rate:,}/s)"
        print(f"  {nominal:,} frames/s{played_at}: {count:,} frames, {expected:,} of them "
              "selected, "
              f"{sum(map(len, ref.values())):,} changes of {len(ref)} signals (cantools)")
        runs: dict[str, Run] = {}
        for contender in roster:
            run = live_runner.run_one(contender, work, case, log, rate, count, selected, expected,
                                      args.into)
            runs[contender.name] = run
            if run.lost == 0:
                costs.setdefault(contender.name, []).append((count, run.cpu))
            ratio = run.cpu / runs["a"].cpu if runs["a"].cpu else float("nan")
            lost = "n/a" if run.lost is None else f"{run.lost:,}"
            print(f"    {'(' + contender.name + ')':8} {contender.title:50}"
                  f"{run.cpu / count * 1e6:8.1f} µs/frame {ratio:6.3f} of (a)  lost {lost:>6}")
            setup, playing, end = run.wall
            print(f"{'':13}received {run.received:,} frames, stored {len(run.rows):,} samples; "
                  f"{run.reader}; canplayer {playing:.2f} s; stopping {run.after * 1e3:.0f} "
                  f"ms CPU (wall: set-up {setup:.1f} s, end {end:.1f} s)")
            if run.lost and run.received:  # it did the work of fewer frames than the bus had
                print(f"{'':13}fell behind: {run.cpu / run.received * 1e6:.1f} µs per frame it "
                      "received")
        checked = []
        series = {}
        for name, run in runs.items():
            rows = run.rows
            if wrong is not None and wrong[0] == name:
                rows = live_check.corrupt(rows, wrong[1], exact)
            series[name] = live_check.series(rows)
            is_exact = (lambda key: True) if name == "a" else exact
            what = live_check.check(f"{case.title}, {rate:,}/s, ({name})", series[name], ref,
                                    is_exact, lost=bool(run.lost) or run.lost is None)
            checked.append(f"({name}) {what}")
        print(f"    checked against cantools + on-change: {'; '.join(checked)}")
        whole = [n for n in runs if n != "a" and runs[n].lost == 0]  # bavard, nothing lost
        for name in whole[1:]:
            live_check.check_same(f"{case.title}, {rate:,}/s, ({name})", f"({whole[0]})",
                                  series[name], series[whole[0]], heartbeat)
        if len(whole) > 1:
            print(f"    checked: {', '.join(f'({n})' for n in whole)} (nothing lost) stored the "
                  "same values, signal for signal")
        summary += summarise(f"{case.title}, {nominal:,} frames/s{played_at}", runs)
    return summary + marginal(case.title, costs)


def marginal(title: str, costs: dict[str, list[tuple[int, float]]]) -> list[str]:
    """The CPU one more frame costs: the slope between the lowest and the highest rate
    at which a contender lost nothing (same window, so what a contender spends per
    second, busy or idle, cancels out), against (a)'s."""
    slopes = {}
    for name, points in costs.items():
        (low, low_cpu), (high, high_cpu) = min(points), max(points)
        if high > low:
            slopes[name] = (high_cpu - low_cpu) / (high - low)
    if not slopes:
        return []
    line = ", ".join(
        f"({n}) {v * 1e6:.1f} µs" + (f" = {v / slopes['a']:.3f} of (a)"
                                     if n != "a" and slopes.get("a") else "")
        for n, v in slopes.items())
    return [f"{title}: CPU per extra frame (slope over the rates where nothing was lost): "
            + line]


def summarise(where: str, runs: dict[str, Run]) -> list[str]:
    """(c) against (a) at one rate, and what the frames lost make of the ratio."""
    a = runs["a"]
    lost = ", ".join(f"({n}) {r.lost:,}" for n, r in runs.items() if r.lost) or "none"
    if "c" not in runs or not a.cpu:
        return [f"{where}: frames lost: {lost}"]
    c = runs["c"]
    share = c.cpu / a.cpu
    line = f"{where}: (c) = {share:.3f} of (a)" + (f" (1/{1 / share:.1f})" if share else "")
    if a.lost and c.lost:
        line += "; both fell behind (CPU-bound here): the ratio says nothing of their cost"
    elif a.lost:
        line += "; (a) fell behind, its figure is a floor: (c)/(a) is at most this"
    elif c.lost:
        line += "; (c) fell behind, its figure is a floor: (c)/(a) is at least this"
    return [line, f"{where}: frames lost: {lost}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="1000,4000,8000",
                        help="frames/s played on the bus, comma-separated")
    parser.add_argument("--seconds", type=int, default=4, help="seconds of bus at each rate")
    parser.add_argument("--slowdown", default="1",
                        help="divide the rates by this (auto: the guest's slowdown against "
                             "the host, measured; see above)")
    parser.add_argument("--before", default=BEFORE, help="the commit of bavard 'before'")
    parser.add_argument("--readers", default="auto,raw",
                        help="the working tree's rows: its reader keys, comma-separated")
    parser.add_argument("--into", choices=("store", "list"), default="store",
                        help="where (b) and (c) put the samples they keep: the SQLite store "
                             "(the service's path, the default) or a list in memory as (a)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 1,000 frames/s for 1 s, sample drive only, (a) and "
                             "(c) only (no git history needed)")
    benchlib.add_case_arguments(parser)
    names = ("a", "b", "c", "c-raw", "c-bcm", "c-python-can")
    benchlib.add_wrong_argument(parser, names)
    args = parser.parse_args()
    wrong = benchlib.parse_wrong(args.wrong, names)
    args.rates = [int(r) for r in args.rates.split(",")]
    args.readers = [r for r in args.readers.split(",") if r]
    if args.quick:
        args.rates, args.seconds, args.no_corpus = [1000], 1, True
        args.readers, args.before = ["auto"], None
    why = live_runner.vcan_missing()
    if why is not None:
        if os.environ.get(IN_GUEST):
            raise SystemExit(f"bench_live.py: {why}, even in the guest")
        print(f"bench_live.py: {why} here: running in the kernel tier's guest "
              "(scripts/vcan_run.sh)", file=sys.stderr, flush=True)
        runner = str(benchlib.ROOT / "scripts" / "vcan_run.sh")
        extra = {IN_GUEST: "1", "PYTHONDONTWRITEBYTECODE": "1"}
        if args.slowdown == "auto":
            extra[HOST_WORK] = repr(calibration())
        os.execve(runner, [runner, sys.executable, __file__, *sys.argv[1:]],
                  dict(os.environ, **extra))
    live_runner.check_demo_rules()
    args.factor, said = slowdown(args.slowdown)
    import can
    import cantools

    print(f"kernel {platform.release()}, {os.cpu_count()} CPUs; python-can {can.__version__}, "
          f"cantools {cantools.__version__}; {args.seconds} s of bus per rate and contender, "
          "each contender alone")
    print(said)
    into = "the SQLite store" if args.into == "store" else "a list in memory (--into list)"
    print("(a) keeps each selected signal's value when it differs from the last one kept, in "
          "a list in memory;\n(b), (c) apply the demo's rules (*Speed*: deadband 0.5, heartbeat "
          f"10 s; the rest: every change) into\n{into}. µs/frame: CPU of the process "
          "in the window / frames played on the bus. lost: frames it\nmissed, the pipeline's "
          "queue drops included (scripts/live_runner.py says how each is counted)")
    summary = []
    with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp:
        work = Path(tmp)
        before = (None if args.before is None
                  else live_runner.before_tree(args.before, Path(tempfile.mkdtemp(dir=tmp))))
        roster = contenders(args, before)
        for case in benchlib.cases(args):
            summary += bench_case(case, args, roster, work, wrong)
    print("summary (target: (c) at most 1/10 of (a) at 4,000 frames/s; no frame lost up "
          "to 8,000):")
    for line in summary:
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(benchlib.run_checked(main))
