"""Where batches go: ``[upload]`` and each ``[destinations.NAME]``, each with a
purpose, its own buffer and its own pseudonym.

* ``main``: ``[upload]``; its buffer is the state directory's ``buffer.db`` (the
  one ``bavard buffer``, ``export`` and ``status`` read), its pseudonym the HMAC
  key of ``[vehicle] id_secret_file`` or the box's ``vehicle-id.secret``.
* ``NAME``: ``[destinations.NAME]``; its buffer is ``destinations/NAME/buffer.db``
  under the state directory, its key ``keys/NAME.key`` (agent.privacy.keys): two
  recipients cannot join their data on the vehicle's pseudonym.
* ``local``: no upload at all; the buffer keeps the ``diagnostics`` purpose's
  data for the technician (``bavard export``), and it never leaves the box.

The ``[store]`` quota is shared equally between the buffers (each at least the
smallest quota a store accepts).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from agent.config import Config
from agent.privacy.purposes import DIAGNOSTICS
from agent.store.settings import RANGES as STORE_RANGES
from agent.store.settings import StoreConfig
from agent.upload.settings import UploadConfig

MAIN, LOCAL = "main", "local"
SUBDIR = "destinations"


@dataclass(frozen=True)
class Destination:
    name: str
    purpose: str
    upload: UploadConfig | None  # None: local only
    store: StoreConfig


def destinations_of(config: Config) -> list[Destination]:
    """The destinations of a configuration, ``main`` (or ``local``) first."""
    named = list(config.destinations)
    count = (config.upload is not None) + len(named) or 1
    floor = int(STORE_RANGES["quota_bytes"].low)
    quota = max(config.store.quota_bytes // count, floor)
    shared = dataclasses.replace(config.store, quota_bytes=quota)
    out = []
    if config.upload is None and not named:
        out.append(Destination(LOCAL, DIAGNOSTICS, None, config.store))
    if config.upload is not None:
        out.append(Destination(MAIN, config.upload.purpose, config.upload, shared))
    for dest in named:
        out.append(Destination(dest.name, dest.upload.purpose, dest.upload,
                               dataclasses.replace(shared,
                                                   state_dir=buffer_dir(config, dest.name))))
    return out


def buffer_dir(config: Config, name: str) -> Path:
    """The directory of a destination's buffer."""
    if name in (MAIN, LOCAL):
        return Path(config.store.state_dir)
    return Path(config.store.state_dir) / SUBDIR / name
