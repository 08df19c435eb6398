"""What the benchmark scripts share: the logs they run on, the fair cantools
baseline, and the check that two contenders produced the same values.

The baseline is what a competent user of cantools writes: a dict built once
from ``db.messages`` (frame id -> ``Message``, extended ids kept apart from
11-bit ones), ``by_id.get(frame_id)`` for each frame, and ``msg.decode(data)``
for the frames the DBC knows. Unknown ids cost one dict miss, not an exception.

Values are compared per frame as ``{signal: (value, label)}``: cantools gives a
``NamedSignalValue`` for a raw value with a VAL_ label (its number and its
name), bavard a value and a label side by side. Numbers compare with ``==``
(``1`` and ``1.0`` are the same number); NaN equals NaN.

A failed check raises :class:`Mismatch`; the scripts end with its message and
exit status 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# a replay of {log} as fast as possible through {dbc}, every signal on change, counters
# and checksums left out: the service's ingest path, for bench_ingest and bench_control
REPLAY_CONFIG = """
[[channels]]
name = "can0"
log = "{log}"
dbc = "{dbc}"
speed = 0

[selection]
exclude = ["*Counter*", "*Checksum*"]

[[signals]]
match = "*"
on_change = true
"""
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cantools.database import DecodeError  # noqa: E402

from agent.config import SelectionConfig  # noqa: E402
from agent.decode.dbc_files import load_dbc  # noqa: E402
from agent.frames import Decoded, Frame, Sample  # noqa: E402
from agent.policy.selection import Selector  # noqa: E402
from agent.sources.replay import ReplaySource  # noqa: E402
from agent.volatile import Volatility  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpus"
EXTENDED = 1 << 31  # dict key bit that keeps 29-bit ids apart from 11-bit ones
# counters and checksums as the agent recognises them by default (names, DBC
# attribute): masked out of the change filter, left out of the default selection
VOLATILITY = Volatility(SelectionConfig().volatile)

Value = tuple[Any, str | None]  # (number, VAL_ label or None)
Values = dict[str, Value]  # signal -> value, for one frame
Emitted = tuple[int, str, Values]  # (frame index, message name, values)


class Mismatch(Exception):
    """Two contenders did not produce the same values."""


@dataclass(frozen=True)
class Case:
    """A log and the DBC that describes its bus."""

    title: str
    log: Path
    dbc: Path


SAMPLE_DRIVE = Case("demo sample drive", ROOT / "tests" / "data" / "sample_drive.log",
                    ROOT / "dbc" / "demo_vehicle.dbc")
# The real logs of ../shared/corpus that come with the DBC of their bus. (Its
# opendbc DBCs, Ford and Toyota, have no log of those cars next to them.)
CORPUS_CASES = (
    Case("motec corpus, a real car", CORPUS / "motec" / "can_sample.log",
         CORPUS / "motec" / "sample_can_spec.dbc"),
)

# A real log too small to time (5 frames, 4 of them in its DBC): bench_decode plays it
# SOCIALLEDGE_COPIES times in a row, timestamps shifted, and says so in its title.
SOCIALLEDGE = Case("socialledge corpus (cantools' test log)",
                   CORPUS / "cantools" / "socialledge_decode_log_format.input.log",
                   CORPUS / "cantools" / "dbc" / "socialledge.dbc")
SOCIALLEDGE_COPIES = 20_000


def copies(frames: Sequence[Frame], n: int) -> list[Frame]:
    """``frames`` played ``n`` times in a row, each copy's timestamps after the last's
    (new Frame objects: the benchmarks tell frames apart by identity)."""
    if not frames:
        return []
    stamps = [f.timestamp for f in frames]
    span = max(stamps) - min(stamps) + 1.0
    return [f._replace(timestamp=f.timestamp + k * span) for k in range(n) for f in frames]


def add_case_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log", type=Path, action="append", default=[],
                        help="also run on this log (with the --dbc given after it)")
    parser.add_argument("--dbc", type=Path, action="append", default=[],
                        help="the DBC of the preceding --log")
    parser.add_argument("--no-corpus", action="store_true",
                        help=f"only the sample drive (and --log), not {CORPUS}")


def cases(args: argparse.Namespace) -> list[Case]:
    """The sample drive, the corpus logs that are there (a line says which are not),
    and the ``--log``/``--dbc`` pairs of the command line."""
    if len(args.log) != len(args.dbc):
        raise SystemExit("give one --dbc for each --log")
    found = [SAMPLE_DRIVE]
    if not args.no_corpus:
        for case in CORPUS_CASES:
            if case.log.is_file() and case.dbc.is_file():
                found.append(case)
            else:
                print(f"{case.title}: skipped, {case.log} or {case.dbc} is not there")
    found += [Case(f"{log.name} ({dbc.name})", log, dbc)
              for log, dbc in zip(args.log, args.dbc, strict=True)]
    return found


def read_frames(log: Path, limit: int | None = None) -> list[Frame]:
    """The frames of a log, in memory (the first ``limit`` only, when given)."""
    frames: list[Frame] = []
    with ReplaySource("bench", log, speed=0, channel="can0") as source:
        for frame in source.frames():
            if limit is not None and len(frames) >= limit:
                break
            frames.append(frame)
    return frames


def load(case: Case) -> Any:
    """The cantools database of a case."""
    return load_dbc(case.dbc)


def cantools_by_id(db: Any) -> dict[int, Any]:
    """frame id -> cantools ``Message``, built once. A 29-bit id is keyed with
    :data:`EXTENDED`; an 11-bit message is also found under its id with that bit,
    for candump's 8-hex-digit spelling of small ids (as bavard's decoder does)."""
    by_id: dict[int, Any] = {}
    for message in db.messages:
        key = message.frame_id | EXTENDED if message.is_extended_frame else message.frame_id
        by_id.setdefault(key, message)
    for message in db.messages:
        if not message.is_extended_frame:
            by_id.setdefault(message.frame_id | EXTENDED, message)
    return by_id


def frame_key(frame: Frame) -> int:
    return frame.arbitration_id | EXTENDED if frame.is_extended else frame.arbitration_id


# run(out): one pass over the frames; when ``out`` is a list, what was decoded is
# appended to it, as (frame, message name, cantools dict) or (frame, Decoded)
Run = Callable[[list[Any] | None], None]


def cantools_plain(db: Any, frames: Sequence[Frame]) -> Callable[[], Run]:
    """The baseline: ``by_id.get(frame_id)``, then ``msg.decode(data)`` for known frames.
    Returns ``prepare()`` (untimed: builds the dict), which returns the run."""

    def prepare() -> Run:
        get = cantools_by_id(db).get

        def run(out: list[Any] | None) -> None:
            for f in frames:
                fid = f[2]  # arbitration_id; f[3] is_extended, f[5] data
                msg = get(fid | EXTENDED if f[3] else fid)
                if msg is not None:
                    try:
                        values = msg.decode(f[5])
                    except DecodeError:  # shorter than the DBC says, unknown multiplexer
                        continue
                    if out is not None:
                        out.append((f, msg.name, values))

        return run

    return prepare


def cantools_skip_unchanged(db: Any, frames: Sequence[Frame]) -> Callable[[], Run]:
    """The baseline plus the cheap trick: the last payload per id is remembered and a
    frame with the same bytes is not decoded again."""

    def prepare() -> Run:
        get = cantools_by_id(db).get
        last: dict[int, bytes] = {}
        last_get = last.get

        def run(out: list[Any] | None) -> None:
            for f in frames:
                fid = f[2]
                key = fid | EXTENDED if f[3] else fid
                msg = get(key)
                if msg is not None:
                    data = f[5]
                    if last_get(key) == data:
                        continue
                    last[key] = data
                    try:
                        values = msg.decode(data)
                    except DecodeError:
                        continue
                    if out is not None:
                        out.append((f, msg.name, values))

        return run

    return prepare


def cantools_values(decoded: dict[str, Any]) -> Values:
    """``Message.decode``'s dict, as (number, label) per signal."""
    out: Values = {}
    for name, value in decoded.items():
        label = getattr(value, "name", None)
        out[name] = (value.value, str(label)) if label is not None else (value, None)
    return out


