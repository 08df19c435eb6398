"""The ``obd.*`` commands of the control socket: ``bavard obd`` through the running service.

While the service holds an adapter (a serial port cannot be shared; two
programs asking on the same ISO-TP ids take each other's replies), the
technician's requests are run by the channel's own OBD source between two of
its polls (agent.sources.obd_requests), and answer with the same documents
``bavard obd ACTION --json`` prints when it opens the adapter itself
(agent.obd.report builds both).

=================  ==============================  ======================================
command            args                            result
=================  ==============================  ======================================
``obd.channels``   {}                              {"channels": [{name, adapter, where,
                                                   connected, why}]}
``obd.scan``       {channel?}                      adapter, protocol, battery, ECUs' PIDs
``obd.read``       {channel?, pids: [name|num]}    {"time", "values", "no_data"}
``obd.dtc``        {channel?, clear?: bool}        stored/pending/permanent, or {"cleared"}
``obd.vin``        {channel?}                      {"vin", "problems"}
``obd.readiness``  {channel?}                      MIL, code count, monitors by ECU
=================  ==============================  ======================================

``channel`` may be left out when the service has one OBD channel. Every command
also takes ``timeout`` (seconds the answer may take, default
:data:`REQUEST_TIMEOUT`, at most :data:`MAX_TIMEOUT`). A channel that is not
talking to the vehicle now fails at once with the reason (connecting, the
adapter's fault, the vehicle's silence); a clear is ``{"clear": true}``, which
the command line sends only with ``--yes``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from agent.control import protocol
from agent.errors import BavardError, ControlError
from agent.obd import report
from agent.obd.client import ObdClient

log = logging.getLogger(__name__)

Command = Callable[[dict[str, Any]], dict[str, Any]]

REQUEST_TIMEOUT = 10.0  # seconds: a scan on a slow K-line ELM327 takes a few
MAX_TIMEOUT = 30.0  # the client's own CALL_TIMEOUT


def obd_commands(daemon: Any) -> dict[str, Command]:
    """The ``obd.*`` handlers over ``daemon``'s running pipeline (looked up at each
    call: a reload replaces it)."""
    def channels(args: dict[str, Any]) -> dict[str, Any]:
        return {"channels": [_describe(ch) for ch in _obd_channels(daemon)]}

    def action(name: str, build: Callable[[dict[str, Any]], Callable[[ObdClient], Any]],
               changes_dtcs: Callable[[dict[str, Any]], bool] = lambda a: False) -> Command:
        def handler(args: dict[str, Any]) -> dict[str, Any]:
            _only(args, name)
            ch = _pick(daemon, args.get("channel"))
            fn = build(args)  # bad arguments are refused before the adapter is asked
            timeout = _timeout(args)
            requests = ch.source.requests
            doc: dict[str, Any] = requests.call(fn, timeout, f"obd {name}",
                                                changes_dtcs=changes_dtcs(args))
            return doc
        return handler

    def read(args: dict[str, Any]) -> Callable[[ObdClient], Any]:
        pids = args.get("pids")
        if not isinstance(pids, list) or not pids or not all(isinstance(p, str | int)
                                                              for p in pids):
            raise ControlError("pids: expected a list of PID names or numbers, e.g. "
                               '["ENGINE_RPM", "0D"]', protocol.BAD_ARGS)
        try:
            numbers = report.pid_numbers([f"{p:02X}" if isinstance(p, int) else p
                                          for p in pids])
        except ValueError as exc:
            raise ControlError(f"pids: {exc}", protocol.BAD_ARGS) from None
        return lambda client: report.read(client, numbers, note=log.warning)

    def dtc(args: dict[str, Any]) -> Callable[[ObdClient], Any]:
        clear = args.get("clear", False)
        if not isinstance(clear, bool):
            raise ControlError("clear: expected true or false", protocol.BAD_ARGS)
        if clear:
            log.warning("trouble codes cleared (mode 04) at a control client's request")
        return report.clear if clear else report.dtc

    return {
        "obd.channels": channels,
        "obd.scan": action("scan", lambda a: report.scan),
        "obd.read": action("read", read),
        "obd.dtc": action("dtc", dtc, lambda a: a.get("clear") is True),
        "obd.vin": action("vin", lambda a: report.vin),
        "obd.readiness": action("readiness", lambda a: report.readiness),
    }


_ARGS = {"scan": {"channel", "timeout"}, "read": {"channel", "timeout", "pids"},
         "dtc": {"channel", "timeout", "clear"}, "vin": {"channel", "timeout"},
         "readiness": {"channel", "timeout"}}


def _only(args: dict[str, Any], name: str) -> None:
    unknown = sorted(set(args) - _ARGS[name])
    if unknown:
        raise ControlError(f"obd.{name}: unknown argument {unknown[0]!r} (takes "
                           f"{', '.join(sorted(_ARGS[name]))})", protocol.BAD_ARGS)


def _timeout(args: dict[str, Any]) -> float:
    value = args.get("timeout", REQUEST_TIMEOUT)
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            0 < value <= MAX_TIMEOUT):
        raise ControlError(f"timeout: expected seconds above 0, at most {MAX_TIMEOUT:g}",
                           protocol.BAD_ARGS)
    return float(value)


def _obd_channels(daemon: Any) -> list[Any]:
    pipeline = getattr(daemon, "pipeline", None)
    if pipeline is None:
        raise BavardError("the service has no running pipeline (starting, or stopping)")
    return [ch for ch in pipeline.channels if ch.config.obd is not None]


def _pick(daemon: Any, name: Any) -> Any:
    """The OBD channel ``name``, or the only one."""
    found = _obd_channels(daemon)
    names = ", ".join(ch.config.name for ch in found)
    if name is None:
        if len(found) == 1:
            return found[0]
        if not found:
            raise BavardError("the service has no OBD channel (a [[channels]] table with "
                              "obd = true): use --port or --can to reach an adapter directly")
        raise ControlError(f"channel: the service has {len(found)} OBD channels ({names}): "
                           "name one with --channel", protocol.BAD_ARGS)
    if not isinstance(name, str):
        raise ControlError("channel: expected a channel name", protocol.BAD_ARGS)
    for ch in found:
        if ch.config.name == name:
            return ch
    pipeline = daemon.pipeline
    if any(ch.config.name == name for ch in pipeline.channels):
        raise ControlError(f"channel: {name!r} is not an OBD channel (OBD: {names or 'none'})",
                           protocol.BAD_ARGS)
    raise ControlError(f"channel: no channel {name!r} in the service (OBD: "
                       f"{names or 'none'})", protocol.BAD_ARGS)


def _describe(ch: Any) -> dict[str, Any]:
    settings = ch.config.obd
    connected, why = ch.source.requests.state
    return {"name": ch.config.name, "adapter": settings.adapter, "where": settings.where,
            "port": settings.port, "interface": settings.interface,
            "can_channel": settings.channel, "connected": connected, "why": why}
