"""``bavard status``: what the running service is doing, through its control socket.

Each source (kind, state, frames/s, unknown ids, gaps, errors; an OBD channel's
adapter), the decode and policy counters, the buffer (depth and oldest item
per class, dead letters), the uploads (state, last one, link, metered budget,
paused or not), the watchdog, the control socket, the version, uptime and the
configuration file with its hash. The frames/s of the last minutes as a
sparkline. ``--json``: the service's status document (docs/control.md).

With no service running it says so on standard error, with what to run, and
still shows what the buffer file holds (as ``bavard buffer`` does), then exits 3.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from agent.cli.buffer_cmd import _age
from agent.cli.buffer_cmd import render as render_buffer
from agent.cli.service_access import (
    NO_SERVICE,
    add_files_arguments,
    add_socket_argument,
    connect,
    has_buffer,
    note,
    print_json,
    state_dir,
)
from agent.cli.sparkline import sparkline
from agent.errors import ServiceNotRunningError, StoreError
from agent.store import DB_NAME, BufferStats, ClassStats, read_stats_file
from agent.units import human_bytes

HELP = "the running service: sources, decoding, buffer, uploads, link, watchdog"
EPILOG = f"""\
exit status: 0 the service answered; 1 an error (a refused socket, a broken answer);
{NO_SERVICE} no service answers on the control socket: the buffer file's figures are shown
instead (from --state-dir or --config), and standard error says what to run"""
SPARK_WIDTH = 40


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_socket_argument(parser)
    add_files_arguments(parser)


def run(args: argparse.Namespace) -> int:
    try:
        with connect(args) as service:
            status = service.call("status")
    except ServiceNotRunningError as exc:
        return _without_service(args, str(exc))
    if args.json:
        print_json(status)
    else:
        print(render(status))
    return 0


def _without_service(args: argparse.Namespace, why: str) -> int:
    note("status", why)
    directory = state_dir(args)
    stats: BufferStats | None = None
    problem = None
    if not has_buffer(directory):
        problem = f"no buffer in {directory} (no {DB_NAME}): --state-dir DIR or --config FILE"
    else:
        try:
            stats = read_stats_file(directory / DB_NAME, time.time())
        except StoreError as exc:
            problem = str(exc)
    if problem is not None:
        note("status", problem)
    else:
        note("status", f"the buffer file as it is now ({directory}):")
    if args.json:
        print_json({"service": None, "reason": why,
                    "buffer": stats.to_dict() if stats is not None else None,
                    "buffer_error": problem})
    elif stats is not None:
        print(render_buffer(stats))
    return NO_SERVICE


# -- the report -------------------------------------------------------------------------------

def render(s: dict[str, Any]) -> str:
    config = s["config"]
    sha = (config["sha256"] or "?")[:12]
    lines = [f"bavard {s['version']}, pid {s['pid']}, up {_age(s['uptime_s'])}",
             f"  configuration {config['path']} (sha256 {sha}…)"
             + ("; CHANGED on disk since it was loaded: systemctl reload bavard"
                if config.get("changed_on_disk") else "")]
    pipe = s["pipeline"]
    history = s.get("history") or {}
    rates = history.get("frames_per_s") or []
    span = (f" (last {_age(history['interval_s'] * (len(rates) - 1))})"
            if history.get("interval_s") and len(rates) > 1 else "")
    now = f"{pipe['frames_per_s']:>10,.0f}" if rates else f"{'-':>10}"  # none measured yet
    lines.append(f"frames/s {now}  {sparkline(rates, SPARK_WIDTH)}{span}")
    lines.append("sources")
    for ch in s["channels"]:
        lines.extend(_channel(ch))
    decoded, kept = pipe["samples_decoded"], pipe["samples_kept"]
    rules = pipe.get("rules") or {}
    lines.append(f"decode   {pipe['frames_in']:,} frames in, {decoded:,} values decoded, "
                 f"{kept:,} kept by the policy ({_share(kept, decoded)}); dropped "
                 f"{rules.get('unchanged', 0):,} unchanged, {rules.get('rate_limited', 0):,} "
                 f"rate-limited; {pipe['events_in']:,} events from the sources")
    buffer = s.get("buffer")
    if buffer is not None:
        stats = BufferStats(**{**buffer, "classes": {name: ClassStats(**c) for name, c
                                                      in buffer["classes"].items()}})
        text = render_buffer(stats).splitlines()
        lines.append(f"{text[0]} (state {buffer.get('state') or '?'}, "
                     f"{buffer.get('queued_items') or 0:,} queued)")
        lines.extend(text[1:])
    else:
        lines.append(f"buffer   did not answer: {s.get('buffer_error', '?')}")
    lines.extend(_upload(s.get("upload")))
    lines.extend(_destinations(s.get("destinations") or []))
    lines.append(_watchdog(s["watchdog"]))
    control = s["control"]
    lines.append(f"control  {control['socket']}: {control['clients']} client(s), "
                 f"{control['refused']} refused, {control['dropped']:,} stream items dropped "
                 "for slow readers")
    return "\n".join(lines)


def _destinations(dests: list[dict[str, Any]]) -> list[str]:
    """Per destination: its purpose, the owner's consent, what was stored and withheld."""
    lines = ["owner    destination (purpose): consent; stored / withheld for want of consent"]
    for d in dests:
        stored, withheld = d.get("stored") or {}, d.get("withheld") or {}
        consent = "granted" if d.get("granted") else "NOT granted: nothing stored"
        up = d.get("upload")
        sent = (f"; {up['batches']:,} batches sent ({up['state']})" if up else "")
        lines.append(f"  {d['name']} ({d['purpose']}): {consent}; "
                     f"{sum(stored.values()):,} / {sum(withheld.values()):,} items, "
                     f"{d.get('buffered', 0):,} buffered{sent}")
    return lines if dests else []


