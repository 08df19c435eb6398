"""``bavard decode LOG --dbc F.dbc``: one record per decoded sample, as JSONL or CSV."""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import sys
from collections.abc import Iterable
from typing import IO, Any

from agent.cli.progress import Progress, count_lines
from agent.cli.records import flag_names, json_number
from agent.frames import Sample

HELP = "decode a CAN log (candump, ASC, BLF, TRC; .gz too) through DBC files"
#: the exit status when the log played to its end but looks unreadable
UNREADABLE = 3
EPILOG = f"""\
The log is read once, as a stream: '-' (or /dev/stdin, a named pipe) works like a
file, gzip included (recognised by its signature). Lines that are not frames are
skipped, counted and named (file:line) on stderr; the summary line counts them.

exit status:
  0  the log was decoded
  1  an error: the log or a DBC cannot be opened or read, unknown log format
  2  bad command line
  {UNREADABLE}  the log gave no CAN frame at all, or mostly unreadable lines (more bad
     lines than frames, and at least 10): what could be decoded is written, and a
     warning on stderr says why the log looks wrong
"""

FIELDS = ("timestamp", "channel", "message", "signal", "value", "unit", "label", "flags")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("log", help="the log file ('-' = standard input)")
    parser.add_argument("--dbc", action="append", required=True, metavar="FILE",
                        help="DBC file (repeat for several; the first one wins on duplicate ids)")
    parser.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    parser.add_argument("--signals", action="append", metavar="GLOB",
                        help="only these signals (Message.Signal or Signal globs; repeatable)")
    parser.add_argument("--output", "-o", metavar="FILE", help="write here instead of stdout")


def write_jsonl(samples: Iterable[Sample], out: IO[str]) -> None:
    dumps = json.dumps
    for s in samples:
        record: dict[str, Any] = {
            "timestamp": s.timestamp, "channel": s.channel, "message": s.message,
            "signal": s.signal, "value": json_number(s.value), "unit": s.unit,
        }
        if s.label is not None:
            record["label"] = s.label
        if s.flags:
            record["flags"] = flag_names(s.flags)
        out.write(dumps(record, ensure_ascii=False))
        out.write("\n")


class CsvWriter:
    def __init__(self, out: IO[str]) -> None:
        self.writer = csv.writer(out, lineterminator="\n")
        self.writer.writerow(FIELDS)

    def write(self, samples: Iterable[Sample]) -> None:
        self.writer.writerows(
            (repr(s.timestamp), s.channel, s.message, s.signal, repr(s.value), s.unit,
             s.label or "", "|".join(flag_names(s.flags)))
            for s in samples
        )


def run(args: argparse.Namespace) -> int:
    from agent.decode.dbc_files import load_dbc
    from agent.decode.decoder import ChannelDecoder
    from agent.globs import unmatched_globs
    from agent.policy.selection import Selector
    from agent.sources.replay import ReplaySource

    databases = [load_dbc(p) for p in args.dbc]
    for glob in unmatched_globs(args.signals or (), databases):
        print(f"bavard decode: warning: --signals {glob!r} matches no signal of "
              f"{', '.join(args.dbc)}", file=sys.stderr)
    decoder = ChannelDecoder("log", databases, Selector(args.signals or ("*",)))
    with contextlib.ExitStack() as stack:
        source = ReplaySource("log", args.log, speed=0)
        stack.enter_context(source)
        out: IO[str] = sys.stdout
        if args.output:
            out = stack.enter_context(open(args.output, "w", encoding="utf-8", newline=""))
        progress = Progress(None, f"decoding {source.where}")
        if progress.enabled and not (source.stdin or source.compressed):  # only for a tty:
            progress.total = count_lines(args.log)  # it reads the whole file once more
        stack.callback(progress.close)
        csv_writer = CsvWriter(out) if args.format == "csv" else None
        chunk: list[Sample] = []
        samples = 0
        for n, frame in enumerate(source.frames(), 1):
            decoded = decoder.decode(frame)
            if decoded is not None:
                chunk.extend(decoded.samples())
            if n % 4096 == 0:
                samples += len(chunk)
                _write(chunk, out, csv_writer)
                chunk = []
                progress.update(n + sum(source.stats.skipped.values()))
        samples += len(chunk)
        _write(chunk, out, csv_writer)
    _report(source.stats.frames, samples, source.stats.skipped, decoder)
    reason = source.unreadable()
    if reason is not None:
        print(f"bavard decode: warning: {reason}", file=sys.stderr)
        return UNREADABLE
    return 0


def _write(samples: list[Sample], out: IO[str], csv_writer: CsvWriter | None) -> None:
    if csv_writer is not None:
        csv_writer.write(samples)
    else:
        write_jsonl(samples, out)


def _report(frames: int, samples: int, skipped: Any, decoder: Any) -> None:
    st = decoder.stats
    parts = [f"{frames} frames", f"{st.decoded} decoded", f"{samples} samples"]
    if skipped:
        parts.append("skipped lines: " + ", ".join(f"{k} {v}" for k, v in sorted(skipped.items())))
    for label, counter in (("unknown ids", st.unknown), ("short frames", st.truncated),
                           ("long frames", st.excess), ("unknown multiplexer values", st.bad_mux)):
        if counter:
            parts.append(f"{label}: " + ", ".join(f"0x{i:X} x{n}" for i, n in
                                                  sorted(counter.items())))
    if st.out_of_range:
        parts.append("out of range: " + ", ".join(
            f"{sig} (0x{i:X}) x{n}" for (i, sig), n in sorted(st.out_of_range.items())))
    print("bavard decode: " + "; ".join(parts), file=sys.stderr)
