"""An on-disk cache of parsed DBC files, keyed by what the parse depends on.

Why: cantools parses a large DBC slowly. The largest file of the corpus
(``opendbc/ford_lincoln_base_pt.dbc``, 790 KiB, 331 messages, 2,150 signals)
takes 0.8-1.5 s to parse on the 2-core development machine, several times
that on a Raspberry Pi, at every start of the agent. Loading the same
Database back with :mod:`pickle` takes about 0.1 s. (cantools pickles its own
Databases for its optional ``diskcache`` cache, so this is a supported use.)

What is cached: the result of :func:`agent.decode.dbc_files.load_dbc` for the
file's bytes, i.e. the cantools Database *and* the warning given when the file
only loaded with ``strict=False`` (it is logged again on a hit, so a warm start
says the same as a cold one). Not cached: the generated decoders of
:mod:`agent.decode.compile`. Measured on the same file, generating them costs
about 0.3 s, 55-60 % of it in the ``compile()`` builtin itself, which caching the
generated source text would not save, and the source depends on the
configuration (selection, rules, volatile signals) as well as on the DBC.
Caching code objects (marshal) would save it, but ties the cache to
interpreter internals for a gain that lazy per-id compilation gets more simply.

Key: SHA-256 of the DBC file's bytes, the cantools version, the bavard version,
the Python implementation and version, the pickle protocol, this module's
format version and the loading policy (strict, then ``strict=False`` with a
warning; the size limits of :mod:`agent.decode.dbc_files`, so that a file a cold
load refuses is not loaded from an entry written under other limits). A change
to any of them is a different entry; stale entries age out, as only the
``max_entries`` most recently used entries are kept. The key does not depend
on the configuration (selection, rules, volatile patterns), and needs not:
what is cached is the Database alone, with its attributes (``BavardVolatile``
included); which signals are counters is worked out from it at every start.

Trust assumption, and why pickle is acceptable here: unpickling runs code
chosen by whoever wrote the file, so anyone who can write the cache directory
can run code as the agent. The cache directory is the service's own
(``CacheDirectory=bavard`` in the systemd unit: ``$CACHE_DIRECTORY``, owned by
the service user, not writable by anyone else), and whoever can write there
can already replace the agent's files. To keep that assumption checked, not
just hoped for, an entry is read only when the directory and the file are
owned by the effective user and not writable by group or others, and the file
is a regular file opened without following a symlink; otherwise the cache is
not used and the DBC is parsed (a warning for the directory, a debug message
for an entry). New directories are created 0700; entries are written 0600, to a
temporary file that is fsynced and then renamed over the entry, so a reader
sees a whole entry or none.

Integrity: each entry starts with a header (magic, the full key as JSON, the
SHA-256 of the pickled payload). An entry whose key differs, whose payload does
not match its checksum (a torn or bit-flipped file could otherwise unpickle
into a *different* valid Database), that fails to unpickle or that holds
something else than expected is ignored with a debug log and replaced. The
cache never raises: any error reading or writing it falls back to parsing.

Speed detail: unpickling (and parsing) a Database creates a few hundred
thousand objects; Python's cyclic garbage collector runs many times during
that and costs more than the unpickling itself (0.35-0.5 s with it, 0.1 s
without). :func:`gc_paused` suspends automatic collection for the duration.

Where: ``$CACHE_DIRECTORY`` (set by systemd's ``CacheDirectory=``; the first
entry when it lists several), else ``$XDG_CACHE_HOME/bavard``, else
``~/.cache/bavard``, or a directory given explicitly.

Use: ``load_dbc(path, cache=DbcCache())`` or, once at start-up in the entry
point, ``use_cache(DbcCache())`` so that every :func:`load_dbc` of the process
uses it (the pipeline and the simulator call ``load_dbc(path)``). Without
either, a process started with ``$CACHE_DIRECTORY`` set (the systemd unit's
``CacheDirectory=bavard``) uses that directory, like cantools' own
``CANTOOLS_CACHE_DIR``; otherwise nothing is cached, so library users, the
command line and tests get no hidden files.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import hashlib
import json
import logging
import os
import pickle
import stat
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.atomic_file import write_atomically

log = logging.getLogger(__name__)

FORMAT = 1  # bump when the entry layout or what is pickled changes
MAGIC = b"bavard-dbc-cache\n"
PROTOCOL = pickle.HIGHEST_PROTOCOL
DEFAULT_MAX_ENTRIES = 16
LOAD_POLICY = "strict, then strict=False with a warning"
_PREFIX, _SUFFIX = "dbc-", ".pickle"
_TEMP_PREFIX = ".tmp-"
_STALE_TEMP_SECONDS = 600.0  # a temporary file older than this was left by a crash

__all__ = [
    "DEFAULT_MAX_ENTRIES",
    "CachedDbc",
    "DbcCache",
    "active_cache",
    "default_directory",
    "gc_paused",
    "use_cache",
]


def default_directory(environ: Mapping[str, str] | None = None) -> Path:
    """``$CACHE_DIRECTORY`` (systemd), else ``$XDG_CACHE_HOME/bavard``, else ``~/.cache/bavard``."""
    env = os.environ if environ is None else environ
    systemd = env.get("CACHE_DIRECTORY", "")
    if systemd:  # several CacheDirectory= entries are joined with ':'
        return Path(systemd.split(":")[0])
    xdg = env.get("XDG_CACHE_HOME", "")
    if xdg and os.path.isabs(xdg):  # the XDG spec: ignore a relative value
        return Path(xdg) / "bavard"
    home = env.get("HOME") or os.path.expanduser("~")
    return Path(home) / ".cache" / "bavard"


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Suspend automatic garbage collection (if it was on) for the ``with`` block.

    It is process-wide: other threads allocate without collection meanwhile,
    which is harmless for the fraction of a second of a load.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@dataclass(frozen=True)
class CachedDbc:
    """What :func:`load_dbc` produced for one file's bytes."""

    database: Any  # cantools.database.can.Database
    warning: str | None  # why strict loading failed, when it did


