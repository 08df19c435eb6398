"""The owner's consent per purpose: a file in the state directory, and its audit log.

Nothing is granted unless the owner granted it (``bavard consent grant``), and
data of a purpose without consent is not stored at all (the lead's router asks
:meth:`ConsentBook.granted` for every chunk). The consent lives apart from the
configuration, in ``consent.json`` (0600, replaced atomically)::

    {"version": 1, "grants": {"insurance": {"since": 1767225600.0,
                                            "until": 1782864000.0, "uid": 1000}}}

Every change is a line of ``consent-audit.jsonl`` beside it (appended and
fsynced: time, purpose, action ``grant``/``revoke``/``expire``, until, uid),
kept on the box: the owner's proof of what they agreed to, and when.

A file that cannot be trusted grants nothing, never everything: unreadable,
not JSON, of another shape, or naming a purpose that is not a purpose's name
(or, when the book is told the configuration's purposes, one it does not
know). That is logged once, with the file and the reason, and :attr:`problem`
says it; the next grant or revoke rewrites the file cleanly (its audit line
says the old file was discarded). A grant whose ``until`` has passed is not
granted; it is written down as ``expire`` at the next change or the next look
at the grants (not by the pipeline's thread).

Threads: the service's command thread changes the book, the pipeline's thread
reads it. :meth:`granted` takes no lock it would wait for: it reads the grants
(a dictionary replaced whole), and at most once a second looks whether the
file changed (its inode, size and mtime), re-reading it only then.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.atomic_file import write_atomically
from agent.errors import BavardError
from agent.privacy.purposes import NAME
from agent.units import local_time

log = logging.getLogger(__name__)

FILE_NAME = "consent.json"
AUDIT_NAME = "consent-audit.jsonl"
VERSION = 1
CHECK_EVERY = 1.0  # seconds between two looks at the file from granted()
MAX_FILE = 1 << 20  # bytes of a consent file read at most (a larger one grants nothing)
MAX_AUDIT_READ = 8 << 20  # bytes of the audit log read by history(): its latest ones
ACTIONS = ("grant", "revoke", "expire")


@dataclass(frozen=True)
class Grant:
    since: float  # wall clock of the grant
    until: float | None  # wall clock it ends; None: until revoked
    uid: int | None  # who granted it

    def as_dict(self) -> dict[str, Any]:
        return {"since": self.since, "until": self.until, "uid": self.uid}


class ConsentBook:
    """The consent file of ``state_dir``; ``purposes``: the names the configuration
    knows (None: any well-formed name), see the module's docstring."""

    def __init__(self, state_dir: Path, clock: Callable[[], float] = time.time,
                 purposes: Collection[str] | None = None) -> None:
        self.path = Path(state_dir) / FILE_NAME
        self.audit_path = Path(state_dir) / AUDIT_NAME
        self.clock = clock
        #: why the file grants nothing (None: it is absent, or fine)
        self.problem: str | None = None
        self._known = frozenset(purposes) if purposes is not None else None
        self._lock = threading.Lock()
        self._grants: dict[str, Grant] = {}
        self._signature: object = None
        self._checked = -math.inf
        with self._lock:
            self._reload(self.clock())

    # --- reading (any thread)

    def granted(self, purpose: str) -> bool:
        """Whether ``purpose`` may receive data now (a grant not past its ``until``)."""
        now = self.clock()
        # (a change being written holds the lock: looked at next time, never waited for)
        if (not self._checked <= now < self._checked + CHECK_EVERY
                and self._lock.acquire(blocking=False)):
            try:
                self._checked = now
                if self._stat() != self._signature:
                    self._reload(now)
            finally:
                self._lock.release()
        grant = self._grants.get(purpose)
        return grant is not None and (grant.until is None or now < grant.until)

    def grants(self) -> dict[str, dict[str, Any]]:
        """The grants in force now, by purpose: since, until, uid. Expired ones are
        written down as such first (best effort: a read-only file only logs it)."""
        with self._lock:
            now = self.clock()
            self._fresh(now)
            try:
                self._expire(now)
            except BavardError as exc:  # shown as not granted all the same
                log.warning("consent: cannot write down what expired: %s", exc)
            return {name: g.as_dict() for name, g in sorted(self._grants.items())
                    if g.until is None or now < g.until}

    def history(self, since: float | None = None) -> list[dict[str, Any]]:
        """The audit entries (oldest first), those from ``since`` on when given."""
        self.grants()  # records what expired meanwhile
        try:
            with open(self.audit_path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size > MAX_AUDIT_READ:
                    f.seek(size - MAX_AUDIT_READ)
                    f.readline()  # a partial line
                data = f.read(MAX_AUDIT_READ)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise BavardError(f"{self.audit_path}: cannot read the consent history: "
                              f"{exc.strerror or exc}") from None
        out, bad = [], 0
        for line in data.splitlines():
            try:
                entry = json.loads(line)
                if not (isinstance(entry, dict) and isinstance(entry.get("time"), int | float)
                        and entry.get("action") in ACTIONS):
                    raise ValueError("not an audit entry")
            except ValueError:
                bad += 1
                continue
            if since is None or entry["time"] >= since:
                out.append(entry)
        if bad:
            log.warning("%s: %d lines are not audit entries (skipped)", self.audit_path, bad)
        out.sort(key=lambda e: e["time"])
        return out

    # --- changing (one thread at a time)

    def grant(self, purpose: str, until: float | None, uid: int | None) -> dict[str, Any]:
        """Grant ``purpose`` from now until ``until`` (None: until revoked), asked by
        ``uid``; what changed. BavardError for an unknown purpose, an ``until`` not in
        the future, or a file or audit log that cannot be written (nothing changed)."""
        self._check_name(purpose)
        with self._lock:
            now = self.clock()
            if until is not None and not (math.isfinite(until) and until > now):
                raise BavardError(f"until: {local_time(until)} is not in the future")
            self._fresh(now)
            self._expire(now)
            previous = self._grants.get(purpose)
            grant = Grant(now, until, uid)
            self._change({**self._clean(), purpose: grant},
                         {"time": now, "purpose": purpose, "action": "grant", "until": until,
                          "uid": uid})
        log.info("consent: %s granted by uid %s until %s", purpose, uid,
                 local_time(until, "revoked"))
        return {"purpose": purpose, "granted": True, **grant.as_dict(),
                "previous": previous.as_dict() if previous is not None else None}

    def revoke(self, purpose: str, uid: int | None) -> dict[str, Any]:
        """Revoke ``purpose`` (audited even when it was not granted: the owner's act,
        which the purge follows); what changed. BavardError as for :meth:`grant`."""
        self._check_name(purpose)
        with self._lock:
            now = self.clock()
            self._fresh(now)
            self._expire(now)
            previous = self._grants.get(purpose)
            grants = {k: v for k, v in self._clean().items() if k != purpose}
            self._change(grants, {"time": now, "purpose": purpose, "action": "revoke",
                                  "until": None, "uid": uid})
        log.info("consent: %s revoked by uid %s", purpose, uid)
        return {"purpose": purpose, "granted": False,
                "previous": previous.as_dict() if previous is not None else None}

    def set_purposes(self, purposes: Collection[str] | None) -> None:
        """The configuration's purposes changed (a reload): the file is checked again."""
        with self._lock:
            self._known = frozenset(purposes) if purposes is not None else None
            self._reload(self.clock())

    # --- inside the lock

    def _check_name(self, purpose: str) -> None:
        if not isinstance(purpose, str) or not NAME.fullmatch(purpose):
            raise BavardError(f"{purpose!r} is not a purpose's name (1 to 32 lower-case "
                              "letters, digits, - or _, starting with a letter)")
        known = self._known
        if known is not None and purpose not in known:
            raise BavardError(f"unknown purpose {purpose!r}; known: {', '.join(sorted(known))}")

    def _fresh(self, now: float) -> None:
        self._checked = now
        if self._stat() != self._signature:
            self._reload(now)

    def _clean(self) -> dict[str, Grant]:
        """The grants to keep writing: none from a file that had a problem."""
        return {} if self.problem is not None else dict(self._grants)

    def _expire(self, now: float) -> None:
        ended = sorted((g.until, name) for name, g in self._grants.items()
                       if g.until is not None and g.until <= now)
        if not ended or self.problem is not None:
            return
        grants = {k: v for k, v in self._grants.items() if v.until is None or v.until > now}
        entries = [{"time": until, "purpose": name, "action": "expire", "until": until,
                    "uid": None} for until, name in ended]
        self._change(grants, *entries)
        for _, name in ended:
            log.info("consent: %s expired", name)

    def _change(self, grants: dict[str, Grant], *entries: dict[str, Any]) -> None:
        """Write ``grants`` and then their audit entries; when the audit cannot be
        written, the file is put back as it was (no change without its entry)."""
        if self.problem is not None:
            note = f"{self.path} was discarded: {self.problem}"
            entries = tuple({**e, "note": note} for e in entries)
        old = self._read_bytes()
        self._write(grants)
        try:
            _append(self.audit_path, entries)
        except OSError as exc:
            with contextlib.suppress(OSError):
                if old is None:
                    self.path.unlink()
                else:
                    write_atomically(self.path, [old])
            self._signature = None  # re-read at the next look
            raise BavardError(f"{self.audit_path}: cannot write the consent audit log "
                              f"({exc.strerror or exc}): nothing changed") from None
        if self.problem is not None:
            log.info("%s rewritten (the unusable one was discarded)", self.path)
        self._grants, self.problem = grants, None
        self._signature = self._stat()

    def _write(self, grants: dict[str, Grant]) -> None:
        doc = {"version": VERSION,
               "grants": {name: g.as_dict() for name, g in sorted(grants.items())}}
        try:
            write_atomically(self.path, [json.dumps(doc, indent=1).encode() + b"\n"],
                             temp_prefix=".consent-")
        except OSError as exc:
            raise BavardError(f"{self.path}: cannot write the consent file: "
                              f"{exc.strerror or exc}") from None

    def _read_bytes(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except OSError:
            return None

    def _stat(self) -> object:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            return ("error", exc.errno)
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _reload(self, now: float) -> None:
        self._checked = now
        self._signature = self._stat()
        grants, problem = self._parse()
        if problem is not None and problem != self.problem:
            log.error("%s: %s: NOTHING is granted until the next `bavard consent grant` or "
                      "`revoke` rewrites it", self.path, problem)
        self._grants, self.problem = grants, problem

    def _parse(self) -> tuple[dict[str, Grant], str | None]:
        try:
            with open(self.path, "rb") as f:
                data = f.read(MAX_FILE + 1)
        except FileNotFoundError:
            return {}, None
        except OSError as exc:
            return {}, f"cannot read it ({exc.strerror or exc})"
        if len(data) > MAX_FILE:
            return {}, f"larger than {MAX_FILE} bytes: not a consent file"
        try:
            doc = json.loads(data)
        except ValueError as exc:
            return {}, f"not JSON ({exc})"
        if not isinstance(doc, dict) or doc.get("version") != VERSION or not isinstance(
                doc.get("grants"), dict) or set(doc) != {"version", "grants"}:
            return {}, (f'not a consent file of version {VERSION} (expected {{"version": '
                        f'{VERSION}, "grants": {{...}}}})')
        grants = {}
        for name, entry in doc["grants"].items():
            if not NAME.fullmatch(name):
                return {}, f"grants: {name!r} is not a purpose's name"
            if self._known is not None and name not in self._known:
                return {}, (f"grants.{name}: not a purpose of the configuration (known: "
                            f"{', '.join(sorted(self._known))})")
            grant = _grant(entry)
            if grant is None:
                return {}, (f"grants.{name}: expected {{since: time, until: time or null, "
                            f"uid: integer or null}}, got {json.dumps(entry)[:120]}")
            grants[name] = grant
        return grants, None


def _grant(entry: Any) -> Grant | None:
    if not isinstance(entry, dict) or set(entry) != {"since", "until", "uid"}:
        return None
    since, until, uid = entry["since"], entry["until"], entry["uid"]
    if not _time(since) or not (until is None or _time(until)):
        return None
    if not (uid is None or (isinstance(uid, int) and not isinstance(uid, bool))):
        return None
    return Grant(float(since), None if until is None else float(until), uid)


def _time(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def _append(path: Path, entries: tuple[dict[str, Any], ...]) -> None:
    if not entries:
        return
    data = b"".join(json.dumps(e, sort_keys=True).encode() + b"\n" for e in entries)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)

