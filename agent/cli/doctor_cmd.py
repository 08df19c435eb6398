"""``bavard doctor``: every check a technician would make, each with the fix in one line.

The service (does it answer, which configuration, its watchdog, its last
upload), the configuration (as ``bavard config check``), each SocketCAN link
(up, bus state, bitrate, error counters, bus-off and restarts, from netlink),
the traffic on each live channel (frames in the last seconds, the share of
ids the DBCs know), each OBD adapter (the ELM327's handshake, the vehicle,
the battery voltage), the disk and the buffer's age, the clock (synchronised?
not before bavard itself?), and the upload endpoint (DNS, TCP, TLS, the
certificates' expiry). agent.doctor holds the checks.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from agent.config import DEFAULT_PATH
from agent.doctor.result import FAIL, PASS, SKIP, STATUSES, WARN, Result
from agent.doctor.runner import DEFAULT_LISTEN, DEFAULT_TIMEOUT

HELP = "check everything a technician would: buses, adapters, disk, clock, upload, config"
EPILOG = """\
Each check is pass, warn, fail or skip (not applicable here, or nothing to
check it with); a warn or a fail has its fix on the line below it.

With the service running, the traffic and the OBD checks read what it counts
(it holds the adapters); without it they open the buses and adapters here
(--listen seconds on each live bus).

exit status: 0 nothing failed (warnings do not fail); 1 at least one check
failed; 2 a bad command line"""

MARKS = {PASS: "ok", WARN: "WARN", FAIL: "FAIL", SKIP: "skip"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from agent.control.protocol import default_socket_path

    parser.add_argument("--config", type=Path, default=DEFAULT_PATH, metavar="FILE",
                        help=f"the configuration to check against (default {DEFAULT_PATH})")
    parser.add_argument("--socket", type=Path, default=None, metavar="PATH",
                        help="the service's control socket (default: [control] socket of "
                             f"--config, else $BAVARD_SOCKET, else {default_socket_path()})")
    parser.add_argument("--listen", type=float, default=DEFAULT_LISTEN, metavar="S",
                        help="seconds to listen to each live bus when no service runs "
                             f"(default {DEFAULT_LISTEN:g})")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="S",
                        help="seconds for each network step and adapter request "
                             f"(default {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--json", action="store_true", help="one JSON document")


def run(args: argparse.Namespace) -> int:
    import sys

    from agent.doctor.runner import diagnose

    if not args.timeout > 0 or args.timeout > 300:
        print("bavard doctor: --timeout must be above 0 and at most 300", file=sys.stderr)
        return 2
    if not 0 <= args.listen <= 600:
        print("bavard doctor: --listen must be between 0 and 600", file=sys.stderr)
        return 2
    results = diagnose(args.config, args.socket, timeout=args.timeout, listen=args.listen)
    counts = {s: sum(r.status == s for r in results) for s in STATUSES}
    ok = counts[FAIL] == 0
    if args.json:
        print(json.dumps({"ok": ok, "counts": counts,
                          "checks": [r.to_dict() for r in results]}, indent=2))
    else:
        print(render(results))
    return 0 if ok else 1


def render(results: list[Result]) -> str:
    """A table, one line a check (status, check, detail), the fix of a warn or a fail on
    the line below it: whole lines, so that grep finds them."""
    width = min(max((len(r.name) for r in results), default=10), 28)
    lines = []
    for r in results:
        lines.append(f"{MARKS[r.status]:4s}  {r.name:{width}s}  {r.detail}")
        if r.fix and r.status in (WARN, FAIL):
            lines.append(f"{'':4s}  {'':{width}s}  fix: {r.fix}")
    counts = {s: sum(r.status == s for r in results) for s in STATUSES}
    lines.append("")
    lines.append(f"{counts[PASS]} ok, {counts[WARN]} warnings, {counts[FAIL]} failed, "
                 f"{counts[SKIP]} skipped")
    return "\n".join(lines)
