"""What an export says about where its data comes from: the vehicle's pseudonym, the
channels, the DBC files and what they say about each signal.

All of it is read without writing anything: unlike the service
(agent.service.identity), an export never creates the pseudonym's secret. It is
computed exactly as the uploader's ``Identity`` is (same VIN, same secret,
same DBC fingerprint, same signal metadata), so a bundle can be matched with
the batches a backend received from the same box. The VIN itself is never
exported.

Without a configuration (``--state-dir`` alone) the DBC files are unknown: the
manifest then holds what the samples themselves carry (units and labels).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.batch.ids import dbc_fingerprint, pseudonymous_vehicle_id
from agent.batch.model import SignalKey, SignalMeta, signal_metadata
from agent.config import Config
from agent.errors import BavardError
from agent.service.identity import MIN_SECRET, SECRET_NAME, UNKNOWN_VIN, VIN_NAME


@dataclass(frozen=True)
class Context:
    """Everything the manifest says that is not in the buffer."""

    config_path: str | None
    state_dir: Path
    vehicle: dict[str, Any]
    channels: list[dict[str, Any]] = field(default_factory=list)  # configured ones
    dbc_files: list[dict[str, Any]] = field(default_factory=list)
    dbc_fingerprint: str | None = None
    metadata: dict[SignalKey, SignalMeta] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def gather(config: Config | None, config_path: str | None, state_dir: Path) -> Context:
    """The context of an export from ``state_dir`` (with its configuration when known).

    A DBC that cannot be read or loaded is a warning (the data is exported; the
    manifest lacks that file's metadata), never a failure."""
    warnings: list[str] = []
    vehicle = pseudonym(config, state_dir)
    if vehicle["pseudonym"] is None:
        warnings.append(f"no vehicle pseudonym in the manifest: {vehicle['note']}")
    if config is None:
        return Context(None, state_dir, vehicle, warnings=warnings)

    from agent.decode.dbc_files import load_dbc
    from agent.decode.obd import obd_metadata
    from agent.pipeline import channel_dbcs

    channels: list[dict[str, Any]] = []
    files: dict[Path, dict[str, Any]] = {}
    metadata: dict[SignalKey, SignalMeta] = {}
    all_paths: list[Path] = []
    for ch in config.channels:
        paths = list(channel_dbcs(ch))
        all_paths += paths
        channels.append({"name": ch.name, "kind": ch.kind, "mode": ch.mode,
                         "dbc_files": [p.name for p in paths]})
        if ch.obd is not None:
            metadata.update(obd_metadata(ch.name))
        if ch.gps is not None:
            from agent.decode.gps import gps_metadata

            metadata.update(gps_metadata(ch.name))
        databases = []
        for path in paths:
            entry = files.get(path)
            if entry is None:
                entry = files[path] = _file_entry(path, warnings)
            entry["channels"].append(ch.name)
            if ch.mode == "decoded" and entry["sha256"] is not None:
                try:
                    databases.append(load_dbc(path))
                except BavardError as exc:
                    warnings.append(f"no metadata from {path}: {exc}")
        metadata.update(signal_metadata(ch.name, databases))
    fingerprint = None
    if all_paths:
        try:
            fingerprint = dbc_fingerprint(all_paths)
        except BavardError as exc:
            warnings.append(f"no DBC fingerprint: {exc}")
    return Context(config_path, state_dir, vehicle, channels, list(files.values()),
                   fingerprint, metadata, warnings)


def _file_entry(path: Path, warnings: list[str]) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        warnings.append(f"{path}: cannot read: {exc.strerror or exc}")
        return {"path": str(path), "name": path.name, "bytes": None, "sha256": None,
                "channels": []}
    return {"path": str(path), "name": path.name, "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(), "channels": []}


def pseudonym(config: Config | None, state_dir: Path) -> dict[str, Any]:
    """``{"pseudonym": hex or None, "vin_known": bool, "note": text}``: the vehicle id
    the batches of this box carry, read without creating its secret."""
    how = ("HMAC-SHA256 of the VIN with this box's secret (agent.batch.ids): the same id "
           "as the box's upload batches; the VIN itself is not exported")
    configured = config.vehicle.id_secret_file if config is not None else None
    secret_path = Path(configured) if configured is not None else state_dir / SECRET_NAME
    try:
        secret = secret_path.read_bytes()
        if configured is not None:
            secret = secret.strip()
    except FileNotFoundError:
        return {"pseudonym": None, "vin_known": False,
                "note": f"{secret_path} does not exist yet (the service creates it when it "
                        f"starts with an [upload] table; or set [vehicle] id_secret_file)"}
    except OSError as exc:
        return {"pseudonym": None, "vin_known": False,
                "note": f"cannot read {secret_path}: {exc.strerror or exc} (run as root or "
                        f"as the service's user)"}
    if len(secret) < MIN_SECRET:
        return {"pseudonym": None, "vin_known": False,
                "note": f"{secret_path} holds {len(secret)} bytes, too few for a key"}
    vin = config.vehicle.vin.strip() if config is not None else ""
    if not vin:
        try:
            vin = (state_dir / VIN_NAME).read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            vin = ""
    note = how if vin else how + f"; no VIN known yet, so it is the id of {UNKNOWN_VIN!r}"
    return {"pseudonym": pseudonymous_vehicle_id(vin or UNKNOWN_VIN, secret),
            "vin_known": bool(vin), "note": note}
