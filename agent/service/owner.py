"""The owner's side of the service: consent, purposes and destinations at run time.

The daemon (agent.service.daemon) calls these to build its router, to give
each uploader its consent check and its privacy ledger, and to carry out the
owner's commands (agent.control.privacy_commands): grant, revoke (the
purpose's buffers purged at once, the positions held for it forgotten) and
the rotation of a destination's pseudonym key.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.config import Config
from agent.errors import ConfigError
from agent.privacy.destinations import destinations_of
from agent.privacy.purge import purge_store, record
from agent.privacy.purposes import purposes_of
from agent.privacy.router import Outlet, Router, make_gate

if TYPE_CHECKING:
    from agent.service.daemon import Daemon
    from agent.store.buffer import StoredBatch

log = logging.getLogger(__name__)


def log_consent(daemon: Daemon) -> None:
    """Say at start which destinations receive nothing for want of consent."""
    assert daemon.consent is not None
    for dest in daemon.destinations:
        if not daemon.consent.granted(dest.purpose):
            log.warning("nothing is stored for %s: its purpose %s has no consent from the "
                        "owner (bavard consent grant %s)", dest.name, dest.purpose,
                        dest.purpose)


def make_router(daemon: Daemon, config: Config) -> Router:
    """The router of a configuration over the daemon's stores (kept across reloads)."""
    assert daemon.consent is not None
    purposes = purposes_of(config)
    outlets = []
    for dest in destinations_of(config):
        purpose = purposes[dest.purpose]
        outlets.append(Outlet(dest.name, purpose, daemon.stores[dest.name], make_gate(purpose)))
    insights = None
    if config.insights.enabled:
        from agent.insights.engine import Insights

        insights = Insights(config.insights, Path(config.store.state_dir))
    return Router(outlets, daemon.consent, config.rules, insights)


def consent_check(daemon: Daemon, purpose: str) -> Callable[[], bool]:
    def allowed() -> bool:
        return daemon.consent is not None and daemon.consent.granted(purpose)
    return allowed


def ledger_recorder(daemon: Daemon, destination: str, purpose: str
                    ) -> Callable[[StoredBatch, str, int], None]:
    """What the uploader calls after each acknowledged batch: the ledger's account."""
    def delivered(batch: StoredBatch, batch_id: str, nbytes: int) -> None:
        ledger = daemon.ledger
        if ledger is None:
            return
        contents: dict[tuple[str, str], int] = {}
        stamps: list[float] = []
        for s in batch.samples:
            key = ("signal", f"{s.message}.{s.signal}")
            contents[key] = contents.get(key, 0) + 1
        for e in batch.events:
            key = ("event", e.kind)
            contents[key] = contents.get(key, 0) + 1
        for f in batch.frames:
            key = ("frames", f.channel)
            contents[key] = contents.get(key, 0) + 1
        for items in (batch.samples, batch.events, batch.frames):
            if items:
                stamps.append(min(i.timestamp for i in items))
                stamps.append(max(i.timestamp for i in items))
        ledger.uploaded(destination, purpose, batch_id, nbytes=nbytes,
                        ts_first=min(stamps, default=0.0), ts_last=max(stamps, default=0.0),
                        classes={"samples": len(batch.samples), "events": len(batch.events),
                                 "frames": len(batch.frames)},
                        contents=contents)
    return delivered


def keep_destinations(running: Config, new: Config) -> Config:
    """A reload keeps the running set of destinations (their buffers are open): a
    destination added or removed takes effect at the next restart."""
    old_names = [d.name for d in destinations_of(running)]
    new_names = [d.name for d in destinations_of(new)]
    if old_names == new_names:
        return new
    log.warning("the destinations changed (%s -> %s): that takes effect at the next "
                "restart", ", ".join(old_names), ", ".join(new_names))
    return dataclasses.replace(new, upload=running.upload, destinations=running.destinations)


