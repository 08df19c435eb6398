"""The service: does it answer on its control socket, which configuration does it run,
is its watchdog content, and when did it last upload?

Not running is a warning (the checks that need it are then made directly);
a socket that refuses us is a warning too, with the reason (the group). What
the rest of the doctor needs from it comes back in :class:`Service`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.control.client import ControlClient
from agent.doctor.result import Result, age, failed, passed, skipped, warned
from agent.errors import ControlError, ControlRefusedError, ServiceNotRunningError

START_FIX = "sudo systemctl start bavard (or bavard run --config FILE)"
OLD_UPLOAD = 86_400.0  # seconds since the last upload before it is a warning


@dataclass
class Service:
    """What the doctor learnt of the service."""

    running: bool = False  # something answers on the socket (even if it refused us)
    status: dict[str, Any] | None = None  # its ``status`` document
    obd_why: dict[str, str | None] = field(default_factory=dict)  # channel -> why not talking
    results: list[Result] = field(default_factory=list)


def ask_service(socket: Path, timeout: float) -> Service:
    """Connect, read ``status`` (and ``obd.channels``); never raises a ControlError."""
    name = "service"
    try:
        client = ControlClient.connect(socket, timeout=max(timeout, 5.0))
    except ServiceNotRunningError:
        return Service(results=[warned(name, f"not running (nothing answers on {socket}); "
                                             "the checks below open the buses and the "
                                             "adapters themselves", START_FIX)])
    except ControlRefusedError as exc:
        return Service(running=True, results=[warned(name, str(exc),
                                                     "sudo usermod -aG bavard $USER, then "
                                                     "log in again (or run the doctor with "
                                                     "sudo)")])
    except ControlError as exc:
        return Service(results=[failed(name, str(exc), "sudo systemctl restart bavard; "
                                                       "journalctl -u bavard says why")])
    with client:
        try:
            status = client.call("status")
        except ControlError as exc:
            return Service(running=True, results=[failed(name, f"status: {exc}",
                                                         "journalctl -u bavard says why")])
        why: dict[str, str | None] = {}
        try:
            for ch in client.call("obd.channels").get("channels", []):
                why[str(ch.get("name"))] = ch.get("why")
        except ControlError:
            pass  # a service without the OBD commands: the status alone tells
    hello = client.hello
    config = status.get("config") or {}
    results = [passed(name, f"bavard {hello.get('version', status.get('version'))} (pid "
                            f"{hello.get('pid', status.get('pid'))}), up "
                            f"{age(float(status.get('uptime_s') or 0))}, configuration "
                            f"{config.get('path')}")]
    return Service(True, status, why, results)


def configuration_matches(status: dict[str, Any], config_path: Path, sha256: str | None
                          ) -> Result:
    """Does the service run the file the doctor checks?"""
    name = "service configuration"
    config = status.get("config") or {}
    theirs, path = config.get("sha256"), config.get("path")
    if sha256 is None:
        return skipped(name, f"{config_path} cannot be read to compare")
    if theirs != sha256:
        same = path is not None and Path(path).resolve() == config_path.resolve()
        if same:
            return warned(name, f"{config_path} changed since the service loaded it",
                          "sudo systemctl reload bavard (bavard config check FILE first)")
        return warned(name, f"the service runs {path}, not {config_path} (they differ)",
                      f"bavard doctor --config {path}, to check what runs")
    return passed(name, f"the service runs {config_path} as it is on disk")


def watchdog(status: dict[str, Any]) -> Result:
    name = "watchdog"
    dog = status.get("watchdog") or {}
    stale = dog.get("stale") or []
    if stale:
        shown = ", ".join(f"{s.get('name')} silent {s.get('silent_s')} s" for s in stale)
        return failed(name, f"threads without progress: {shown}; systemd restarts the "
                            "service if it lasts", "journalctl -u bavard shows what they "
                                                   "were doing; a stuck bus or disk?")
    how = "systemd watches it" if dog.get("systemd") else "no systemd watchdog (not under " \
                                                          "systemd, or WatchdogSec unset)"
    return passed(name, f"every thread makes progress; {how}")


def upload(status: dict[str, Any]) -> Result:
    name = "last upload"
    up = status.get("upload")
    if up is None:
        return skipped(name, "no [upload]: nothing leaves the box")
    if up.get("paused"):
        reason = up.get("paused_reason")
        return warned(name, "uploads are paused" + (f" ({reason})" if reason else ""),
                      "bavard resume")
    last = up.get("last_upload_age_s")
    error = up.get("last_error") or ""
    state = up.get("state")
    if last is None:
        detail = f"none since the service started (state {state})"
        if error:
            return warned(name, f"{detail}; last error: {error}",
                          "see the upload endpoint checks below")
        return passed(name, detail)
    detail = f"{age(float(last))} ago (state {state})"
    if float(last) > OLD_UPLOAD:
        return warned(name, detail + (f"; last error: {error}" if error else ""),
                      "see the upload endpoint checks below; bavard upload --now tries at once")
    if error:
        detail += f"; a later attempt failed: {error}"
    return passed(name, detail)
