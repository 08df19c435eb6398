"""Who the batches say they come from: a pseudonym of the VIN, the DBCs' fingerprint,
and the signals' metadata.

The pseudonym is an HMAC of the VIN (agent.batch.ids): the VIN never leaves the
box. The VIN is ``[vehicle] vin`` when configured; else the one an OBD channel
read from the vehicle (mode 09), which the box keeps in its state directory
(``vehicle.vin``, mode 0600) so that the next start has it from its first
batch; else ``UNKNOWN`` until an OBD channel reads it.

The HMAC key is ``[vehicle] id_secret_file`` when configured (one per fleet or per
owner), else a random 32-byte secret that the box creates in its state directory
on first start (mode 0600, written atomically) and keeps: the same box always
gives the same pseudonym, and nobody without the box can link it to the VIN.
A secret file that cannot serve as a key any more (shorter than 16 bytes: an
emptied or truncated file) is replaced by a new one, logged as an error: the
pseudonym changes, but the box keeps buffering and uploading instead of failing
at every start. A state directory that cannot be read or written is a
ConfigError naming the file.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

from agent.atomic_file import write_atomically
from agent.batch.ids import dbc_fingerprint, pseudonymous_vehicle_id
from agent.batch.model import SignalKey, SignalMeta, signal_metadata
from agent.config import Config
from agent.decode.obd import obd_metadata
from agent.errors import ConfigError
from agent.pipeline import Pipeline, channel_dbcs
from agent.privacy.destinations import MAIN
from agent.privacy.keys import destination_key, rotate_key
from agent.upload.uploader import Identity

log = logging.getLogger(__name__)

SECRET_NAME = "vehicle-id.secret"
VIN_NAME = "vehicle.vin"  # the VIN last read from the vehicle
MIN_SECRET = 16  # bytes: what agent.batch.ids accepts as a key
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
        if len(secret) < MIN_SECRET:
            raise ConfigError(f"vehicle.id_secret_file: {configured} holds {len(secret)} "
                              f"bytes; at least {MIN_SECRET} are needed")
        return secret
    path = Path(config.store.state_dir) / SECRET_NAME
    try:
        secret = path.read_bytes()
        if len(secret) >= MIN_SECRET:
            return secret
        log.error("the vehicle pseudonym secret %s holds %d bytes, too few for a key; "
                  "replacing it: the pseudonym changes", path, len(secret))
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise ConfigError(f"cannot read the vehicle pseudonym secret {path}: "
                          f"{exc.strerror or exc}") from None
    secret = secrets.token_bytes(32)
    try:
        write_atomically(path, [secret])
    except OSError as exc:
        raise ConfigError(f"cannot create the vehicle pseudonym secret {path}: "
                          f"{exc.strerror or exc}") from None
    log.info("created the vehicle pseudonym secret %s", path)
    return secret


def read_vin(config: Config) -> str:
    """The configured VIN, else the one last read from the vehicle, else ''."""
    configured = config.vehicle.vin.strip()
    if configured:
        return configured
    try:
        return (Path(config.store.state_dir) / VIN_NAME).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""


def remember_vin(config: Config, vin: str) -> None:
    """Keep the VIN read from the vehicle for the next start (0600, atomically); a
    state directory that refuses it is logged, the pseudonym still changes now."""
    try:
        write_atomically(Path(config.store.state_dir) / VIN_NAME, [vin.encode("ascii")])
    except (OSError, UnicodeEncodeError) as exc:
        log.error("cannot keep the VIN in %s: %s", config.store.state_dir, exc)


def vehicle_id(config: Config, vin: str) -> str:
    return pseudonymous_vehicle_id(vin or UNKNOWN_VIN, id_secret(config))


def destination_vehicle_id(config: Config, destination: str, vin: str) -> str:
    """The pseudonym one destination sees: ``main`` keeps the box's key (above), every
    other destination has a key of its own (agent.privacy.keys), so that two recipients
    cannot join their data on it."""
    if destination == MAIN:
        return vehicle_id(config, vin)
    key = destination_key(Path(config.store.state_dir), destination)
    return pseudonymous_vehicle_id(vin or UNKNOWN_VIN, key)


def rotate_destination_key(config: Config, destination: str) -> None:
    """A new key for one destination; the old one is destroyed."""
    if destination != MAIN:
        rotate_key(Path(config.store.state_dir), destination)
        return
    if config.vehicle.id_secret_file is not None:
        raise ConfigError(f"the key of the main destination is [vehicle] id_secret_file "
                          f"({config.vehicle.id_secret_file}): replace that file to rotate it")
    path = Path(config.store.state_dir) / SECRET_NAME
    try:
        write_atomically(path, [secrets.token_bytes(32)])
    except OSError as exc:
        raise ConfigError(f"cannot replace the pseudonym secret {path}: "
                          f"{exc.strerror or exc}") from None
    log.warning("the pseudonym key of %s was rotated: its pseudonym changes", destination)


def identity(config: Config, pipeline: Pipeline, destination: str = MAIN) -> Identity:
    paths = [p for ch in config.channels for p in channel_dbcs(ch)]
    signals: dict[SignalKey, SignalMeta] = {}
    for ch in pipeline.channels:
        if ch.config.obd is not None:
            signals.update(obd_metadata(ch.config.name))
        if ch.config.gps is not None:
            from agent.decode.gps import gps_metadata

            signals.update(gps_metadata(ch.config.name))
        signals.update(signal_metadata(ch.config.name, ch.databases))
    return Identity(destination_vehicle_id(config, destination, read_vin(config)),
                    dbc_fingerprint(paths) if paths else "", signals)
