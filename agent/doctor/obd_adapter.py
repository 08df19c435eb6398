"""The OBD-II channels: does the adapter answer, does the vehicle, and the battery.

With the service running it holds the adapter (one client only), so what it
counts in ``status`` (``channels[].obd``: connections, faults, the last
voltage) is read instead. Otherwise the adapter is opened here: an ELM327
answers ``ATZ``/``ATI`` (its version), then a first ``0100`` finds the
vehicle's protocol, and ``AT RV`` measures the supply at the OBD port; a
native CAN channel must get an answer to one ``01 00``.

Battery thresholds, for a 12 V lead-acid battery at the OBD port (a 24 V
truck's: twice these, told apart by a reading above 18 V): at rest a full
battery reads about 12.6 V, half charged about 12.2 V; below 12.0 V it is
mostly empty (a start may fail, and the box's own draw makes it worse): a
warning; below 11.5 V it is flat (the ECUs may brown out mid-answer, the
battery takes damage): a failure. With the engine running the alternator
gives 13.5 to 14.7 V; above 15 V the regulator overcharges: a warning.
"""

from __future__ import annotations

from typing import Any

from agent.config import ChannelConfig, Config
from agent.doctor.result import Result, failed, passed, skipped, warned
from agent.errors import ObdError, ObdVehicleError

WARN_VOLTS = 12.0  # below: a mostly empty battery, engine off (see the docstring)
FAIL_VOLTS = 11.5  # below: a flat battery
HIGH_VOLTS = 15.0  # above: the charging regulator overcharges
TRUCK_VOLTS = 18.0  # above this a reading is a 24 V system's: thresholds doubled
IGNITION_FIX = "ignition on (engine running or key at position II), then try again"


def obd_checks(config: Config, status: dict[str, Any] | None, service_running: bool,
               timeout: float, why: dict[str, str | None] | None = None) -> list[Result]:
    """``why``: the service's reason each OBD channel is not talking to the vehicle
    (its ``obd.channels`` command), when it said."""
    channels = [ch for ch in config.channels if ch.obd is not None]
    if not channels:
        return [skipped("OBD", "no OBD channel in the configuration")]
    out: list[Result] = []
    for ch in channels:
        if status is not None:
            by_name = {c.get("name"): c for c in status.get("channels", [])}
            out.extend(from_status(ch, by_name.get(ch.name), (why or {}).get(ch.name)))
        elif service_running:
            out.append(skipped(f"OBD {ch.name}", "the running service holds the adapter and "
                                                 "did not give its status"))
        else:
            out.extend(direct(ch, timeout))
    return out


def battery(name: str, volts: float | None, where: str) -> Result:
    """The supply voltage judged (see the module's docstring for the thresholds)."""
    check = f"battery {name}"
    if volts is None:
        return skipped(check, f"no voltage: {where}")
    scale = 2.0 if volts > TRUCK_VOLTS else 1.0
    shown = f"{volts:.1f} V" + (" (a 24 V system)" if scale > 1 else "")
    if volts < FAIL_VOLTS * scale:
        return failed(check, f"{shown}: the battery is flat (below {FAIL_VOLTS * scale:g} V)",
                      "charge the battery (or run the engine) before diagnosing: ECUs "
                      "misbehave on a low supply")
    if volts < WARN_VOLTS * scale:
        return warned(check, f"{shown}: the battery is low, engine off (below "
                             f"{WARN_VOLTS * scale:g} V)",
                      "charge the battery, or run the engine; a parked box drains it")
    if volts > HIGH_VOLTS * scale:
        return warned(check, f"{shown}: above {HIGH_VOLTS * scale:g} V, the alternator "
                             "overcharges", "have the charging system (regulator) checked")
    return passed(check, shown)


