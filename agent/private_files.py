"""Directories and files that hold personal data: owner only, whatever the umask.

Decoded vehicle data, its pseudonym secret and the receiver's database are
personal data. Under systemd the unit's ``UMask=0077`` and ``StateDirectoryMode=0700``
keep them private; run by hand (umask 022) they would be world-readable. So:

- :func:`make_private_dir`: every directory created here is 0700 (set with
  ``chmod`` after ``mkdir``, so the umask cannot leave it wider or narrower); an
  existing one is left as it is (systemd's ``StateDirectory=`` made it, or the
  operator chose its mode).
- :func:`make_private_file`: a file that SQLite is about to open is created
  first, 0600, so that SQLite's own files beside it (``-wal``, ``-shm``,
  ``-journal``), which it creates with the database file's permissions, are
  0600 too. An existing file or sidecar that group or others may use is
  narrowed to its owner's bits; nothing is ever widened.

Small files replaced whole (the pseudonym secret, the metered budget, the DBC
cache) are 0600 through :func:`agent.atomic_file.write_atomically` (``mkstemp``).
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

DIR_MODE = 0o700
FILE_MODE = 0o600
SQLITE_SIDECARS = ("-wal", "-shm", "-journal")


def make_private_dir(path: Path) -> None:
    """Create ``path`` and its missing parents, each 0700; OSError when it cannot."""
    missing: list[Path] = []
    p = Path(path)
    while not p.is_dir() and p != p.parent:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, DIR_MODE)
        except FileExistsError:
            if not d.is_dir():
                raise
            continue  # made by someone else meanwhile: theirs to decide
        os.chmod(d, DIR_MODE)


def make_private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 when missing; narrow an existing one (and
    the SQLite sidecars beside it) to its owner's bits. OSError when it cannot."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    except FileExistsError:
        restrict(path)
    else:
        try:
            os.fchmod(fd, FILE_MODE)
        finally:
            os.close(fd)
    for suffix in SQLITE_SIDECARS:
        with contextlib.suppress(FileNotFoundError):
            restrict(Path(f"{path}{suffix}"))


def restrict(path: Path) -> None:
    """Take group and other permissions off ``path`` (FileNotFoundError if missing)."""
    mode = os.stat(path).st_mode & 0o7777
    if mode & 0o077:
        os.chmod(path, mode & 0o700)
        log.info("%s was open to group or others (mode %04o); now %04o", path, mode,
                 mode & 0o700)
