"""Run every family of checks in the order a technician reads them.

The service first: when it runs, what it counts (``status``) stands in for
opening its buses and adapters (an ELM327 answers one client only); when it
does not, those checks open them here. Then the configuration, whose channels,
store and upload the other checks are about. A family that needs the
configuration is skipped, saying so, when the file cannot even be parsed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from agent.control.protocol import default_socket_path
from agent.doctor import can_link, clock, disk, endpoint, obd_adapter, service, traffic
from agent.doctor.configuration import config_checks
from agent.doctor.result import Result, skipped

DEFAULT_TIMEOUT = 5.0  # seconds for each network step and each adapter request
DEFAULT_LISTEN = 2.0  # seconds to listen to a bus when no service runs


def diagnose(config_path: Path, socket: Path | None = None, *,
             timeout: float = DEFAULT_TIMEOUT, listen: float = DEFAULT_LISTEN,
             wall: Callable[[], float] = time.time) -> list[Result]:
    """Every check's result. ``socket``: the service's control socket (None: the
    configuration's ``[control] socket``, else the default)."""
    checked = config_checks(config_path)
    config = checked.config
    if socket is None:
        configured = config.control.socket if config is not None else None
        socket = configured if configured is not None else default_socket_path()
    found = service.ask_service(socket, timeout)
    results = list(found.results)
    status = found.status
    if status is not None:
        from agent.service.status import file_sha256

        results.append(service.configuration_matches(status, config_path,
                                                     file_sha256(config_path)))
        results.append(service.watchdog(status))
    results.extend(checked.results)
    if config is None:
        results.append(skipped("the rest", "nothing more to check without a configuration"))
        results.extend(clock.clock_checks(wall))
        return results
    results.extend(can_link.can_link_checks(config))
    results.extend(traffic.traffic_checks(config, status, listen, checked.databases))
    results.extend(obd_adapter.obd_checks(config, status, found.running, timeout,
                                          found.obd_why))
    buffer = status.get("buffer") if status is not None else None
    results.extend(disk.disk_checks(config.store, buffer, config.upload is not None, wall()))
    results.extend(clock.clock_checks(wall))
    if status is not None and config.upload is not None:
        results.append(service.upload(status))
    results.extend(endpoint.endpoint_checks(config.upload, timeout, wall))
    return results
