"""What scripts/bench_live.py plays and what it checks the contenders stored.

The input: a log's frames retimed to a fixed rate (timestamps rewritten to
1/rate apart from the first one, order kept; the log played again from its
start when it holds fewer frames than asked), written as candump text for
canplayer.

The check, per selected signal, on the sequence of values each contender
stored for it, in the order it stored them (receive timestamps differ from run
to run, so times are not compared):

* the reference is cantools' values of the played frames, kept on change
  (a value kept when it differs from the last one kept: what (a) does);
* a signal whose rule is a plain ``on_change`` (no deadband, no heartbeat, no
  minimum period), and every signal of (a): the stored sequence *is* the
  reference's;
* a signal with a deadband, a heartbeat (``max_period``) or a ``min_period``
  (the demo's ``*Speed*`` rule): the stored sequence, with its repeats
  (heartbeats) taken out, is a subsequence of the reference's: every value
  stored is one the signal took, in order;
* a contender that lost frames: every signal is checked as a subsequence only.

Two bavard contenders that both lost nothing must also store the same
sequences (with repeats taken out where a heartbeat may fall differently).
A signal stored that is not selected, or missing while the reference has it,
is a difference too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from benchlib import Frame, Mismatch, Value, same

Key = tuple[str, str]  # (message, signal)
Series = dict[Key, list[Value]]  # per signal, its values in stored order
Row = list[Any]  # a stored sample as a contender reports it: [ts, message, signal, value, label]

EPOCH = 1767225600.0  # the first timestamp of a retimed log


def retimed(frames: Sequence[Frame], rate: int, count: int) -> list[Frame]:
    """``count`` frames of ``frames`` (from the start again if it holds fewer),
    ``1/rate`` s apart."""
    if not frames:
        raise SystemExit("the log holds no frame")
    return [frames[i % len(frames)]._replace(timestamp=EPOCH + i / rate) for i in range(count)]


def candump_line(frame: Frame, channel: str) -> str:
    ident = f"{frame.arbitration_id:08X}" if frame.is_extended else f"{frame.arbitration_id:03X}"
    sep = "##0" if frame.is_fd else "#"
    return f"({frame.timestamp:.6f}) {channel} {ident}{sep}{frame.data.hex().upper()}\n"


def write_log(frames: Iterable[Frame], path: Path, channel: str = "can0") -> None:
    with path.open("w") as out:
        out.writelines(candump_line(f, channel) for f in frames)


def reference(ref: dict[int, tuple[str, dict[str, Value]]], selected: Callable[[str, str], bool]
              ) -> Series:
    """On-change per selected signal over cantools' values of the frames, in frame order."""
    out: Series = {}
    for _, (message, values) in sorted(ref.items()):
        for signal, value in values.items():
            if not selected(message, signal):
                continue
            seq = out.setdefault((message, signal), [])
            if not seq or not same(seq[-1], value):
                seq.append(value)
    return out


def series(rows: Iterable[Row]) -> Series:
    out: Series = {}
    for _, message, signal, value, label in rows:
        out.setdefault((message, signal), []).append((value, label))
    return out


def collapsed(values: Sequence[Value]) -> list[Value]:
    """``values`` with each run of equal values as one."""
    out: list[Value] = []
    for v in values:
        if not out or not same(out[-1], v):
            out.append(v)
    return out


def first_outside(part: Sequence[Value], whole: Sequence[Value]) -> int | None:
    """The index of the first value of ``part`` that breaks ``part`` being a
    subsequence of ``whole``; None when it is one."""
    j = 0
    for i, v in enumerate(part):
        while j < len(whole) and not same(whole[j], v):
            j += 1
        if j == len(whole):
            return i
        j += 1
    return None


def check(name: str, got: Series, ref: Series, exact: Callable[[Key], bool], lost: bool) -> str:
    """``got`` against the reference (see the module's docstring); what was checked."""
    extra = sorted(set(got) - set(ref))
    if extra:
        m, s = extra[0]
        raise Mismatch(f"{name}: stored {m}.{s}, which the reference does not have "
                       f"({len(extra)} such signals)")
    equal = sub = 0
    for key, want in ref.items():
        have = got.get(key, [])
        m, s = key
        if not lost and exact(key):
            equal += 1
            for i, (a, b) in enumerate(zip(have, want, strict=False)):
                if not same(a, b):
                    raise Mismatch(f"{name}: {m}.{s}: stored value {i} is {a!r}, "
                                   f"cantools + on-change gives {b!r}")
            if len(have) != len(want):
                raise Mismatch(f"{name}: {m}.{s}: {len(have):,} values stored, cantools + "
                               f"on-change gives {len(want):,}")
            continue
        sub += 1
        if not lost and want and not have:
            raise Mismatch(f"{name}: {m}.{s}: nothing stored, cantools + on-change gives "
                           f"{len(want):,} values")
        bad = first_outside(collapsed(have), want)
        if bad is not None:
            raise Mismatch(f"{name}: {m}.{s}: stored value {collapsed(have)[bad]!r} (change {bad}) "
                           "is not one of cantools' values in that order")
    return f"{equal} signals equal, {sub} as a subsequence"


def check_same(name: str, other: str, a: Series, b: Series, heartbeat: Callable[[Key], bool]
               ) -> None:
    """Two bavard contenders stored the same sequences (repeats aside where a heartbeat
    may fall differently)."""
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key, []), b.get(key, [])
        if heartbeat(key):
            x, y = collapsed(x), collapsed(y)
        if len(x) != len(y) or not all(same(u, v) for u, v in zip(x, y, strict=True)):
            raise Mismatch(f"{name}: {key[0]}.{key[1]}: {len(x):,} values stored, {other} "
                           f"stored {len(y):,}, or other values")


def corrupt(rows: list[Row], kind: str, exact: Callable[[Key], bool]) -> list[Row]:
    """``rows`` made wrong (the ``--wrong`` self-check): one number of a plain on-change
    signal moved by a million (a value the signal never takes: the check bites even on
    a contender that lost frames), or every other sample dropped."""
    if kind == "skip":
        return rows[::2]
    out = list(rows)
    for n, (ts, message, signal, value, label) in enumerate(out):
        if exact((message, signal)) and isinstance(value, int | float) and value == value:
            out[n] = [ts, message, signal, value + 1_000_000, label]
            return out
    raise SystemExit("--wrong: no value to corrupt")