def from_status(ch: ChannelConfig, seen: dict[str, Any] | None, why: str | None = None
                ) -> list[Result]:
    """What the running service knows of an OBD channel; ``why``: its reason for not
    talking to the vehicle, if it gave one."""
    check = f"OBD {ch.name}"
    assert ch.obd is not None
    if seen is None:
        return [skipped(check, "the running service has no such channel (another "
                               "configuration?)")]
    obd = seen.get("obd") or {}
    where = ch.obd.where
    if seen.get("state") == "up" and obd.get("connects", 0):
        out = [passed(check, f"{where}: the vehicle answers ({obd['connects']} connections, "
                             f"{obd.get('adapter_errors', 0)} adapter faults, "
                             f"{obd.get('vehicle_errors', 0)} times silent)")]
    elif why is not None and why.startswith("connecting"):
        out = [warned(check, f"{where}: the service is {why}", "run the doctor again in a "
                                                               "few seconds")]
    else:
        why = why or seen.get("error") or f"state {seen.get('state')}"
        vehicle = why.startswith("the vehicle does not answer") or (
            not why.startswith("adapter fault")
            and obd.get("vehicle_errors", 0) > obd.get("adapter_errors", 0))
        fix = IGNITION_FIX if vehicle else _adapter_fix(ch)
        out = [failed(check, f"{where}: not talking to the vehicle: {why}", fix)]
    if ch.obd.port is not None:
        out.append(battery(ch.name, obd.get("voltage"), "the service has no reading yet"))
    return out


def _adapter_fix(ch: ChannelConfig) -> str:
    assert ch.obd is not None
    if ch.obd.port is not None:
        return (f"check the adapter on {ch.obd.port}: plugged in, powered by the OBD port, "
                "the device name (ls -l /dev/serial/by-id)")
    return f"see the CAN link checks above ({ch.obd.where})"


def direct(ch: ChannelConfig, timeout: float) -> list[Result]:
    """Open the channel's adapter here (no service holds it)."""
    assert ch.obd is not None
    if ch.obd.port is not None:
        return elm327(ch, timeout)
    return native(ch, timeout)


def elm327(ch: ChannelConfig, timeout: float) -> list[Result]:
    from agent.obd.elm327 import Elm327

    assert ch.obd is not None
    settings = ch.obd
    check = f"OBD {ch.name}"
    try:
        elm = Elm327.open(settings.port or "", vehicle=False, baudrate=settings.baudrate,
                          protocol=settings.protocol, timeout=settings.timeout or timeout)
    except ObdError as exc:
        return [failed(check, f"no ELM327 answers: {exc}", _adapter_fix(ch))]
    try:
        out = [passed(f"ELM327 {ch.name}", f"{elm.version} on {settings.port} at "
                                           f"{elm.baudrate} baud (ATZ, ATI answered)")]
        volts = elm.battery_voltage()
        try:
            elm.find_vehicle()
        except ObdVehicleError as exc:
            out.append(failed(check, f"the vehicle does not answer: {exc}", IGNITION_FIX))
        else:
            ecus = len({r.ecu for r in elm.first_replies})
            out.append(passed(check, f"the vehicle answers: {elm.protocol}, {ecus} ECU(s) "
                                     "answered 01 00"))
        out.append(battery(ch.name, volts, "the adapter refused AT RV"))
        return out
    except ObdError as exc:
        return [*out, failed(check, f"adapter fault: {exc}", _adapter_fix(ch))]
    finally:
        elm.close()


def native(ch: ChannelConfig, timeout: float) -> list[Result]:
    from agent.obd.adapters import open_transport
    from agent.obd.client import ecu_name

    assert ch.obd is not None
    check = f"OBD {ch.name}"
    try:
        transport = open_transport(ch.obd)
    except ObdError as exc:
        return [failed(check, f"cannot open {ch.obd.where}: {exc}", _adapter_fix(ch))]
    try:
        found = transport.request(b"\x01\x00", ecu=None, timeout=timeout)
    except ObdError as exc:
        return [failed(check, f"{ch.obd.where}: {exc}", _adapter_fix(ch))]
    finally:
        transport.close()
    ecus = sorted({ecu_name(r.ecu) for r in found if r.data[:2] == b"\x41\x00"})
    if not ecus:
        return [failed(check, f"{ch.obd.where}: no ECU answered 01 00 within {timeout:g} s",
                       IGNITION_FIX + "; check the bus (CAN link above) and 29-bit ids "
                                      "(extended)")]
    return [passed(check, f"{ch.obd.where}: ECU {', '.join(ecus)} answered 01 00")]
