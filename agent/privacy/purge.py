"""A revoked purpose's data leaves the buffers at once: every class, in flight or
not, and its dead letters, for each destination of that purpose.

The service does it on its own stores (``Daemon.revoke``); with no service
running, ``bavard consent revoke`` opens the buffer files itself
(:func:`purge_purpose`). Either way the privacy ledger records what was purged.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from agent.config import Config
from agent.errors import StoreError
from agent.privacy.destinations import destinations_of
from agent.store.buffer import Store
from agent.store.maintenance import held_by_a_process, offline_config
from agent.store.settings import DB_NAME, Kind

if TYPE_CHECKING:
    from agent.privacy.ledger import Ledger

log = logging.getLogger(__name__)

PURGE_WAIT = 20.0  # seconds each store may take


def purge_store(store: Store, timeout: float = PURGE_WAIT) -> dict[str, int]:
    """Delete everything a buffer holds, dead letters included: {"items", "bytes"}."""
    items = nbytes = 0
    for kind in Kind:
        purged = store.purge(kind, timeout, in_flight_too=True)
        items += purged.items
        nbytes += purged.bytes
    dead = store.purge_dead_letters(timeout)
    return {"items": items + dead.items, "bytes": nbytes + dead.bytes}


def purge_purpose(config: Config, purpose: str, ledger: Ledger | None = None
                  ) -> dict[str, dict[str, int]]:
    """With no service running: purge the buffer of each destination of ``purpose``.
    StoreError when the service holds one (it purges on its own)."""
    out: dict[str, dict[str, int]] = {}
    for dest in destinations_of(config):
        if dest.purpose != purpose:
            continue
        directory = dest.store.state_dir
        if not (directory / DB_NAME).is_file():
            out[dest.name] = {"items": 0, "bytes": 0}
            continue
        if held_by_a_process(directory):
            raise StoreError(f"the buffer in {directory} is held by a running service: "
                             "revoke through it (bavard consent revoke, with its socket)")
        with Store(offline_config(directory)) as store:
            out[dest.name] = purge_store(store)
        record(ledger, dest.name, purpose, out[dest.name])
    return out


def record(ledger: Ledger | None, destination: str, purpose: str,
           purged: dict[str, Any]) -> None:
    """Into the ledger, and the log."""
    log.warning("consent for %s revoked: purged %d items (%d bytes) pending for %s",
                purpose, purged["items"], purged["bytes"], destination)
    if ledger is not None:
        ledger.purged(destination, purpose, reason="consent revoked",
                      items=purged["items"], nbytes=purged["bytes"])
