"""``bavard privacy report|rotate-key``: what left the box, and the pseudonyms' keys.

``report [--since T]``: per purpose and destination, what left the box
(batches, items, bytes as sent, the data's time range, which signals, events
and frames with counts), what was purged and why, and the consent history:
what the owner shows to anyone who asks (agent.privacy.report).

``rotate-key DESTINATION``: a new pseudonym key for a destination; its next
batches name the vehicle by an id that cannot be linked to the one before.

Through the running service's control socket when one answers; else on the
state directory's files directly (``[store] state_dir`` of ``--config``), said
on standard error.
"""

from __future__ import annotations

import argparse
from typing import Any

from agent.cli.consent_cmd import Files, add_common_arguments, local_time, through_service
from agent.cli.service_access import note, print_json

HELP = "what left the box per purpose and destination (report); a destination's new key"
EPILOG = """\
actions: report [--since T], rotate-key DESTINATION (see ACTION -h)
exit status: 0 done; 1 an error (the message says what); 2 a bad command line.
With no service running, the state directory's files are read or changed
directly (said on standard error)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    report = sub.add_parser("report", help="what left the box, what was purged, the consent "
                                           "history",
                            description="Per purpose and destination: what left the box "
                                        "(signals, events, counts, bytes, time ranges), what "
                                        "was purged, and the consent history.")
    report.add_argument("--since", metavar="T",
                        help="from this local date or date and time on (2026-06-01, "
                             "2026-06-01T08:00), or this long ago (30d, 12h, 2w); "
                             "default: everything the ledger keeps (400 days)")
    rotate = sub.add_parser("rotate-key", help="a new pseudonym key for a destination",
                            description="Replace DESTINATION's pseudonym key: its next "
                                        "batches name the vehicle by a new id, which cannot "
                                        "be linked to the old one.")
    rotate.add_argument("destination", metavar="DESTINATION",
                        help="main ([upload]) or a [destinations.NAME]")
    for nested in (report, rotate):
        add_common_arguments(nested)


def run(args: argparse.Namespace) -> int:
    from agent.privacy.report import render

    if args.action == "report":
        since = local_time(args.since, "--since", relative=True) if args.since else None
        result = through_service(args, "privacy.report", since=since)
        if result is None:
            result = _report_directly(args, since)
        if args.json:
            print_json(result)
        else:
            print(render(result))
        return 0
    result = through_service(args, "privacy.rotate-key",
                             destination=args.destination)
    if result is None:
        result = _rotate_directly(args)
    if args.json:
        print_json(result)
    else:
        print(result["message"])
    return 0


def _report_directly(args: argparse.Namespace, since: float | None) -> dict[str, Any]:
    from agent.privacy.ledger import Ledger
    from agent.privacy.report import build

    files = Files(args)
    note("privacy", f"{files.why}: the report is read from {files.state_dir} directly")
    ledger = Ledger(files.state_dir)
    try:
        return {**build(ledger, files.consent(), since, list(files.purposes)),
                "service": False}
    finally:
        ledger.close()


def _rotate_directly(args: argparse.Namespace) -> dict[str, Any]:
    from agent.control.privacy_commands import rotated_answer, uploading
    from agent.errors import BavardError
    from agent.service.identity import rotate_destination_key

    files = Files(args)
    destinations = uploading(files.config)
    if args.destination not in destinations:
        raise BavardError(f"no destination {args.destination!r} in {files.source} "
                          f"(destinations: {', '.join(destinations) or 'none'})")
    files.not_held()
    rotate_destination_key(files.config, args.destination)
    note("privacy", f"{files.why}: the key in {files.state_dir} replaced directly")
    return {**rotated_answer(args.destination), "service": False}
