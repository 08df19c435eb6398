"""``bavard batch inspect FILE``: an upload batch printed back as JSONL.

Line 1 is the envelope (``"type": "batch"``); then one line per signal
metadata entry (``"signal"``), sample, event and frame, in the batch's order.
NaN and infinities are written as the strings ``"NaN"``, ``"Infinity"``,
``"-Infinity"`` (JSON has no such numbers), frame data as hex.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from agent.cli.records import flag_names, json_number
from agent.errors import BavardError
from agent.frames import OUT_OF_RANGE, TRUNCATED

HELP = "look into upload batches"

KNOWN_FLAGS = OUT_OF_RANGE | TRUNCATED


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    inspect = sub.add_parser("inspect", help="print a batch as JSONL: the envelope, then "
                                             "every signal, sample, event and frame")
    inspect.add_argument("file", help="the batch file")
    inspect.add_argument("--envelope", action="store_true",
                         help="only the envelope (the body is not decompressed)")


def run(args: argparse.Namespace) -> int:
    from agent.batch.codec import decode, read_envelope

    try:
        data = Path(args.file).read_bytes()
    except OSError as exc:
        raise BavardError(f"{args.file}: cannot read: {exc.strerror or exc}") from None
    try:
        envelope = read_envelope(data)
        batch = None if args.envelope else decode(data)
    except BavardError as exc:
        raise type(exc)(f"{args.file}: {exc}") from None
    out = sys.stdout
    _write(out, {"type": "batch", **envelope.as_dict()})
    if batch is not None:
        for record in records(batch):
            _write(out, record)
    return 0


def records(batch: Any) -> Iterator[dict[str, Any]]:
    """The JSON records of a decoded batch, after its envelope line."""
    for (channel, message, signal), meta in batch.signals.items():
        yield {
            "type": "signal", "channel": channel, "message": message, "signal": signal,
            "unit": meta.unit, "scale": json_number(meta.scale),
            "offset": json_number(meta.offset), "minimum": json_number(meta.minimum),
            "maximum": json_number(meta.maximum),
            "choices": None if meta.choices is None else {
                str(raw): label for raw, label in meta.choices.items()},
        }
    for s in batch.samples:
        record: dict[str, Any] = {
            "type": "sample", "timestamp": json_number(s.timestamp), "channel": s.channel,
            "message": s.message, "signal": s.signal, "value": json_number(s.value),
            "unit": s.unit,
        }
        if s.label is not None:
            record["label"] = s.label
        if s.flags:
            record["flags"] = flag_names(s.flags)
            if s.flags & ~KNOWN_FLAGS:  # bits without a name: the number itself too
                record["flags_value"] = s.flags
        yield record
    for e in batch.events:
        yield {"type": "event", "timestamp": json_number(e.timestamp), "channel": e.channel,
               "kind": e.kind, "detail": e.detail, "priority": e.priority}
    for f in batch.frames:
        yield {"type": "frame", "timestamp": json_number(f.timestamp), "channel": f.channel,
               "arbitration_id": f.arbitration_id, "is_extended": f.is_extended,
               "is_fd": f.is_fd, "data": f.data.hex()}


def _write(out: IO[str], record: dict[str, Any]) -> None:
    out.write(json.dumps(record, ensure_ascii=False, allow_nan=False))
    out.write("\n")