def bavard_values(decoded: Decoded) -> Values:
    labels = decoded.labels
    return {info.name: (value, labels[i] if labels is not None else None)
            for i, (info, value) in enumerate(zip(decoded.signals, decoded.values, strict=True))}


Volatile = Callable[[str, str], bool]  # (message, signal) -> a counter or a checksum?


def volatility(db: Any) -> Volatile:
    """Tells the counters and checksums of ``db`` as the agent does by default."""
    return VOLATILITY.for_databases([db])


def agent_selection(db: Any) -> Selector:
    """The agent's selection without a ``[selection]``: every signal but the counters
    and checksums."""
    return Selector.from_config(SelectionConfig(), [db])


def same(a: Value, b: Value) -> bool:
    if a == b:
        return True
    x, y = a[0], b[0]
    return a[1] == b[1] and x != x and y != y  # NaN


def reference(db: Any, frames: Sequence[Frame]) -> dict[int, tuple[str, Values]]:
    """cantools' values of every frame the DBC knows, by frame index (untimed)."""
    get = cantools_by_id(db).get
    out: dict[int, tuple[str, Values]] = {}
    for i, frame in enumerate(frames):
        msg = get(frame_key(frame))
        if msg is not None and len(frame.data) >= msg.length:
            out[i] = (msg.name, cantools_values(msg.decode(frame.data)))
    return out


