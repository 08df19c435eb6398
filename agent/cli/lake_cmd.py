"""``bavard lake compact|check``: look after a Parquet lake that receivers write.

::

    bavard lake compact LAKE --date 2026-01-01 [--json]   merge a day's per-batch files
    bavard lake check LAKE [--json]                        files, batches, copies

``compact`` merges, per kind and vehicle, the day's per-batch files into a few
large ones (agent.lake.compact: safe while receivers write, idempotent, a re-run
repairs an interrupted one). ``check`` counts files, rows and batches from the
files' metadata and exits 1 when a batch is there more than once (a compaction
interrupted between its rename and its deletions leaves that until it is run again)
or a file is unreadable.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from agent.errors import LakeError
from agent.units import human_bytes

HELP = "compact or check a Parquet lake written by bavard receive --lake"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    comp = sub.add_parser("compact", help="merge a day's per-batch files into large ones "
                                          "per kind and vehicle")
    comp.add_argument("lake", metavar="LAKE", help="the lake directory")
    comp.add_argument("--date", required=True, metavar="YYYY-MM-DD",
                      help="the UTC day to compact")
    comp.add_argument("--json", action="store_true", help="the report as one JSON object")
    check = sub.add_parser("check", help="files, rows and batches per kind; exit 1 when a "
                                         "batch is there twice or a file is unreadable")
    check.add_argument("lake", metavar="LAKE", help="the lake directory")
    check.add_argument("--json", action="store_true", help="one JSON object")


def run(args: argparse.Namespace) -> int:
    try:
        if args.action == "compact":
            return _compact(args)
        return _check(args)
    except ImportError as exc:
        raise LakeError(f"bavard lake needs pyarrow, which is not installed ({exc}): "
                        f"pip install 'bavard[lake]'") from None


def _compact(args: argparse.Namespace) -> int:
    from agent.lake.compact import compact

    report = compact(args.lake, args.date)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 1 if report.failed else 0
    changed = report.changed
    print(f"lake {report.root}, {report.date}: {len(report.partitions)} partitions, "
          f"{len(changed)} changed")
    for p in changed:
        what = (f"{p.merged} batch files merged into {', '.join(p.written)} "
                f"({human_bytes(p.bytes_before)} -> {human_bytes(p.bytes_after)})"
                if p.written else "leftovers of an interrupted compaction removed")
        print(f"  kind={p.kind} vehicle={p.vehicle}: {what}; {p.removed} files removed")
    if report.stale_temporaries:
        print(f"  {report.stale_temporaries} temporaries of killed writers removed")
    for p in report.failed:
        print(f"  kind={p.kind} vehicle={p.vehicle}: left as it was: {p.error}")
    if not changed and not report.stale_temporaries and not report.failed:
        print("  nothing to do")
    return 1 if report.failed else 0


def _check(args: argparse.Namespace) -> int:
    from agent.lake.check import check

    summary: dict[str, Any] = check(Path(args.lake))
    if args.json:
        print(json.dumps(summary, indent=2, sort_keys=True))
    else:
        print(f"lake {args.lake}")
        for kind, k in summary["kinds"].items():
            print(f"  {kind}: {k['files']} files ({human_bytes(k['bytes'])}), {k['rows']} rows, "
                  f"{k['batches']} batches, {k['vehicles']} vehicles, {k['days']} days")
        for kind, bid, n in summary["duplicated"]:
            print(f"  duplicated: {kind} of batch {bid}: {n} copies")
        for why in summary["unreadable"]:
            print(f"  unreadable: {why}")
    return 1 if summary["duplicated"] or summary["unreadable"] else 0
