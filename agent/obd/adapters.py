"""Open the adapter an OBD channel's settings name: an ELM327 or a CAN interface.

Both are imported here, on first use, so that a machine without python-can's
optional parts or without a serial port still runs the rest.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from agent.obd.settings import ObdSettings
from agent.obd.transport import Transport


def open_transport(settings: ObdSettings, *, clock: Callable[[], float] = time.monotonic,
                   sleep: Callable[[float], None] = time.sleep) -> Transport:
    """The open adapter; ObdAdapterError or ObdVehicleError (agent.errors) when it
    cannot be opened or the vehicle does not answer it."""
    timeout = {} if settings.timeout is None else {"timeout": settings.timeout}
    if settings.port is not None:
        from agent.obd.elm327 import Elm327

        return Elm327.open(settings.port, baudrate=settings.baudrate,
                           protocol=settings.protocol, clock=clock, sleep=sleep, **timeout)
    from agent.obd.can_transport import CanObd

    assert settings.interface is not None and settings.channel is not None
    return CanObd.open(settings.interface, settings.channel, extended=settings.extended,
                       clock=clock, **timeout)
