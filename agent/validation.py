"""The one check of a configuration that ``bavard run`` and ``bavard config check`` share.

:func:`load_usable_config` does everything the service checks before it
starts, so that ``config check`` says "ok" exactly when ``run`` would start
(a live bus that cannot be opened and an unusable state directory aside: those
are the machine's, not the file's):

1. the file itself (:func:`agent.config.read_config`: size, TOML, keys, types,
   ranges, files that must exist);
2. every DBC the decoded channels name loads (:func:`agent.decode.dbc_files.load_dbc`,
   so through the DBC cache when one is in use), each problem under its key:
   ``channels[0].dbc[1]: car.dbc:12: not a loadable DBC: ...``;
3. with ``[upload]``: the transport can be built (URL scheme, host and port,
   the CA bundle, the client certificate and the private key's permissions:
   :func:`agent.upload.transport.open_transport`, closed at once, nothing is
   sent), and ``vehicle.id_secret_file``, when set, is a usable key.

Every problem is collected and raised at once as one ConfigError. What is not
wrong but probably not meant comes back as warnings: a glob of ``[selection]``
or of a ``[[signals]]`` rule that matches no signal of any loaded DBC.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.config import Config, read_config
from agent.errors import BavardError, ConfigError
from agent.globs import unmatched_globs

log = logging.getLogger(__name__)

__all__ = ["UsableConfig", "glob_warnings", "load_usable_config"]

MAX_GLOB_WARNINGS = 100  # then one line says how many more


@dataclass(frozen=True)
class UsableConfig:
    """A configuration that passed every check, and what it may not mean."""

    config: Config
    warnings: tuple[str, ...] = ()  # one line each, led by the key path, like problems
    # every DBC loaded (the decoded channels'), by path: cantools databases
    databases: Mapping[Path, Any] = field(default_factory=dict)


def load_usable_config(path: str | Path) -> UsableConfig:
    """Read ``path`` and check everything ``bavard run`` needs before it starts.

    Raises ConfigError listing every problem (a DBC that does not load is one),
    each led by its key path. Logs nothing: the caller prints or logs the
    problems and the warnings.
    """
    reading = read_config(path)
    problems = list(reading.problems)
    config = reading.config
    if config is None:  # not readable, or not TOML: nothing more to check
        raise ConfigError(problems, source=reading.source)
    loaded: dict[Path, Any] = {}
    warnings: list[str] = []
    for key, dbc in reading.dbc_files:
        where = dbc if dbc is not None else _demo_dbc()
        if where in loaded:
            continue
        try:
            db = loaded[where] = _load_dbc(where)
        except BavardError as exc:
            problems.append(f"{key}: {exc}")
            continue
        if not db.messages:
            warnings.append(f"{key}: {where} defines no message: nothing is decoded with it")
    problems.extend(_upload_problems(config, problems))
    if problems:
        raise ConfigError(problems, source=reading.source)
    known = list(loaded.values())
    if any(ch.obd is not None for ch in config.channels):  # OBD.<PID> names exist too
        from agent.decode.obd import catalogue

        known.append(catalogue())
    if any(ch.gps is not None for ch in config.channels):  # GPS.Latitude, ...
        from agent.decode.gps import catalogue as gps_catalogue

        known.append(gps_catalogue())
    warnings.extend(glob_warnings(config, known))
    return UsableConfig(config, tuple(warnings), loaded)


def glob_warnings(config: Config, databases: Iterable[Any]) -> list[str]:
    """A warning for each glob of ``[selection]`` and ``[[signals]]`` that matches no
    signal of ``databases`` (nothing when there is no database: raw channels only)."""
    databases = list(databases)
    if not any(m.signals for db in databases for m in db.messages):
        return []  # no signal at all (raw channels only, empty DBCs): said otherwise
    selection = config.selection
    out: list[str] = []
    for name, globs, case_sensitive in (
            ("include", selection.include, True),
            ("exclude", selection.exclude, True),
            ("volatile", tuple(g.removeprefix("!") for g in selection.volatile), False)):
        unmatched = set(unmatched_globs(globs, databases, case_sensitive=case_sensitive))
        out.extend(f"selection.{name}[{i}]: {glob!r} matches no signal of the DBCs"
                   for i, glob in enumerate(globs) if glob in unmatched)
    matches = [rule.match for rule in config.rules]
    unmatched = set(unmatched_globs(matches, databases))
    out.extend(f"signals[{i}].match: {glob!r} matches no signal of the DBCs"
               for i, glob in enumerate(matches) if glob in unmatched)
    if len(out) > MAX_GLOB_WARNINGS:
        more = len(out) - MAX_GLOB_WARNINGS
        out = [*out[:MAX_GLOB_WARNINGS], f"... and {more:_} more globs that match no signal"]
    return out


def _demo_dbc() -> Path:
    from agent.resources import demo_dbc_path

    return demo_dbc_path()


def _load_dbc(path: Path) -> Any:
    from agent.decode.dbc_files import load_dbc

    return load_dbc(path)


def _upload_problems(config: Config, already: list[str]) -> list[str]:
    """What building the transport and reading the id secret say, less what the file's
    own checks said about the same key already."""
    out: list[str] = []
    if config.upload is not None:
        from agent.upload.transport import open_transport

        try:
            open_transport(config.upload.transport()).close()
        except ConfigError as exc:
            out.extend(exc.problems)
        except BavardError as exc:
            out.append(f"upload: {exc}")
        if config.vehicle.id_secret_file is not None:  # the default one is made at start
            from agent.service.identity import id_secret

            try:
                id_secret(config)
            except ConfigError as exc:
                out.extend(exc.problems)
    said = {p.split(":", 1)[0] for p in already}
    return [p for p in out if p.split(":", 1)[0] not in said]