class DbcCache:
    """A directory of parsed DBCs; see the module docstring for the decisions.

    ``directory`` defaults to :func:`default_directory`; it is created (0700)
    on the first write. ``max_entries`` bounds how many entries are kept (the
    most recently used ones).
    """

    def __init__(self, directory: str | Path | None = None,
                 max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        self.directory = Path(directory) if directory is not None else default_directory()
        self.max_entries = max_entries
        self._refused = False  # the directory failed the trust check (warned once)
        self.hits = 0
        self.misses = 0

    def __repr__(self) -> str:
        return f"DbcCache({str(self.directory)!r}, max_entries={self.max_entries})"

    # -- keys ---------------------------------------------------------------

    @staticmethod
    def key(data: bytes) -> dict[str, str]:
        """Everything the cached result depends on, for a DBC file's ``data``."""
        import cantools

        from agent import __version__
        from agent.decode.dbc_files import MAX_DBC_BYTES, MAX_STRING_CHARS

        return {
            "format": str(FORMAT),
            "sha256": hashlib.sha256(data).hexdigest(),
            "cantools": str(cantools.__version__),
            "bavard": __version__,
            "python": f"{sys.implementation.name} {sys.version}",
            "pickle": str(PROTOCOL),
            "policy": f"{LOAD_POLICY}; files up to {MAX_DBC_BYTES} bytes, strings up to "
                      f"{MAX_STRING_CHARS} characters",
        }

    def path_for(self, key: Mapping[str, str]) -> Path:
        """The entry file of ``key``."""
        digest = hashlib.sha256(_key_bytes(key)).hexdigest()[:40]
        return self.directory / f"{_PREFIX}{digest}{_SUFFIX}"

    # -- reading ------------------------------------------------------------

    def get(self, key: Mapping[str, str]) -> CachedDbc | None:
        """The entry of ``key``, or None (missing, untrusted, corrupt, mismatched)."""
        if not self._directory_trusted(create=False):
            self.misses += 1
            return None
        path = self.path_for(key)
        try:
            raw = _read_trusted(path)
        except FileNotFoundError:
            self.misses += 1
            return None
        except (OSError, _Untrusted) as exc:
            log.debug("DBC cache: ignoring %s: %s", path, exc)
            self.misses += 1
            return None
        try:
            entry = _decode_entry(raw, key)
        except Exception as exc:  # anything unpickling may raise: never fatal
            log.debug("DBC cache: ignoring %s: %s: %s", path, type(exc).__name__, exc)
            with contextlib.suppress(OSError):
                path.unlink()
            self.misses += 1
            return None
        with contextlib.suppress(OSError):  # most recently used: kept longest
            os.utime(path)
        self.hits += 1
        return entry

    # -- writing ------------------------------------------------------------

    def put(self, key: Mapping[str, str], entry: CachedDbc) -> bool:
        """Store ``entry`` under ``key`` atomically; False (and a debug log) on failure."""
        if not self._directory_trusted(create=True):
            return False
        try:
            payload = pickle.dumps((entry.database, entry.warning), protocol=PROTOCOL)
        except Exception as exc:  # a Database that does not pickle: parse every time
            log.debug("DBC cache: cannot pickle the database: %s: %s", type(exc).__name__, exc)
            return False
        header = b"".join([
            MAGIC, _key_bytes(key), b"\n",
            hashlib.sha256(payload).hexdigest().encode("ascii"), b"\n",
        ])
        path = self.path_for(key)
        try:
            _write_atomic(path, header, payload)
        except OSError as exc:
            log.debug("DBC cache: cannot write %s: %s", path, exc)
            return False
        self.prune()
        return True

    def prune(self) -> None:
        """Keep the ``max_entries`` most recently used entries; remove crash leftovers."""
        try:
            names = os.listdir(self.directory)
        except OSError:
            return
        entries: list[tuple[float, str]] = []
        now = time.time()
        for name in names:
            path = self.directory / name
            try:
                st = path.lstat()
            except OSError:
                continue
            if name.startswith(_TEMP_PREFIX):
                if now - st.st_mtime > _STALE_TEMP_SECONDS:
                    with contextlib.suppress(OSError):
                        path.unlink()
            elif name.startswith(_PREFIX) and name.endswith(_SUFFIX):
                entries.append((st.st_mtime, name))
        entries.sort(reverse=True)
        for _mtime, name in entries[self.max_entries:]:
            with contextlib.suppress(OSError):
                (self.directory / name).unlink()
                log.debug("DBC cache: removed %s (over %d entries)", name, self.max_entries)

    # -- the directory ------------------------------------------------------

    def _directory_trusted(self, create: bool) -> bool:
        if self._refused:
            return False
        if create:
            try:
                self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as exc:
                log.debug("DBC cache: cannot create %s: %s", self.directory, exc)
                return False
        try:
            st = os.stat(self.directory)
        except FileNotFoundError:
            return False
        except OSError as exc:
            log.debug("DBC cache: cannot use %s: %s", self.directory, exc)
            return False
        problem = _trust_problem(st, "directory")
        if problem is None and not stat.S_ISDIR(st.st_mode):
            problem = "not a directory"
        if problem is not None:
            log.warning("DBC cache %s not used: %s", self.directory, problem)
            self._refused = True
            return False
        return True


# the cache that load_dbc() uses when it is given none: set by the entry point, or
# made from $CACHE_DIRECTORY on first use
_UNSET = object()
_active: object = _UNSET


def use_cache(cache: DbcCache | None) -> None:
    """Make ``cache`` the one that every :func:`load_dbc` without ``cache=`` uses;
    None turns caching off (even with ``$CACHE_DIRECTORY`` set). Call once from the
    entry point."""
    global _active
    _active = cache


def active_cache(environ: Mapping[str, str] | None = None) -> DbcCache | None:
    """The cache set by :func:`use_cache`; if none was set, one in ``$CACHE_DIRECTORY``
    when that is set (systemd sets it for a unit with ``CacheDirectory=``, so the
    service caches with no code of its own), else None."""
    global _active
    if _active is _UNSET:
        env = os.environ if environ is None else environ
        if not env.get("CACHE_DIRECTORY"):
            return None  # not remembered: the environment may still change
        _active = DbcCache(default_directory(env))
    return _active if isinstance(_active, DbcCache) else None


def _reset() -> None:
    """Back to the initial state (for tests)."""
    global _active
    _active = _UNSET


class _Untrusted(Exception):
    """An entry that may have been written by someone else than the agent."""


def _key_bytes(key: Mapping[str, str]) -> bytes:
    return json.dumps(dict(key), sort_keys=True, separators=(",", ":")).encode("utf-8")


def _trust_problem(st: os.stat_result, what: str) -> str | None:
    if st.st_uid != os.geteuid():
        return f"{what} owned by uid {st.st_uid}, not by this process (uid {os.geteuid()})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{what} is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def _read_trusted(path: Path) -> bytes:
    """The bytes of ``path``: a regular file of ours, not a symlink, not group/other-writable."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # O_NOFOLLOW on a symlink
            raise _Untrusted("a symbolic link") from None
        raise
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise _Untrusted("not a regular file")
        problem = _trust_problem(st, "file")
        if problem is not None:
            raise _Untrusted(problem)
        return f.read()


def _decode_entry(raw: bytes, key: Mapping[str, str]) -> CachedDbc:
    """Check the header of an entry file and unpickle its payload."""
    if not raw.startswith(MAGIC):
        raise ValueError("not a bavard DBC cache entry")
    rest = raw[len(MAGIC):]
    key_line, _, rest = rest.partition(b"\n")
    digest, _, payload = rest.partition(b"\n")
    if key_line != _key_bytes(key):
        raise ValueError("written for another key")
    if hashlib.sha256(payload).hexdigest().encode("ascii") != digest:
        raise ValueError("payload checksum mismatch (truncated or damaged)")
    import cantools

    with gc_paused():
        database, warning = pickle.loads(payload)  # trusted: see the module docstring
    if not isinstance(database, cantools.database.can.Database):
        raise ValueError(f"holds a {type(database).__name__}, not a cantools Database")
    if warning is not None and not isinstance(warning, str):
        raise ValueError("bad warning field")
    return CachedDbc(database, warning)


def _write_atomic(path: Path, header: bytes, payload: bytes) -> None:
    write_atomically(path, (header, payload), temp_prefix=_TEMP_PREFIX, temp_suffix=_SUFFIX)
