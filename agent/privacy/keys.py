"""Per-destination pseudonym keys: two recipients cannot join their data on the vehicle.

Each destination's batches name the vehicle by
:func:`agent.batch.ids.pseudonymous_vehicle_id` (an HMAC of the VIN) under a key
of its own, ``keys/DESTINATION.key`` in the state directory: 32 random bytes
created on first use (0600 in a 0700 directory, written atomically), so the
garage's and the insurer's ids of the same car differ and cannot be linked,
not even by trying every VIN. Rotating a key (``bavard privacy rotate-key``)
replaces it by a new random one and destroys the old: the destination's ids
before and after cannot be linked either (it sees a new vehicle).

A key file that cannot serve as a key any more (shorter than 16 bytes: emptied
or truncated) is replaced by a new one, logged as an error: the pseudonym
changes, but the box keeps buffering and uploading.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
from pathlib import Path

from agent.atomic_file import write_atomically
from agent.errors import BavardError
from agent.private_files import make_private_dir

log = logging.getLogger(__name__)

KEYS_DIR = "keys"
KEY_BYTES = 32
MIN_KEY = 16  # bytes: what agent.batch.ids accepts as a key
DESTINATION = re.compile(r"[a-z0-9_-]{1,32}")

_lock = threading.Lock()  # two uploaders asking for a missing key create one, not two


def key_path(state_dir: Path, destination: str) -> Path:
    """Where ``destination``'s key is; BavardError for a name that is not a
    destination's (``[a-z0-9_-]{1,32}``: it becomes a file name)."""
    if not isinstance(destination, str) or not DESTINATION.fullmatch(destination):
        raise BavardError(f"{destination!r} is not a destination's name (1 to 32 lower-case "
                          "letters, digits, - or _)")
    return Path(state_dir) / KEYS_DIR / f"{destination}.key"


def destination_key(state_dir: Path, destination: str) -> bytes:
    """The pseudonym key of ``destination``, created on first use. BavardError naming
    the file when the state directory cannot be read or written."""
    path = key_path(state_dir, destination)
    with _lock:
        try:
            key = path.read_bytes()
            if len(key) >= MIN_KEY:
                return key
            log.error("the pseudonym key %s holds %d bytes, too few for a key; replacing "
                      "it: the destination %s sees a new vehicle id", path, len(key),
                      destination)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise BavardError(f"cannot read the pseudonym key {path}: "
                              f"{exc.strerror or exc}") from None
        key = _new_key(path)
        log.info("created the pseudonym key of destination %s (%s)", destination, path)
        return key


def rotate_key(state_dir: Path, destination: str) -> None:
    """Replace ``destination``'s key by a new random one; the old one is gone (its
    file replaced), so ids before and after cannot be linked."""
    path = key_path(state_dir, destination)
    with _lock:
        _new_key(path)
    log.info("rotated the pseudonym key of destination %s: it sees a new vehicle id",
             destination)


def _new_key(path: Path) -> bytes:
    key = secrets.token_bytes(KEY_BYTES)
    try:
        make_private_dir(path.parent)
        write_atomically(path, [key], temp_prefix=".key-")
    except OSError as exc:
        raise BavardError(f"cannot write the pseudonym key {path}: "
                          f"{exc.strerror or exc}") from None
    return key
