"""The service's commands on the control socket (docs/control.md, "Service commands").

=============================  ======================  =====================================
command                        args                    result
=============================  ======================  =====================================
``status``                     {}                      the status document (agent.service.status)
``signals``                    {channel?, signals?}    {"signals": [...], "count"}
``upload.now``                 {}                      what it ended (linger, backoff, link wait)
``upload.pause``               {reason?}               {"paused", "already", "since", ...}
``upload.resume``              {}                      {"paused": false, "was_paused", ...}
``buffer.purge``               {class}                 {"class", "items", "bytes", ...}
``buffer.retry-dead-letters``  {}                      {"batches", "items", "bytes"}
=============================  ======================  =====================================

plus the ``obd.*`` commands of agent.control.obd_commands and the owner's
``consent.*`` and ``privacy.*`` of agent.control.privacy_commands. Each handler looks
the daemon's parts up at each call (a reload replaces the pipeline and the
uploader) and runs in the server's command thread (agent.control.dispatch: one
command at a time, streams go on meanwhile): the longest wait is the store's,
bounded by :data:`STORE_WAIT` (a purge of a large buffer takes a few seconds on
an SD card). Bad arguments are ``bad-args``; a command that cannot
be done now (uploads off or paused, a store that does not answer) is ``failed``
with the reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agent.control import protocol
from agent.errors import ControlError
from agent.globs import GlobSet
from agent.service.status import build_status, upload_state
from agent.store.settings import Kind

if TYPE_CHECKING:
    from agent.service.daemon import Daemon

Command = Callable[[dict[str, Any]], dict[str, Any]]

STORE_WAIT = 20.0  # seconds a purge or a retry may take (the client waits 30)
CLASSES = {kind.label: kind for kind in Kind}
MAX_REASON = 500


def service_commands(daemon: Daemon) -> dict[str, Command]:
    """Every command the service answers, ``obd.*`` included."""
    from agent.control.obd_commands import obd_commands
    from agent.control.privacy_commands import privacy_commands

    def status(args: dict[str, Any]) -> dict[str, Any]:
        _only(args, "status")
        return build_status(daemon)

    commands: dict[str, Command] = {
        "status": status,
        "signals": lambda args: signals(daemon, args),
        "upload.now": lambda args: upload_now(daemon, args),
        "upload.pause": lambda args: upload_pause(daemon, args),
        "upload.resume": lambda args: upload_resume(daemon, args),
        "buffer.purge": lambda args: buffer_purge(daemon, args),
        "buffer.retry-dead-letters": lambda args: retry_dead_letters(daemon, args),
    }
    commands.update(obd_commands(daemon))
    commands.update(privacy_commands(daemon))
    return commands


# -- signals ---------------------------------------------------------------------------------

def signals(daemon: Daemon, args: dict[str, Any]) -> dict[str, Any]:
    """Every signal the running configuration can decode, per channel, with what the
    DBC (or SAE J1979 for OBD) says of it and whether the selection keeps it."""
    from agent.batch.model import SignalMeta
    from agent.decode.obd import obd_metadata
    from agent.policy.selection import Selector

    _only(args, "signals", "channel", "signals")
    channel = _string(args, "channel")
    glob = _string(args, "signals")
    pipeline, config = daemon.pipeline, daemon.config
    if pipeline is None or config is None:
        raise ControlError("the service is not running a configuration yet", protocol.FAILED)
    names = [ch.config.name for ch in pipeline.channels]
    if channel is not None and channel not in names:
        raise ControlError(f"channel: no channel {channel!r} (channels: {', '.join(names)})",
                           protocol.BAD_ARGS)
    wanted = GlobSet((glob,)) if glob else None
    out: list[dict[str, Any]] = []
    for ch in pipeline.channels:
        name = ch.config.name
        if channel is not None and name != channel:
            continue
        selector = Selector.from_config(config.selection, ch.databases)
        if ch.config.obd is not None or ch.config.gps is not None:
            from agent.decode.gps import gps_metadata

            metas = (obd_metadata(name) if ch.config.obd is not None else gps_metadata(name))
            for (_, message, signal), meta in metas.items():
                if wanted is None or wanted.matches(message, signal):
                    out.append(_signal(name, message, signal, meta, selector(message, signal)))
            continue
        seen: set[int] = set()  # the decoder's rule: the first DBC defining an id wins
        for db in ch.databases:
            for message in db.messages:
                key = message.frame_id | (1 << 31 if message.is_extended_frame else 0)
                if key in seen:
                    continue
                seen.add(key)
                for sig in message.signals:
                    if wanted is not None and not wanted.matches(message.name, sig.name):
                        continue
                    item = _signal(name, message.name, sig.name, SignalMeta.from_cantools(sig),
                                   selector(message.name, sig.name))
                    item.update({"id": message.frame_id,
                                 "extended": bool(message.is_extended_frame),
                                 "cycle_time_ms": message.cycle_time})
                    out.append(item)
    return {"signals": out, "count": len(out)}


def _signal(channel: str, message: str, signal: str, meta: Any, selected: bool
            ) -> dict[str, Any]:
    return {"channel": channel, "message": message, "signal": signal, "unit": meta.unit,
            "scale": meta.scale, "offset": meta.offset,
            "minimum": meta.minimum, "maximum": meta.maximum,
            "choices": ({str(raw): label for raw, label in meta.choices.items()}
                        if meta.choices else None),
            "selected": selected}


# -- uploads ---------------------------------------------------------------------------------

def upload_now(daemon: Daemon, args: dict[str, Any]) -> dict[str, Any]:
    """Wake the uploader: end a linger, a backoff pause, a wait for a link."""
    _only(args, "upload.now")
    state = upload_state(daemon)
    if state == "off":
        raise ControlError("uploads are off: the configuration has no [upload] table",
                           protocol.FAILED)
    paused = daemon.pause.paused if daemon.pause is not None else None
    if paused is not None:
        raise ControlError(f"uploads are paused ({_pause_words(paused)}): `bavard resume` "
                           "first", protocol.FAILED)
    uploader = daemon.uploader
    if uploader is None:
        why = ("they wait for an OBD channel to read the VIN, which gives the batches "
               "their pseudonym" if state == "waiting-vin" else "the uploader is not running")
        raise ControlError(f"uploads have not started: {why}", protocol.FAILED)
    done = uploader.upload_now()
    ended = [what for key, what in (("linger_ended", "the wait for a fuller batch"),
                                    ("backoff_ended", "the pause after failed attempts"),
                                    ("link_wait_ended", "the wait for a link"))
             if done[key]]
    message = ("the uploader looks at the buffer now" +
               (f"; ended {', '.join(ended)}" if ended else ""))
    link = uploader.last_link
    if link is not None and link.metered:
        message += (f"; the link {link.name} is metered: it carries "
                    f"{uploader.config.metered_classes} and above, within the budget")
    return {**done, "message": message}


def upload_pause(daemon: Daemon, args: dict[str, Any]) -> dict[str, Any]:
    """Pause uploads, across restarts, until upload.resume."""
    _only(args, "upload.pause", "reason")
    reason = _string(args, "reason") or ""
    if len(reason) > MAX_REASON:
        raise ControlError(f"reason: at most {MAX_REASON} characters, got {len(reason)}",
                           protocol.BAD_ARGS)
    switch = _switch(daemon)
    paused, new = switch.pause(reason)
    uploader = daemon.uploader
    if new:
        if uploader is not None:
            uploader.wake()  # an idle uploader says "paused" at once
        daemon.event("upload.paused", f"by hand{': ' + reason if reason else ''}")
    return {"paused": True, "already": not new, "since": paused.since,
            "reason": paused.reason, "uploads": upload_state(daemon),
            "message": ("uploads were already paused" if not new else
                        "uploads paused: no new batch is taken (one being sent finishes its "
                        "attempt); the buffer keeps filling; kept across restarts")}


def upload_resume(daemon: Daemon, args: dict[str, Any]) -> dict[str, Any]:
    _only(args, "upload.resume")
    ended = _switch(daemon).resume()
    uploader = daemon.uploader
    if ended is not None:
        if uploader is not None:
            uploader.upload_now()
        daemon.event("upload.resumed", "by hand")
    return {"paused": False, "was_paused": ended is not None,
            "paused_for_s": (round(max(0.0, daemon.clock() - ended.since), 3)
                             if ended is not None and ended.since is not None else None),
            "uploads": upload_state(daemon),
            "message": "uploads resumed" if ended is not None else "uploads were not paused"}


def _switch(daemon: Daemon) -> Any:
    if daemon.pause is None:
        raise ControlError("the service is not running a configuration yet", protocol.FAILED)
    return daemon.pause


def _pause_words(paused: Any) -> str:
    since = ("" if paused.since is None else
             "since " + time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(paused.since)))
    return "; ".join(p for p in (since, paused.reason) if p) or "by hand"


# -- the buffer -------------------------------------------------------------------------------

def buffer_purge(daemon: Daemon, args: dict[str, Any]) -> dict[str, Any]:
    """Delete a class of what the buffer holds, except a batch in flight."""
    _only(args, "buffer.purge", "class")
    name = args.get("class")
    if name not in CLASSES:
        raise ControlError(f"class: one of {', '.join(CLASSES)} is required, got {name!r}",
                           protocol.BAD_ARGS)
    store = _store(daemon)
    purged = store.purge(CLASSES[name], timeout=STORE_WAIT)
    daemon.event("buffer.purged", f"{purged.items} {name} ({purged.bytes} bytes) purged by "
                                  "hand", 2)
    return purged.to_dict()


def retry_dead_letters(daemon: Daemon, args: dict[str, Any]) -> dict[str, Any]:
    """Move the dead letters back for upload, and wake the uploader."""
    _only(args, "buffer.retry-dead-letters")
    retried = _store(daemon).retry_dead_letters(timeout=STORE_WAIT)
    if retried.batches:
        daemon.event("buffer.dead-letters-retried",
                     f"{retried.batches} batches ({retried.items} items) back for upload")
        if daemon.uploader is not None:
            daemon.uploader.wake()
    return {**retried.to_dict(), "uploads": upload_state(daemon)}


def _store(daemon: Daemon) -> Any:
    if daemon.store is None:
        raise ControlError("the service has no buffer open", protocol.FAILED)
    return daemon.store


# -- arguments --------------------------------------------------------------------------------

def _only(args: dict[str, Any], command: str, *allowed: str) -> None:
    extra = sorted(set(args) - set(allowed))
    if extra:
        takes = f"it takes {', '.join(allowed)}" if allowed else "it takes none"
        raise ControlError(f"{command}: unknown argument {', '.join(map(repr, extra))} "
                           f"({takes})", protocol.BAD_ARGS)


def _string(args: dict[str, Any], name: str) -> str | None:
    value = args.get(name)
    if value is not None and not isinstance(value, str):
        raise ControlError(f"{name}: a string, got {type(value).__name__}", protocol.BAD_ARGS)
    return value
