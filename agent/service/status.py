"""What ``bavard status`` shows: the running service's figures, gathered in one document.

:func:`build_status` reads the daemon's parts where they keep their counters
(sources, decoders, pipeline, store, uploader, budget, watchdog, control
server) and never changes them; the schema is in docs/control.md ("status").
It runs in the control server's command thread (agent.control.dispatch): the
one call that waits is the store's statistics, bounded by :data:`STORE_WAIT`.

:class:`RateMeter` turns the frame counters into frames per second, for the
whole pipeline and per channel, and keeps the pipeline's recent rates for a
sparkline; the daemon's main thread updates it at each of its looks.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent import __version__
from agent.errors import StoreError
from agent.sources.can_bus import CanBusSource
from agent.sources.obd import ObdSource

if TYPE_CHECKING:
    from agent.pipeline import ChannelRuntime, Pipeline
    from agent.service.daemon import Daemon
    from agent.upload.uploader import Uploader

STORE_WAIT = 5.0  # seconds the status waits for the store's statistics
HISTORY = 90  # rates kept for the sparkline (one per look of the daemon: 2 s, so 3 min)


class RateMeter:
    """frames/s from the counters, updated at most once a second."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic,
                 history: int = HISTORY) -> None:
        self.monotonic = monotonic
        self.total = 0.0  # the pipeline's frames/s over the last interval
        self.channels: dict[str, float] = {}  # channel -> frames/s
        self.history: deque[tuple[float, float]] = deque(maxlen=history)  # (when, frames/s)
        self._pipeline: Pipeline | None = None
        self._at = monotonic()
        self._counts: tuple[int, dict[str, int]] = (0, {})

    def update(self, pipeline: Pipeline) -> None:
        now = self.monotonic()
        counts = (pipeline.frames_in,
                  {ch.config.name: ch.source.stats.frames for ch in pipeline.channels})
        if pipeline is not self._pipeline:  # a reload: the new one counts from zero
            self._pipeline, self._at, self._counts = pipeline, now, counts
            return
        elapsed = now - self._at
        if elapsed < 1.0:
            return
        before, per = self._counts
        self.total = max(0, counts[0] - before) / elapsed
        self.channels = {name: max(0, n - per.get(name, 0)) / elapsed
                         for name, n in counts[1].items()}
        self.history.append((now, self.total))
        self._at, self._counts = now, counts

    def to_dict(self) -> dict[str, Any]:
        """``frames_per_s``: the recent rates, oldest first; ``interval_s``: the mean time
        between two of them (None with fewer than two)."""
        points = list(self.history)
        interval = ((points[-1][0] - points[0][0]) / (len(points) - 1)
                    if len(points) > 1 else None)
        return {"frames_per_s": [round(r, 1) for _, r in points], "interval_s": interval}


