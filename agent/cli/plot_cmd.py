"""``bavard plot SIGNAL... -o F.png``: signals from the local buffer drawn into a PNG.

Reads the buffer as ``bavard export`` does (read-only; works while the service
runs). One subplot per unit; a signal with value labels (an enumeration: a gear,
a switch) gets its own, drawn as steps with the labels on its axis. Time runs
along a shared axis, in UTC. matplotlib is an optional extra, imported only
here, with its Agg backend: no display is needed.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.cli.buffer_options import (
    add_source_options,
    add_time_options,
    resolve_source,
    resolve_times,
)
from agent.errors import BavardError

HELP = "draw signals from the local buffer into a PNG (matplotlib: bavard[plot])"
EPILOG = """\
SIGNAL is Message.Signal, or a glob of it (WheelSpeeds.*, *Temp): a glob without a
dot matches the signal name alone, as in the configuration. A SIGNAL that matches
nothing in the time range is an error naming the close names.

Needs the optional extra: pip install 'bavard[plot]'
"""
PLOT_HINT = "pip install 'bavard[plot]'"


@dataclass
class Series:
    channel: str
    message: str
    signal: str
    unit: str
    times: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    labels: dict[float, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.message}.{self.signal}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("signals", nargs="+", metavar="SIGNAL",
                        help="Message.Signal or a glob (repeat for several)")
    add_source_options(parser)
    add_time_options(parser, since_default="0")
    parser.add_argument("--channel", action="append", metavar="C", default=[],
                        help="only this channel (repeatable)")
    parser.add_argument("-o", "--output", metavar="FILE", required=True,
                        help="the PNG file to write")
    parser.add_argument("--json", action="store_true",
                        help="print what was plotted (subplots, lines, points) as JSON")


def run(args: argparse.Namespace) -> int:
    plt = _pyplot()
    from agent.export.reader import BufferReader, buffer_path

    since, until = resolve_times(args, time.time(), "plot")
    if since.epoch >= until.epoch:
        raise BavardError(f"--since {since.text} ({since.iso}) is not before --until "
                          f"{until.text} ({until.iso})")
    source = resolve_source(args)
    with BufferReader(buffer_path(source.state_dir)) as reader:
        series, seen = collect(reader, args.signals, since.epoch, until.epoch, args.channel)
    missing = [p for p in args.signals if not any(_matches(p, s) for s in series.values())]
    if missing:
        raise BavardError("; ".join(_unknown(p, seen, since.iso, until.iso) for p in missing))
    out = Path(args.output)
    from agent.export.times import iso_utc

    first = min(min(s.times) for s in series.values())
    last = max(max(s.times) for s in series.values())
    figure = draw(plt, list(series.values()), iso_utc(first), iso_utc(last))
    temp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        figure.savefig(temp, format="png", dpi=100)
        os.replace(temp, out)
    except OSError as exc:
        raise BavardError(f"-o {out}: cannot write: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    subplots = describe(figure)
    plt.close(figure)
    if args.json:
        print(json.dumps({"output": str(out), "bytes": out.stat().st_size, "since": since.iso,
                          "until": until.iso, "first": iso_utc(first), "last": iso_utc(last),
                          "subplots": subplots}, indent=2, ensure_ascii=False))
    else:
        lines = [line for sub in subplots for line in sub["lines"]]
        print(f"plotted {len(lines)} signals ({sum(x['points'] for x in lines):,} points) in "
              f"{len(subplots)} subplots to {out}")
    return 0


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as exc:
        raise BavardError(f"plotting needs matplotlib, which is not installed ({exc}): "
                          f"{PLOT_HINT}") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _matches(pattern: str, s: Series) -> bool:
    from agent.globs import glob_matches

    return glob_matches(pattern, s.message, s.signal)


def collect(reader: Any, patterns: list[str], since: float, until: float,
            channels: list[str]) -> tuple[dict[tuple[str, str, str], Series], set[str]]:
    """The samples of the signals ``patterns`` match, per (channel, message, signal);
    and every Message.Signal seen in the range (for the close names of a miss)."""
    from agent.globs import GlobSet
    from agent.store import Kind

    globs = GlobSet(patterns)
    chosen: dict[tuple[str, str], bool] = {}
    series: dict[tuple[str, str, str], Series] = {}
    reader.snapshot()
    for chunk in reader.items(Kind.SAMPLE, since, until, channels):
        for ts, channel, message, signal, value, unit, label, _flags in chunk:
            wanted = chosen.get((message, signal))
            if wanted is None:
                wanted = chosen[(message, signal)] = globs.matches(message, signal)
            if not wanted:
                continue
            key = (channel, message, signal)
            s = series.get(key)
            if s is None:
                s = series[key] = Series(channel, message, signal, unit)
            s.times.append(ts)
            s.values.append(value)
            if label is not None:
                s.labels[value] = label
    return series, {f"{m}.{s}" for m, s in chosen}


def _unknown(pattern: str, seen: set[str], since: str, until: str) -> str:
    close = difflib.get_close_matches(pattern, sorted(seen), n=5, cutoff=0.5)
    if not close:
        signals = {name.split(".", 1)[1]: name for name in seen}
        close = [signals[n] for n in difflib.get_close_matches(pattern, sorted(signals), n=5,
                                                                cutoff=0.5)]
    hint = f"; close names: {', '.join(close)}" if close else (
        f"; the buffer has {len(seen)} signals in that range" if seen else
        "; the buffer holds no sample in that range")
    return f"no signal {pattern!r} between {since} and {until}{hint}"


def draw(plt: Any, series: list[Series], first: str, last: str) -> Any:
    """The figure: one subplot per unit, one per enumeration; titled with the time span
    of the data."""
    import matplotlib.dates as mdates
    import numpy as np

    groups: dict[tuple[str, str], list[Series]] = {}
    for s in sorted(series, key=lambda s: (s.unit, s.name, s.channel)):
        key = ("enum", f"{s.channel}.{s.name}") if s.labels else ("unit", s.unit)
        groups.setdefault(key, []).append(s)
    several_channels = len({s.channel for s in series}) > 1
    figure, axes = plt.subplots(len(groups), 1, sharex=True, squeeze=False,
                                figsize=(11, 1.2 + 2.4 * len(groups)))
    for ax, ((kind, unit), members) in zip(axes[:, 0], groups.items(), strict=True):
        for s in members:
            stamps = (np.round(np.asarray(s.times, dtype=float) * 1e6)
                      .astype(np.int64).astype("datetime64[us]"))
            label = f"{s.name} ({s.channel})" if several_channels else s.name
            ax.plot(stamps, np.asarray(s.values, dtype=float), label=label, linewidth=1.0,
                    drawstyle="steps-post" if kind == "enum" else "default")
        ax.set_gid(kind)
        if kind == "enum":
            choices = sorted(members[0].labels.items())
            ax.set_yticks([v for v, _ in choices], [name for _, name in choices])
        else:
            ax.set_ylabel(unit or "(no unit)")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper right", fontsize="small")
    locator = mdates.AutoDateLocator()
    axes[-1, 0].xaxis.set_major_locator(locator)
    axes[-1, 0].xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    axes[-1, 0].set_xlabel("time (UTC)")
    figure.suptitle(f"bavard: {first} to {last}", fontsize="medium")
    figure.tight_layout()
    return figure


def describe(figure: Any) -> list[dict[str, Any]]:
    """What the figure holds, read back from matplotlib's own artists."""
    out = []
    for ax in figure.axes:
        enum = ax.get_gid() == "enum"
        out.append({"kind": "enumeration" if enum else "unit",
                    "unit": None if enum else ax.get_ylabel(),
                    "labels": [t.get_text() for t in ax.get_yticklabels()] if enum else None,
                    "lines": [{"signal": line.get_label(), "points": len(line.get_xdata())}
                              for line in ax.get_lines()]})
    return out