def short_frames(db: Any, frames: Sequence[Frame]) -> set[int]:
    """Indexes of known frames shorter than the DBC says: cantools refuses them, bavard
    decodes the signals that fit; they are left out of the comparisons."""
    get = cantools_by_id(db).get
    return {i for i, f in enumerate(frames)
            if (m := get(frame_key(f))) is not None and len(f.data) < m.length}


def _where(frames: Sequence[Frame], index: int, message: str) -> str:
    f = frames[index]
    return f"frame {index} ({f.timestamp:.6f} 0x{f.arbitration_id:X} {message})"


def check_frames(name: str, frames: Sequence[Frame], ref: dict[int, tuple[str, Values]],
                 emitted: Iterable[Emitted], every_frame: bool, is_volatile: Volatile,
                 ignore: AbstractSet[int] = frozenset()) -> None:
    """Each frame ``name`` emitted decodes to cantools' values: every non-volatile
    signal present and equal; a counter or checksum, when present, equal too.
    ``every_frame``: it must also have emitted every frame the DBC knows."""
    seen: set[int] = set()
    for index, message, values in emitted:
        if index in ignore:
            continue
        seen.add(index)
        if index not in ref:
            raise Mismatch(f"{name}: {_where(frames, index, message)} was decoded, "
                           "cantools does not know it")
        ref_message, ref_values = ref[index]
        where = _where(frames, index, ref_message)
        if message != ref_message:
            raise Mismatch(f"{name}: {where} decoded as {message}")
        for signal, value in ref_values.items():
            got = values.get(signal)
            if got is None:
                if is_volatile(message, signal):
                    continue
                raise Mismatch(f"{name}: {where}: {signal} missing (cantools: {value[0]!r})")
            if not same(got, value):
                raise Mismatch(f"{name}: {where}: {signal} = {got!r}, cantools: {value!r}")
        extra = set(values) - set(ref_values)
        if extra:
            raise Mismatch(f"{name}: {where}: signals cantools does not give: {sorted(extra)}")
    if every_frame:
        missing = sorted(set(ref) - seen - ignore)
        if missing:
            index = missing[0]
            raise Mismatch(f"{name}: {len(missing)} known frames not decoded, the first "
                           f"{_where(frames, index, ref[index][0])}")


Survivor = tuple[int, str, str, Value]  # (frame index, message, signal, value)


def on_change(emitted: Iterable[Emitted], is_volatile: Volatile,
              ignore: AbstractSet[int] = frozenset()) -> list[Survivor]:
    """What an on-change policy stores from these frames: each non-volatile signal's
    value when it differs from the last one stored (the first one always)."""
    last: dict[tuple[str, str], Value] = {}
    out: list[Survivor] = []
    for index, message, values in emitted:
        if index in ignore:
            continue
        for signal, value in sorted(values.items()):
            if is_volatile(message, signal):
                continue
            key = (message, signal)
            old = last.get(key)
            if old is None or not same(old, value):
                last[key] = value
                out.append((index, message, signal, value))
    return out


