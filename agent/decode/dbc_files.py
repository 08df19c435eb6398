"""Loading DBC files with cantools, strictly when possible, through the DBC cache.

The file is read once, as bytes: the same bytes are hashed for the cache key
(:mod:`agent.decode.dbc_cache`) and parsed, so a file replaced between the two
cannot be cached under the wrong key. They are decoded exactly as cantools'
``load_file`` does for a DBC (cp1252, ``errors="replace"``, universal newlines),
so the result is the same as ``load_file``'s.
"""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path
from typing import Any

from agent.decode.dbc_cache import CachedDbc, DbcCache, active_cache, gc_paused
from agent.errors import DbcError

log = logging.getLogger(__name__)

_LINE = re.compile(r"line (\d+)")
_ENCODING = "cp1252"  # cantools' default for DBC files


def load_dbc(path: str | Path, cache: DbcCache | None = None) -> Any:
    """Load one DBC into a cantools Database.

    A file that cantools rejects in strict mode (overlapping signals, a signal
    that does not fit its message) is loaded again with ``strict=False`` and a
    warning. One that cannot be loaded at all raises DbcError naming
    ``file:line`` when cantools says which line.

    ``cache``: where parsed files are kept between runs; default the one set
    with :func:`agent.decode.dbc_cache.use_cache`, if any. A cached file gives
    the same Database and the same warning as a parsed one.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DbcError(f"{path}: cannot read: {exc.strerror or exc}") from None
    cache = cache if cache is not None else active_cache()
    key = cache.key(data) if cache is not None else None
    if cache is not None and key is not None:
        hit = cache.get(key)
        if hit is not None:
            log.debug("%s: loaded from the DBC cache", path)
            if hit.warning is not None:
                log.warning("%s: loaded with strict=False: %s", path, hit.warning)
            return hit.database
    entry = _parse(path, data)
    if cache is not None and key is not None:
        cache.put(key, entry)
    return entry.database


def _parse(path: Path, data: bytes) -> CachedDbc:
    import cantools

    # as load_file opens it: text mode, so "\r\n" and "\r" become "\n"
    text = io.TextIOWrapper(io.BytesIO(data), encoding=_ENCODING, errors="replace").read()
    with gc_paused():  # hundreds of thousands of objects: collecting meanwhile costs ~10%
        try:
            db = cantools.database.load_string(text, database_format="dbc", strict=True)
            return CachedDbc(db, None)
        except Exception as strict_exc:  # cantools raises several unrelated types
            warning = _message(strict_exc)
            try:
                db = cantools.database.load_string(text, database_format="dbc", strict=False)
            except Exception as exc:
                raise DbcError(_describe(path, exc)) from None
    log.warning("%s: loaded with strict=False: %s", path, warning)
    return CachedDbc(db, warning)


def _message(exc: Exception) -> str:
    text = str(exc)
    if text.startswith('DBC: "') and text.endswith('"'):
        text = text[6:-1]
    return text


def _describe(path: Path, exc: Exception) -> str:
    text = _message(exc)
    match = _LINE.search(text)
    where = f"{path}:{match.group(1)}" if match else str(path)
    return f"{where}: not a loadable DBC: {text}"
