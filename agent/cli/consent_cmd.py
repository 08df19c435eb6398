"""``bavard consent grant|revoke|show``: the owner decides which purpose receives data.

Nothing is granted by default: data of a purpose without consent is not even
stored. ``grant PURPOSE [--until DATE]`` lets the destinations of that purpose
receive what the purpose allows, from now on; ``revoke PURPOSE`` stops it and
purges what is pending for it at once (its dead letters too), saying how much;
``show`` lists each purpose, whether it is granted, what it receives and
where. Every change is an audit entry with the uid of who made it
(docs/privacy.md).

Through the running service's control socket when one answers; else on the
state directory's files directly (``[store] state_dir`` of ``--config``), said
on standard error: the service reads the consent file again when it changes.
"""

from __future__ import annotations

import argparse
import os
import re
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from agent.cli.service_access import add_socket_argument, note, print_json
from agent.config import DEFAULT_PATH
from agent.control.client import ControlClient
from agent.control.protocol import default_socket_path
from agent.errors import BavardError, ConfigError, ServiceNotRunningError

HELP = "grant, revoke or show the owner's consent per purpose (nothing is granted by default)"
EPILOG = """\
actions: grant PURPOSE [--until DATE], revoke PURPOSE, show (see ACTION -h)
exit status: 0 done; 1 an error (the message says what); 2 a bad command line.
With no service running, the state directory's files are changed directly (said
on standard error)."""
RELATIVE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    grant = sub.add_parser("grant", help="let a purpose's destinations receive its data",
                           description="Grant PURPOSE: its destinations receive what the "
                                       "purpose allows, from now on (until --until).")
    grant.add_argument("purpose", metavar="PURPOSE",
                       help="maintenance, insurance, repair, fleet, diagnostics or one of "
                            "the configuration's [purposes.NAME]")
    grant.add_argument("--until", metavar="DATE",
                       help="end of the consent, local time: a date (through that day: "
                            "2026-06-30) or a date and time (2026-06-30T18:00)")
    revoke = sub.add_parser("revoke", help="stop a purpose and purge what is pending for it",
                            description="Revoke PURPOSE: nothing more is stored for it, and "
                                        "what is pending for its destinations (dead letters "
                                        "included) is purged at once.")
    revoke.add_argument("purpose", metavar="PURPOSE", help="a purpose (see `consent show`)")
    show = sub.add_parser("show", help="each purpose: granted or not, what it receives, where",
                          description="Each purpose the configuration knows: whether it is "
                                      "granted (since, until, by whom), what it may receive "
                                      "and which destinations receive it.")
    for nested in (grant, revoke, show):
        add_common_arguments(nested)


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config``, ``--socket`` and ``--json`` (``bavard privacy`` has them too)."""
    parser.add_argument("--config", type=Path, metavar="FILE",
                        help=f"the configuration: its purposes, destinations, state_dir and "
                             f"control socket (default {DEFAULT_PATH})")
    add_socket_argument(parser)
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")


def run(args: argparse.Namespace) -> int:
    if args.action == "grant":
        until = local_time(args.until, "--until", end_of_day=True) if args.until else None
        if until is not None and until <= _now():
            raise BavardError(f"--until {args.until}: that is in the past")
        result = through_service(args, "consent.grant", purpose=args.purpose,
                                 until=until)
        if result is None:
            result = _grant_directly(args, until)
    elif args.action == "revoke":
        result = through_service(args, "consent.revoke", purpose=args.purpose)
        if result is None:
            result = _revoke_directly(args)
    else:
        result = through_service(args, "consent.show")
        if result is None:
            result = _show_directly(args)
    if args.json:
        print_json(result)
    elif args.action == "show":
        print(render_show(result))
    else:
        print(result["message"])
    return 0


# --- the service, or the files ----------------------------------------------------------

class Files:
    """What the direct path works on: the configuration and its state directory."""

    def __init__(self, args: argparse.Namespace) -> None:
        from agent.config import load_config
        from agent.privacy.purposes import purposes_of

        self.source = Path(args.config or DEFAULT_PATH)
        self.config = load_config(self.source)
        self.purposes = purposes_of(self.config)
        self.state_dir = Path(self.config.store.state_dir)
        why = getattr(args, "_no_service", "no service answers")  # (through_service's)
        if not self.state_dir.is_dir():
            raise BavardError(f"{why}; and {self.state_dir} ([store] state_dir of "
                              f"{self.source}) is not a directory")
        self.why = why

    @property
    def consent_path(self) -> Path:
        from agent.privacy.consent import FILE_NAME

        return self.state_dir / FILE_NAME

    def consent(self) -> Any:
        from agent.privacy.consent import ConsentBook

        return ConsentBook(self.state_dir, purposes=self.purposes)

    def not_held(self) -> None:
        """BavardError when a process holds the buffer (a service whose socket is not
        the one asked): its files are its own."""
        from agent.store.maintenance import held_by_a_process

        if held_by_a_process(self.state_dir):
            raise BavardError(f"{self.why}; yet a process holds the buffer in "
                              f"{self.state_dir} (a service with its control socket "
                              "elsewhere?): name its socket with --socket")

    def purpose(self, name: str) -> str:
        if name not in self.purposes:
            raise BavardError(f"unknown purpose {name!r}; known: {', '.join(self.purposes)}")
        return name


def through_service(args: argparse.Namespace, cmd: str, **kwargs: Any
                    ) -> dict[str, Any] | None:
    """The service's answer; None when no service answers on the socket (then
    ``args._no_service`` says where it looked)."""
    where = socket_path(args)
    try:
        with ControlClient.connect(where) as service:
            return service.call(cmd, **kwargs)
    except ServiceNotRunningError:
        args._no_service = f"no service answers on {where}"
        return None


def socket_path(args: argparse.Namespace) -> Path:
    """``--socket``, else ``[control] socket`` of the configuration (``--config``, or
    the default file when it exists and reads), else the default socket."""
    if args.socket is not None:
        return Path(args.socket)
    path = args.config or DEFAULT_PATH
    if args.config is not None or Path(path).is_file():
        from agent.config import load_config

        try:
            config = load_config(path)
        except ConfigError:
            if args.config is not None:
                raise
            return default_socket_path()  # the direct path says what is wrong with it
        if config.control.socket is not None:
            return Path(config.control.socket)
    return default_socket_path()


def _grant_directly(args: argparse.Namespace, until: float | None) -> dict[str, Any]:
    from agent.control.privacy_commands import purpose_of
    from agent.privacy.report import granted_answer

    files = Files(args)
    purpose = files.purpose(args.purpose)
    change = files.consent().grant(purpose, until, os.getuid())
    note("consent", f"{files.why}: {files.consent_path} changed directly (a service "
                    "reads it again within a second, or when it starts)")
    dests = [d for d, p in purpose_of(files.config).items() if p == purpose]
    return {**granted_answer(change, dests), "service": False}


def _revoke_directly(args: argparse.Namespace) -> dict[str, Any]:
    from agent.privacy.ledger import Ledger
    from agent.privacy.purge import purge_purpose
    from agent.privacy.report import revoked_answer

    files = Files(args)
    purpose = files.purpose(args.purpose)
    files.not_held()
    change = files.consent().revoke(purpose, os.getuid())
    ledger = Ledger(files.state_dir)
    try:
        purged = purge_purpose(files.config, purpose, ledger)
    finally:
        ledger.close()
    note("consent", f"{files.why}: revoked and purged in {files.state_dir} "
                    "directly")
    return {**revoked_answer(change, purged), "service": False}


def _show_directly(args: argparse.Namespace) -> dict[str, Any]:
    from agent.control.privacy_commands import purpose_of
    from agent.privacy.report import describe

    files = Files(args)
    note("consent", f"{files.why}: read from {files.state_dir} directly")
    return {**describe(files.consent(), files.purposes, purpose_of(files.config)),
            "service": False}


# --- text ---------------------------------------------------------------------------------

def render_show(doc: dict[str, Any]) -> str:
    from agent.privacy.report import consent_words

    lines = []
    if doc.get("problem"):
        lines += [f"{doc['file']}: {doc['problem']}: NOTHING is granted until the next "
                  "grant or revoke rewrites it", ""]
    for p in doc["purposes"]:
        r = p["receives"]
        where = ", ".join(p["destinations"]) or "no destination"
        lines.append(f"{p['purpose']}: {consent_words(p)} -> {where}")
        what = [f"signals {', '.join(r['signals'])}" if r["signals"] else "no signal",
                f"events {', '.join(r['events'])}" if r["events"] else "no event",
                "raw frames" if r["frames"] else "no raw frame",
                f"positions to {r['geohash']} geohash characters" if r["geohash"]
                else "no position"]
        lines.append(f"  {p['description'] + ': ' if p['description'] else ''}"
                     f"{'; '.join(what)}")
    for name in doc.get("granted_unknown") or ():
        lines.append(f"{name}: granted, but not a purpose of this configuration")
    return "\n".join(lines)


# --- times --------------------------------------------------------------------------------

def local_time(text: str, option: str, *, end_of_day: bool = False,
               relative: bool = False) -> float:
    """Seconds since the epoch of an ISO date or date and time in local time (one with
    an offset is taken as it says). A date alone is its start, or with ``end_of_day``
    the start of the next day. ``relative``: also ``30d``, ``12h``, ``90m``, ``2w``
    before now. BavardError naming ``option`` otherwise."""
    text = text.strip()
    if relative and (m := RELATIVE.fullmatch(text)):
        return _now() - float(m.group(1)) * UNITS[m.group(2)]
    try:
        day = date.fromisoformat(text) if len(text) == 10 else None
    except ValueError:
        day = None
    if day is not None:
        start = datetime.combine(day + timedelta(days=1) if end_of_day else day,
                                 datetime.min.time())
        return start.timestamp()
    try:
        return datetime.fromisoformat(text).timestamp()
    except (ValueError, OverflowError, OSError):
        rel = ", or a time before now: 30d, 12h, 90m, 2w" if relative else ""
        raise BavardError(f"{option} {text}: expected a date (2026-06-30) or a date and time "
                          f"(2026-06-30T18:00), local time{rel}") from None


def _now() -> float:
    return time.time()
