"""Replace a small file so that a power cut leaves the old content or the new, never a mix.

Write a 0600 temporary file beside the target (``mkstemp``: O_EXCL, so two
writers never share one), fsync it, rename it over the target, fsync the
directory (so the rename itself survives the power cut). On any error the
temporary file is removed and the error raised; the target is untouched.
Used for the vehicle pseudonym secret, the metered-link budget and the parsed
DBC cache.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path


def write_atomically(path: Path, chunks: Iterable[bytes], *, temp_prefix: str = ".tmp-",
                     temp_suffix: str = "") -> None:
    import tempfile  # only when writing: not among the daemon's start-up imports

    fd, temp = tempfile.mkstemp(prefix=temp_prefix, suffix=temp_suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make a rename (or a new entry) in ``directory`` durable; best effort: some file
    systems refuse to fsync a directory."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