def grant(daemon: Daemon, purpose: str, until: float | None, uid: int) -> dict[str, Any]:
    assert daemon.consent is not None and daemon.config is not None
    _known(daemon.config, purpose)
    change = daemon.consent.grant(purpose, until, uid)
    daemon.event("consent.granted", f"{purpose} granted by uid {uid}"
                 + ("" if until is None else f" until {until:.0f}"), 2)
    for uploader in daemon.uploaders.values():
        uploader.wake()
    return change


def revoke(daemon: Daemon, purpose: str, uid: int) -> dict[str, Any]:
    """Revoke, then purge at once what is pending for the purpose: the router stops
    storing for it first, the uploaders stop sending it before their next attempt,
    then every buffer of the purpose is emptied (a batch on the wire at that moment
    completes, and is in the ledger)."""
    assert daemon.consent is not None and daemon.config is not None
    _known(daemon.config, purpose)
    change = daemon.consent.revoke(purpose, uid)
    daemon._granted.discard(purpose)  # not an expiry: purged here, not by the monitor
    positions = daemon.router.withdraw(purpose) if daemon.router is not None else 0
    purged = purge_purpose(daemon, purpose)
    items = sum(p["items"] for p in purged.values())
    daemon.event("consent.revoked", f"{purpose} revoked by uid {uid}; {items} items purged", 2)
    return {**change, "purged": purged, "positions_forgotten": positions}


def purge_purpose(daemon: Daemon, purpose: str) -> dict[str, dict[str, int]]:
    """Empty every buffer of ``purpose`` (its consent is gone): what each held."""
    purged: dict[str, dict[str, int]] = {}
    for dest in daemon.destinations:
        if dest.purpose != purpose:
            continue
        store = daemon.stores[dest.name]
        store.flush()  # what the router stored before the consent went goes too
        purged[dest.name] = purge_store(store)
        record(daemon.ledger, dest.name, purpose, purged[dest.name])
    return purged


def watch_expiry(daemon: Daemon, granted: set[str]) -> set[str]:
    """A grant whose ``until`` passed is a consent withdrawn: purge its buffers as a
    revoke does. ``granted``: the purposes granted at the last look; the new set."""
    consent = daemon.consent
    if consent is None:
        return granted
    now = {d.purpose for d in daemon.destinations if consent.granted(d.purpose)}
    for purpose in sorted(granted - now):
        if daemon.router is not None:
            daemon.router.withdraw(purpose)
        purged = purge_purpose(daemon, purpose)
        items = sum(p["items"] for p in purged.values())
        log.warning("the consent for %s ended: %d items purged", purpose, items)
        daemon.event("consent.ended", f"{purpose}: consent ended; {items} items purged", 2)
    return now


def rotate_key(daemon: Daemon, destination: str) -> dict[str, Any]:
    """A new pseudonym key for a destination: from its next batch on, the recipient
    cannot link the vehicle to what it received before."""
    assert daemon.config is not None
    from agent.service.identity import destination_vehicle_id, read_vin, rotate_destination_key

    names = [d.name for d in daemon.destinations if d.upload is not None]
    if destination not in names:
        raise ConfigError(f"no destination {destination!r} uploads (known: "
                          f"{', '.join(names) or 'none'})")
    rotate_destination_key(daemon.config, destination)
    uploader = daemon.uploaders.get(destination)
    vin = daemon._vin or read_vin(daemon.config)
    pseudonym = destination_vehicle_id(daemon.config, destination, vin)
    if uploader is not None:
        uploader.identity = dataclasses.replace(uploader.identity, vehicle_id=pseudonym)
    daemon.event("privacy.key-rotated", f"{destination}: new pseudonym key", 2)
    return {"destination": destination, "rotated": True}


def _known(config: Config, purpose: str) -> None:
    known = purposes_of(config)
    if purpose not in known:
        raise ConfigError(f"unknown purpose {purpose!r} (known: {', '.join(known)})")