def _channel(ch: dict[str, Any]) -> list[str]:
    reader = ch.get("reader")
    via = f" ({reader})" if reader else ""
    # through CAN_BCM, only the frames whose selected bits changed reach bavard
    what = "changed frames" if reader == "bcm" else "frames"
    head = (f"  {ch['name']}  {ch['kind']} {ch['where']}{via}  {ch['state'].upper()}  "
            f"{ch['frames']:,} {what}, {ch['frames_per_s']:,.0f}/s")
    if ch["unknown_ids"] is not None:
        known = "-" if ch["known_share"] is None else f"{100 * ch['known_share']:.1f}%"
        head += (f"; known ids {known}, {ch['unknown_ids']:,} unknown ids "
                 f"({ch['unknown_frames']:,} frames)")
    else:
        head += "; raw (not decoded)"
    out = [head]
    problems = []
    if ch["gaps"]:
        problems.append(f"{ch['gaps']} gaps ({ch['gap_seconds']:.1f} s)")
    if ch["dropped"]:
        problems.append(f"{ch['dropped']:,} frames dropped (pipeline behind)")
    skipped = ch.get("skipped") or {}
    if skipped:
        problems.append("skipped " + ", ".join(f"{n:,} {k}" for k, n in sorted(skipped.items())))
    for key, what in (("truncated", "short frames"), ("bad_mux", "unknown multiplexer"),
                      ("out_of_range", "values out of range")):
        if ch.get(key):
            problems.append(f"{ch[key]:,} {what}")
    if ch.get("messages_missing"):
        problems.append(f"{ch['messages_missing']:,} messages went missing, "
                        f"{ch.get('messages_back', 0):,} came back")
    if ch["error"]:
        problems.append(f"ERROR {ch['error']}")
    if problems:
        out.append("    " + "; ".join(problems))
    obd = ch.get("obd")
    if obd is not None:
        volts = "-" if obd["voltage"] is None else f"{obd['voltage']:.1f} V"
        out.append(f"    OBD: {obd['pids_per_s']:.1f} PIDs/s, battery {volts}, "
                   f"{obd['connects']} connects, {obd['adapter_errors']} adapter errors, "
                   f"{obd['vehicle_errors']} vehicle silences, {obd['dtc_reads']} DTC reads"
                   + (f"; unsupported: {', '.join(obd['unsupported'])}"
                      if obd["unsupported"] else ""))
    return out


def _upload(up: dict[str, Any] | None) -> list[str]:
    if up is None:
        return ["upload   off (no [upload] in the configuration: nothing leaves the box)"]
    state = up["state"].upper() if up["paused"] or up["state"] == "paused" else up["state"]
    head = f"upload   {state}"
    if up["paused"]:
        since = (time.strftime(" since %Y-%m-%d %H:%M", time.localtime(up["paused_since"]))
                 if up["paused_since"] else "")
        head += (f" by hand{since}" + (f" ({up['paused_reason']})" if up["paused_reason"]
                                       else "") + ": `bavard resume` restarts uploads")
    out = [head]
    last = ("never" if up["last_upload_age_s"] is None
            else f"{_age(up['last_upload_age_s'])} ago")
    out.append(f"  to {up['endpoint'] or '-'}: {up['batches']:,} batches, {up['items']:,} "
               f"items, {human_bytes(up['bytes'])}; last {last}; {up['transient']:,} retried, "
               f"{up['refused']:,} refused")
    if up["last_error"]:
        out.append(f"  last error: {up['last_error']}")
    link = up.get("link")
    if link is not None:
        if not link["gate"]:
            where = "no connectivity gate (require_link = false)"
        elif link["interface"] is None:
            where = f"no link: {link['reason'] or 'not looked at yet'}"
        else:
            where = (f"{link['interface']} ({'metered' if link['metered'] else 'unmetered'})"
                     f": {link['reason']}")
        out.append(f"  link {where}")
    budget = up.get("budget")
    if budget is not None:
        out.append("  metered budget: today " + _left(budget["day_left"], budget["daily_bytes"])
                   + ", this month " + _left(budget["month_left"], budget["monthly_bytes"]))
    return out


def _left(left: int | None, limit: int | None) -> str:
    if limit is None:
        return "no limit"
    return f"{human_bytes(left or 0)} left of {human_bytes(limit)}"


def _watchdog(dog: dict[str, Any]) -> str:
    head = (f"watchdog {'systemd' if dog['systemd'] else 'no systemd watchdog'}, "
            f"{dog['pings']:,} pings")
    if dog["stale"]:
        return head + "; STALLED: " + ", ".join(
            f"{b['name']} silent {b['silent_s']:.0f} s (max {b['max_silence_s']:.0f})"
            for b in dog["stale"])
    return head + "; every thread making progress"


def _share(part: int, whole: int) -> str:
    return "-" if not whole else f"{100 * part / whole:.1f}%"