def file_sha256(path: Path) -> str | None:
    """The hex SHA-256 of a file's bytes; None when it cannot be read."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 16), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def build_status(daemon: Daemon) -> dict[str, Any]:
    """The status document (docs/control.md)."""
    pipeline = daemon.pipeline
    now = daemon.clock()
    on_disk = file_sha256(daemon.config_path)
    status: dict[str, Any] = {
        "version": __version__,
        "pid": os.getpid(),
        "uptime_s": round(daemon.monotonic() - daemon.started, 3),
        "config": {"path": str(daemon.config_path), "sha256": daemon.config_sha256,
                   "changed_on_disk": on_disk != daemon.config_sha256},
        "channels": ([_channel(ch, daemon.rates.channels.get(ch.config.name, 0.0))
                      for ch in pipeline.channels] if pipeline is not None else []),
        "pipeline": _pipeline(pipeline, daemon.rates.total),
        "history": daemon.rates.to_dict(),
        "buffer": None,
        "upload": _upload(daemon, now),
        "watchdog": _watchdog(daemon),
        "control": _control(daemon),
    }
    store = daemon.store
    if store is not None:
        try:
            status["buffer"] = store.stats(timeout=STORE_WAIT).to_dict()
        except StoreError as exc:
            status["buffer_error"] = str(exc)
    return status


def channel_state(ch: ChannelRuntime) -> str:
    """``error`` (its reader stopped on a failure), ``ended`` (a log read to its end),
    ``down`` (a bus or an adapter not answering now), else ``up``."""
    if ch.error is not None:
        return "error"
    if ch.ended:
        return "ended"
    return "down" if ch.source.stats.in_gap else "up"


def _channel(ch: ChannelRuntime, rate: float) -> dict[str, Any]:
    source, cfg = ch.source, ch.config
    stats = source.stats
    decoder = ch.decoder.stats
    unknown_frames = sum(decoder.unknown.values())
    decoding = cfg.mode != "raw"
    # the share of the frames whose id a DBC (or the OBD decoder) knows: of what was decoded
    known = (round((stats.frames - unknown_frames) / stats.frames, 4)
             if decoding and stats.frames else None)
    where = (source.where if isinstance(source, (CanBusSource, ObdSource))
             else str(cfg.log) if cfg.log is not None
             else f"seed {cfg.seed}, x{cfg.speed:g}")
    out: dict[str, Any] = {
        "name": cfg.name, "kind": cfg.kind, "mode": cfg.mode, "where": where,
        "state": channel_state(ch),
        "frames": stats.frames, "frames_per_s": round(rate, 1),
        "decoded": decoder.decoded, "unchanged": decoder.unchanged,
        "unknown_ids": len(decoder.unknown) if decoding else None,
        "unknown_frames": unknown_frames if decoding else None,
        "known_share": known,
        "truncated": sum(decoder.truncated.values()),
        "bad_mux": sum(decoder.bad_mux.values()),
        "out_of_range": sum(decoder.out_of_range.values()),
        "skipped": dict(stats.skipped),
        "gaps": stats.gaps, "gap_seconds": round(stats.gap_seconds, 3),
        "dropped": ch.dropped, "error": ch.error, "obd": None,
    }
    if isinstance(source, CanBusSource):
        out["reopens"] = source.stats.reopens
        # "bcm": frames counts only what the kernel handed over (a selected bit changed)
        out["reader"] = source.reader_kind
        out["messages_missing"] = source.stats.messages_missing
        out["messages_back"] = source.stats.messages_back
    if isinstance(source, ObdSource):
        obd = source.obd
        out["obd"] = {"connects": obd.connects, "adapter_errors": obd.adapter_errors,
                      "vehicle_errors": obd.vehicle_errors, "dtc_reads": obd.dtc_reads,
                      "voltage": obd.voltage, "unsupported": list(obd.unsupported),
                      "pids_per_s": round(sum(source.rates().values()), 2)}
    return out


def _pipeline(pipeline: Pipeline | None, rate: float) -> dict[str, Any]:
    if pipeline is None:
        return {"frames_in": 0, "frames_per_s": 0.0, "samples_decoded": 0,
                "samples_kept": 0, "events_in": 0}
    rules = pipeline.rules.stats
    return {"frames_in": pipeline.frames_in, "frames_per_s": round(rate, 1),
            "samples_decoded": pipeline.samples_decoded,
            "samples_kept": pipeline.samples_kept,
            "events_in": pipeline.events_in,
            "rules": {"kept": rules.kept, "unchanged": rules.unchanged,
                      "rate_limited": rules.rate_limited},
            "raw_dropped": pipeline.raw_dropped, "events_dropped": pipeline.events_dropped}


def upload_state(daemon: Daemon) -> str:
    """``off`` (no [upload]), ``waiting-vin``, or the uploader's own state."""
    config = daemon.config
    if config is None or config.upload is None:
        return "off"
    uploader = daemon.uploader
    if uploader is None:
        return "waiting-vin" if daemon.upload_waiting else "stopped"
    return uploader.stats.state


def _upload(daemon: Daemon, now: float) -> dict[str, Any] | None:
    config = daemon.config
    if config is None or config.upload is None:
        return None
    uploader: Uploader | None = daemon.uploader
    paused = daemon.pause.paused if daemon.pause is not None else None
    out: dict[str, Any] = {
        "state": upload_state(daemon), "paused": paused is not None,
        "paused_since": paused.since if paused is not None else None,
        "paused_reason": paused.reason if paused is not None else None,
        "endpoint": None, "batches": 0, "items": 0, "bytes": 0, "attempts": 0,
        "transient": 0, "refused": 0, "refused_items": 0, "last_upload_age_s": None,
        "last_error": "", "link": None, "budget": None,
    }
    if uploader is None:
        return out
    st = uploader.stats
    link = uploader.last_link
    out.update({
        "endpoint": uploader.endpoint, "batches": st.batches, "items": st.items,
        "bytes": st.bytes, "attempts": st.attempts, "transient": st.transient,
        "refused": st.refused, "refused_items": st.refused_items,
        "last_upload_age_s": (None if st.last_upload is None
                              else round(max(0.0, now - st.last_upload), 3)),
        "last_error": st.last_error,
        "link": {"interface": link.name if link is not None else None,
                 "metered": link.metered if link is not None else None,
                 "reason": st.link,
                 "gate": uploader.connectivity is not None and config.upload.require_link},
        "budget": uploader.budget.usage() if uploader.budget is not None else None,
    })
    return out


def _watchdog(daemon: Daemon) -> dict[str, Any]:
    dog = daemon.watchdog
    return {"systemd": daemon.notifier.watchdog_interval() is not None,
            "interval_s": dog.interval, "pings": dog.pings,
            "stale": [{"name": s.name, "silent_s": round(s.silent_for, 1),
                       "max_silence_s": s.max_silence} for s in dog.stale()]}


def _control(daemon: Daemon) -> dict[str, Any]:
    server = daemon.control
    if server is None:
        return {"clients": 0, "refused": 0, "busy": 0, "dropped": 0, "socket": None}
    stats = server.stats()
    return {"clients": stats["clients"], "refused": stats["refused"],
            "busy": stats["busy"], "dropped": stats["dropped"],
            "socket": str(server.path)}
