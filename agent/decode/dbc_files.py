"""Loading DBC files with cantools, strictly when possible, through the DBC cache.

The file is read once, as bytes: the same bytes are hashed for the cache key
(:mod:`agent.decode.dbc_cache`) and parsed, so a file replaced between the two
cannot be cached under the wrong key. They are decoded exactly as cantools'
``load_file`` does for a DBC (cp1252, ``errors="replace"``, universal newlines),
so the result is the same as ``load_file``'s.

Bounds, checked before cantools sees the file (measured with cantools 45.1 on
the 2-core development machine):

- :data:`MAX_DBC_BYTES` (4 MiB): the largest real DBC of the corpus (opendbc's
  Ford powertrain, 789 KiB) peaks at 54 MiB of RSS; a DBC of ordinary messages
  needs about 90 MiB of memory and 3.5 s per MiB (4 MiB: 358 MiB, 15 s), so a
  bigger one is refused with its size, not parsed (a 50 MiB file used to fail
  after a long while with an empty reason);
- :data:`MAX_STRING_CHARS` (64 Ki characters) for one quoted string (a
  comment, a value description): cantools' tokenizer needs about 210 bytes of
  memory per character of *one* string (a 1 MiB comment: 248 MiB; 5 MiB:
  1.1 GiB), however the string is cut into lines, so a cap on line length
  would not do. The longest string of the corpus is 3.4 K characters;
- only regular files are read (a FIFO or a device is refused without opening
  it for reading), and never more than the cap.
"""

from __future__ import annotations

import io
import logging
import os
import re
import stat
from pathlib import Path
from typing import Any

from agent.decode.dbc_cache import CachedDbc, DbcCache, active_cache, gc_paused
from agent.errors import DbcError

log = logging.getLogger(__name__)

_LINE = re.compile(r"line (\d+)")
_ENCODING = "cp1252"  # cantools' default for DBC files
MAX_DBC_BYTES = 4 * 1024 * 1024
MAX_STRING_CHARS = 64 * 1024


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
    data = read_dbc_bytes(path)
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


def read_dbc_bytes(path: Path) -> bytes:
    """The bytes of a DBC file: a regular file of at most MAX_DBC_BYTES (DbcError else)."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise DbcError(f"{path}: cannot read: not a regular file")
        _check_size(path, st.st_size)
        # O_NONBLOCK: a file swapped for a FIFO since the stat cannot hang the open
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise DbcError(f"{path}: cannot read: not a regular file")
            data = f.read(MAX_DBC_BYTES + 1)
    except OSError as exc:
        raise DbcError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except ValueError:  # a NUL in the path
        raise DbcError(f"{path!r}: cannot read: the path holds a NUL character") from None
    _check_size(path, len(data))
    return data


def _check_size(path: Path, size: int) -> None:
    if size > MAX_DBC_BYTES:
        raise DbcError(f"{path}: not loaded: {size:_} bytes, over the limit of "
                       f"{MAX_DBC_BYTES:_} bytes for a DBC file (the largest real DBC known "
                       f"is about 800 KiB; parsing needs about 90 MiB of memory per MiB)")


def longest_string(text: str) -> tuple[int, int]:
    """``(characters, offset)`` of the longest quoted string of DBC ``text``, as cantools'
    tokenizer cuts them (``\\"`` does not end a string); an unterminated one runs to
    the end."""
    best = (0, 0)
    end_of_text = len(text)
    start = text.find('"')
    while start >= 0:
        end = text.find('"', start + 1)
        while end > 0 and text[end - 1] == "\\":
            end = text.find('"', end + 1)
        if end < 0:
            end = end_of_text
        if end - start - 1 > best[0]:
            best = (end - start - 1, start)
        start = text.find('"', end + 1) if end < end_of_text else -1
    return best


def _parse(path: Path, data: bytes) -> CachedDbc:
    import cantools

    # as load_file opens it: text mode, so "\r\n" and "\r" become "\n"
    text = io.TextIOWrapper(io.BytesIO(data), encoding=_ENCODING, errors="replace").read()
    if not text.strip():
        raise DbcError(f"{path}: not a loadable DBC: the file is empty")
    length, offset = longest_string(text)
    if length > MAX_STRING_CHARS:
        line = text.count("\n", 0, offset) + 1
        raise DbcError(f"{path}:{line}: not loaded: a quoted string (a comment?) of "
                       f"{length:_} characters, over the limit of {MAX_STRING_CHARS:_} "
                       f"(cantools needs about 210 bytes of memory per character of one "
                       f"string)")
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
    text = _printable(_message(exc)) or type(exc).__name__
    match = _LINE.search(text)
    where = f"{path}:{match.group(1)}" if match else str(path)
    return f"{where}: not a loadable DBC: {text}"


def _printable(text: str, limit: int = 300) -> str:
    """``text`` with control characters escaped, at most ``limit`` characters (cantools
    quotes the bytes around a syntax error: from a binary file, anything)."""
    out = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[:limit])
    return out + ("..." if len(text) > limit else "")
