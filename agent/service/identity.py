"""Who the batches say they come from: a pseudonym of the VIN, the DBCs' fingerprint,
and the signals' metadata.

The pseudonym is an HMAC of the VIN (agent.batch.ids): the VIN never leaves the
box. Its key is ``[vehicle] id_secret_file`` when configured (one per fleet or per
owner), else a random 32-byte secret that the box creates in its state directory
on first start (mode 0600, written atomically) and keeps: the same box always
gives the same pseudonym, and nobody without the box can link it to the VIN.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from agent.batch.ids import dbc_fingerprint, pseudonymous_vehicle_id
from agent.batch.model import SignalKey, SignalMeta, signal_metadata
from agent.config import Config
from agent.errors import ConfigError
from agent.pipeline import Pipeline, channel_dbcs
from agent.upload.uploader import Identity

log = logging.getLogger(__name__)

SECRET_NAME = "vehicle-id.secret"
UNKNOWN_VIN = "UNKNOWN"


def id_secret(config: Config) -> bytes:
    """The HMAC key of the pseudonym (created on first use when not configured)."""
    configured = config.vehicle.id_secret_file
    if configured is not None:
        try:
            secret = Path(configured).read_bytes().strip()
        except OSError as exc:
            raise ConfigError(f"vehicle.id_secret_file: cannot read {configured}: "
                              f"{exc.strerror or exc}") from None
        if len(secret) < 16:
            raise ConfigError(f"vehicle.id_secret_file: {configured} holds {len(secret)} "
                              f"bytes; at least 16 are needed")
        return secret
    path = Path(config.store.state_dir) / SECRET_NAME
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    secret = secrets.token_bytes(32)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, secret)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    log.info("created the vehicle pseudonym secret %s", path)
    return secret


def identity(config: Config, pipeline: Pipeline) -> Identity:
    vin = config.vehicle.vin.strip() or UNKNOWN_VIN
    vehicle_id = pseudonymous_vehicle_id(vin, id_secret(config))
    paths = [p for ch in config.channels for p in channel_dbcs(ch)]
    signals: dict[SignalKey, SignalMeta] = {}
    for ch in pipeline.channels:
        signals.update(signal_metadata(ch.config.name, ch.databases))
    return Identity(vehicle_id, dbc_fingerprint(paths) if paths else "", signals)
