"""The consent and privacy commands of the control socket (``bavard consent``, ``privacy``).

=======================  =========================  ===========================================
command                  args                       result
=======================  =========================  ===========================================
``consent.grant``        {purpose, until?}          the grant (since, until, uid, previous),
                                                    its destinations, ``message``
``consent.revoke``       {purpose}                  previous grant, ``purged`` per destination
                                                    {items, bytes}, their sums, ``message``
``consent.show``         {}                         each purpose: granted?, what it receives,
                                                    its destinations (agent.privacy.consent)
``privacy.report``       {since?}                   the report (agent.privacy.report)
``privacy.rotate-key``   {destination}              {destination, rotated, message}
=======================  =========================  ===========================================

``until`` and ``since`` are wall-clock seconds (the command line turns the
owner's local dates into them). A grant or revoke is audited with the uid of
the peer that asked (SO_PEERCRED: the server sets ``_uid`` in the args of
the handlers marked ``peer_uid``, whatever the peer sent). The daemon does the
work (``daemon.grant``: the consent's change; ``daemon.revoke``: the consent's
change and ``purged``, what the purge deleted per destination;
``daemon.rotate_key``); the handlers check the arguments against the running
configuration first.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from agent.control import protocol
from agent.control.server import PEER_UID
from agent.errors import ControlError
from agent.privacy import report
from agent.privacy.destinations import destinations_of
from agent.privacy.purposes import purposes_of

Command = Callable[[dict[str, Any]], dict[str, Any]]

ARGS = {"consent.grant": ("purpose", "until"), "consent.revoke": ("purpose",),
        "consent.show": (), "privacy.report": ("since",),
        "privacy.rotate-key": ("destination",)}


def privacy_commands(daemon: Any) -> dict[str, Command]:
    """The handlers over ``daemon`` (its configuration, consent book and ledger looked
    up at each call: a reload replaces the configuration)."""

    def grant(args: dict[str, Any]) -> dict[str, Any]:
        uid = _uid(args, "consent.grant")
        config = _config(daemon)
        purpose = _purpose(args, config)
        until = _time(args, "until")
        now = daemon.consent.clock()
        if until is not None and until <= now:
            raise ControlError(f"until: {report.when(until)} is in the past", protocol.BAD_ARGS)
        change = daemon.grant(purpose, until, uid)  # a BavardError: a failed answer
        return report.granted_answer(change, _destinations(config, purpose))

    def revoke(args: dict[str, Any]) -> dict[str, Any]:
        uid = _uid(args, "consent.revoke")
        purpose = _purpose(args, _config(daemon))
        change = daemon.revoke(purpose, uid)  # the consent's change and "purged"
        return report.revoked_answer(change, change["purged"])

    def show(args: dict[str, Any]) -> dict[str, Any]:
        _only(args, "consent.show")
        config = _config(daemon)
        return report.describe(daemon.consent, purposes_of(config), purpose_of(config))

    def privacy_report(args: dict[str, Any]) -> dict[str, Any]:
        _only(args, "privacy.report")
        since = _time(args, "since")
        return report.build(daemon.ledger, daemon.consent, since,
                            list(purposes_of(_config(daemon))))

    def rotate(args: dict[str, Any]) -> dict[str, Any]:
        _only(args, "privacy.rotate-key")
        destinations = uploading(_config(daemon))
        destination = args.get("destination")
        if destination not in destinations:
            raise ControlError(f"destination: no destination {destination!r} (destinations: "
                               f"{', '.join(destinations) or 'none'})", protocol.BAD_ARGS)
        daemon.rotate_key(destination)
        return rotated_answer(destination)

    for handler in (grant, revoke):
        setattr(handler, "peer_uid", True)  # noqa: B010  (agent.control.server reads it)
    return {"consent.grant": grant, "consent.revoke": revoke, "consent.show": show,
            "privacy.report": privacy_report, "privacy.rotate-key": rotate}


def purpose_of(config: Any) -> dict[str, str]:
    """Each destination of ``config`` (agent.privacy.destinations) with its purpose."""
    return {d.name: d.purpose for d in destinations_of(config)}


def uploading(config: Any) -> list[str]:
    """The destinations that upload (those with a pseudonym key)."""
    return [d.name for d in destinations_of(config) if d.upload is not None]


def rotated_answer(destination: str) -> dict[str, Any]:
    return {"destination": destination, "rotated": True,
            "message": f"rotated the pseudonym key of destination {destination}: its next "
                       "batches name the vehicle by a new id, which cannot be linked to "
                       "the old one"}


def _uid(args: dict[str, Any], command: str) -> int | None:
    uid = args.pop(PEER_UID, None)
    _only(args, command)
    return uid if isinstance(uid, int) else None


def _only(args: dict[str, Any], command: str) -> None:
    unknown = sorted(set(args) - set(ARGS[command]))
    if unknown:
        takes = ", ".join(ARGS[command]) or "none"
        raise ControlError(f"{command}: unknown argument {unknown[0]!r} (it takes {takes})",
                           protocol.BAD_ARGS)


def _config(daemon: Any) -> Any:
    config = daemon.config
    if config is None:
        raise ControlError("the service is not running a configuration yet", protocol.FAILED)
    return config


def _purpose(args: dict[str, Any], config: Any) -> str:
    purpose = args.get("purpose")
    known = purposes_of(config)
    if not isinstance(purpose, str) or purpose not in known:
        raise ControlError(f"purpose: unknown purpose {purpose!r} (known: "
                           f"{', '.join(known)})", protocol.BAD_ARGS)
    return purpose


def _time(args: dict[str, Any], name: str) -> float | None:
    value = args.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(
            value):
        raise ControlError(f"{name}: seconds since the epoch, got {value!r}", protocol.BAD_ARGS)
    return float(value)


def _destinations(config: Any, purpose: str) -> list[str]:
    return [d for d, p in purpose_of(config).items() if p == purpose]