def check_stored(name: str, frames: Sequence[Frame], expected: list[Survivor],
                 got: list[Survivor], against: str = "cantools") -> None:
    """``got`` (what ``name`` would store) is ``expected``, sample for sample."""
    for i, (want, have) in enumerate(zip(expected, got, strict=False)):
        if want[0] != have[0] or want[1:3] != have[1:3] or not same(want[3], have[3]):
            raise Mismatch(
                f"{name}: stored sample {i} differs: {_where(frames, have[0], have[1])} "
                f"{have[2]} = {have[3]!r}; {against} + on-change stores "
                f"{_where(frames, want[0], want[1])} {want[2]} = {want[3]!r}")
    if len(expected) != len(got):
        raise Mismatch(f"{name}: {len(got):,} samples stored, {against} + on-change "
                       f"stores {len(expected):,}")


Stored = tuple[float, str, str, Value]  # (timestamp, message, signal, value)


def check_samples(name: str, expected: list[Stored], got: list[Stored],
                  against: str = "on-change on cantools' values") -> None:
    """``got`` holds the samples of ``expected``, in any order."""
    def key(s: Stored) -> tuple[float, str, str, str]:
        return (s[0], s[1], s[2], repr(s[3]))

    for n, (want, have) in enumerate(zip(sorted(expected, key=key), sorted(got, key=key),
                                         strict=False)):
        if want[:3] != have[:3] or not same(want[3], have[3]):
            raise Mismatch(f"{name}: sample {n} (by time) is {have[1]}.{have[2]} = {have[3]!r} "
                           f"at {have[0]:.6f}; {against} gives {want[1]}.{want[2]} = "
                           f"{want[3]!r} at {want[0]:.6f}")
    if len(expected) != len(got):
        raise Mismatch(f"{name}: {len(got):,} samples, {against} gives {len(expected):,}")


# --- test-only hook: a contender made wrong on purpose, to see the checks fire

WRONG_KINDS = ("value", "skip")


def add_wrong_argument(parser: argparse.ArgumentParser, names: Iterable[str]) -> None:
    parser.add_argument(
        "--wrong", metavar="NAME:KIND", default=None,
        help="test only: corrupt the output of contender NAME ("
             + ", ".join(names) + ") before the checks, KIND 'value' (one value off by one) "
             "or 'skip' (every other emitted frame dropped); the run must then fail")


def parse_wrong(text: str | None, names: Iterable[str]) -> tuple[str, str] | None:
    if text is None:
        return None
    name, _, kind = text.partition(":")
    if name not in set(names) or kind not in WRONG_KINDS:
        raise SystemExit(f"--wrong {text}: NAME is one of {', '.join(names)}, "
                         f"KIND one of {', '.join(WRONG_KINDS)}")
    return name, kind


def corrupt(emitted: list[Emitted], kind: str, is_volatile: Volatile) -> list[Emitted]:
    """``emitted`` made wrong: one non-volatile number off by one, or every other
    frame dropped."""
    if kind == "skip":
        return emitted[::2]
    out = list(emitted)
    for n, (index, message, values) in enumerate(out):
        for signal, (value, label) in values.items():
            if not is_volatile(message, signal) and isinstance(value, int | float):
                out[n] = (index, message, {**values, signal: (value + 1, label)})
                return out
    raise SystemExit("--wrong: no value to corrupt")


def corrupt_samples(samples: list[Sample], kind: str, is_volatile: Volatile) -> list[Sample]:
    """``samples`` made wrong: one non-volatile number off by one, or every other
    sample dropped."""
    if kind == "skip":
        return samples[::2]
    out = list(samples)
    for n, s in enumerate(out):
        if not is_volatile(s.message, s.signal) and isinstance(s.value, int | float):
            out[n] = s._replace(value=s.value + 1)
            return out
    raise SystemExit("--wrong: no value to corrupt")


def run_checked(main: Callable[[], int]) -> int:
    """``main()``, with a failed check as a message and exit status 1."""
    try:
        return main()
    except Mismatch as exc:
        print(f"CHECK FAILED: {exc}", file=sys.stderr)
        return 1
