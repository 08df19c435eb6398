"""``bavard export``: what the local buffer holds, as an open bundle (docs/export.md).

The owner's data, readable by anyone they choose: one data file per class of item
(samples, events, frames) in CSV, JSON Lines or Parquet, a ``manifest.json`` (the
vehicle's pseudonym, the time range, the DBC files' fingerprints, every signal with
its unit, the counts, each file's SHA-256), ``SHA256SUMS`` and a ``README.txt``.
Read-only on the buffer: it works while the service runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from agent.cli.buffer_options import (
    add_source_options,
    add_time_options,
    resolve_source,
    resolve_times,
)
from agent.export.bundle import ALL_CLASSES, FORMATS, ExportRequest, Progress, export_bundle
from agent.export.reader import buffer_path
from agent.store import Kind

HELP = "export what the local buffer holds as an open bundle (CSV, JSONL or Parquet)"
EPILOG = """\
The bundle is a directory: samples/events/frames.<format> (only the classes
present), manifest.json, SHA256SUMS and README.txt, which says how to read
each file without bavard. It is written beside DIR and renamed into place
when complete: on any error (a full disk included) nothing is left behind.

Times: ISO 8601 (2026-01-01T08:00:00Z; without a zone it is UTC, and a note
says so), seconds since the epoch, a time before now (-30m, -2h, -1d12h) or
now. Items are exported when since <= timestamp < until.

--format parquet needs the optional extra: pip install 'bavard[parquet]'

exit status:
  0  the bundle was written (warnings, e.g. a --signals glob that matched
     nothing, go to stderr and into manifest.json)
  1  an error: no buffer, a bad time, DIR not empty without --force, a full
     disk
  2  bad command line
"""
CLASS_NAMES = {k.label: k for k in Kind}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_source_options(parser)
    add_time_options(parser, since_default="0")
    parser.add_argument("--signals", action="append", metavar="GLOB", default=[],
                        help="only the samples of these signals (Message.Signal or Signal "
                             "globs; repeatable)")
    parser.add_argument("--channel", action="append", metavar="C", default=[],
                        help="only this channel (repeatable)")
    parser.add_argument("--class", dest="classes", action="append", metavar="CLASS",
                        choices=[k.label for k in ALL_CLASSES],
                        help="only this class of item: samples, events or frames "
                             "(repeatable; default all three)")
    parser.add_argument("--format", choices=FORMATS, default="csv",
                        help="data file format (default csv)")
    parser.add_argument("-o", "--output", metavar="DIR", required=True,
                        help="the bundle directory to create")
    parser.add_argument("--force", action="store_true",
                        help="replace DIR when it exists and is not empty")
    parser.add_argument("--json", action="store_true",
                        help="print the manifest (and the bundle's path) as one JSON object")


def run(args: argparse.Namespace) -> int:
    from agent.export.context import gather

    now = time.time()
    since, until = resolve_times(args, now, "export")
    source = resolve_source(args)
    db_path = buffer_path(source.state_dir)
    classes = tuple(CLASS_NAMES[c] for c in dict.fromkeys(args.classes or ())) or ALL_CLASSES
    request = ExportRequest(db_path=db_path, out_dir=Path(args.output).absolute(),
                            fmt=args.format, since=since, until=until,
                            signals=tuple(args.signals), channels=tuple(args.channel),
                            classes=classes, force=args.force)
    context = gather(source.config, source.config_path, source.state_dir)
    line = _ProgressLine() if sys.stderr.isatty() and not args.json else None
    try:
        path, manifest = export_bundle(request, context, on_progress=line)
    finally:
        if line is not None:
            line.end()
    for warning in manifest["warnings"]:
        print(f"bavard export: warning: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps({"path": str(path), "manifest": manifest}, indent=2,
                         ensure_ascii=False))
        return 0
    counts = manifest["counts"]
    print(f"exported {counts['samples']:,} samples, {counts['events']:,} events, "
          f"{counts['frames']:,} frames ({len(manifest['signals'])} signals) to {path}")
    found = manifest["time_range"]["found"]
    if found is not None:
        print(f"  from {found['first']['iso']} to {found['last']['iso']}")
    for f in manifest["files"]:
        print(f"  {f['name']}: {f['rows']:,} rows, {f['bytes']:,} bytes, sha256 {f['sha256']}")
    return 0


class _ProgressLine:
    """Items written so far, on one line of stderr, at most five times a second."""

    def __init__(self) -> None:
        self.shown = False
        self.last = 0.0

    def __call__(self, progress: Progress) -> None:
        now = time.monotonic()
        if now - self.last < 0.2:
            return
        self.last = now
        self.shown = True
        share = f" of at most {progress.estimate:,}" if progress.estimate else ""
        print(f"\rbavard export: {progress.done:,} items{share}", end="", file=sys.stderr,
              flush=True)

    def end(self) -> None:
        if self.shown:
            print(file=sys.stderr)
