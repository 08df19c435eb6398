"""What every upload transport does: deliver one encoded batch, acknowledged.

A transport knows nothing of the store, retries or connectivity (the uploader
loop does those). :meth:`Transport.send` returns only once the receiver has
acknowledged the batch (HTTP 2xx, MQTT PUBACK); otherwise it raises
:class:`~agent.errors.TransientUploadError` (retry later) or
:class:`~agent.errors.RefusedUploadError` (never retry). Every foreign
exception (OSError, ssl.SSLError, paho's errors) is wrapped into one of the
two at this boundary.

Registry by URL scheme, imported lazily: ``https``/``http`` (agent.upload.http),
``mqtts``/``mqtt`` (agent.upload.mqtt).

:func:`network_error` is the one place where a failure to reach or talk to the
receiver (OSError, ssl.SSLError) becomes a TransientUploadError, so both
transports word and log them alike. A certificate verification failure is
transient too, but logged at ERROR with the local clock in the message: on a
Raspberry Pi (no RTC) a clock that NTP has not set yet makes every valid
certificate look "not yet valid", and that passes by itself; a wrong
``upload.ca_file`` does not, and the operator reads the same line.
"""

from __future__ import annotations

import importlib
import logging
import socket
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import SplitResult, urlsplit

from agent.errors import ConfigError, RefusedUploadError, TransientUploadError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TransportConfig:
    """The part of ``[upload]`` a transport needs."""

    url: str  # https://host:port/path, http://..., mqtts://host:port, mqtt://...
    topic: str = "bavard/{vehicle}/batch"  # MQTT only; {vehicle} = pseudonymous id
    timeout: float = 30.0  # seconds: connect, and then the acknowledgement
    ca_file: Path | None = None  # custom CA bundle; None = the system's
    cert_file: Path | None = None  # client certificate (mTLS)
    key_file: Path | None = None  # its private key: refused when group/other can read it
    max_batch_bytes: int = 4 * 1024 * 1024  # a bigger batch is refused without sending
    mqtt_version: int = 5  # 5 or 311 (then the batch id travels only in the envelope)
    client_id: str = ""  # MQTT client id; "" = "bavard-" + vehicle id

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme

    @property
    def host(self) -> str:
        """The endpoint's host name or address (what connectivity looks a route up for)."""
        return urlsplit(self.url).hostname or ""

    @property
    def tls(self) -> bool:
        return self.scheme in ("https", "mqtts")


class Transport(Protocol):
    """Delivers one batch and returns once it is acknowledged."""

    def send(self, batch_id: str, vehicle_id: str, payload: bytes) -> None:
        """Deliver ``payload`` (an encoded batch); raise TransientUploadError or
        RefusedUploadError. Safe to call again with the same batch after a failure."""

    def close(self) -> None:
        """Drop connections; idempotent. ``send`` may be called again afterwards."""


def check_size(config: TransportConfig, endpoint: str, batch_id: str, payload: bytes) -> None:
    """RefusedUploadError, without sending, for a batch over ``upload.max_batch_bytes``."""
    if len(payload) > config.max_batch_bytes:
        raise RefusedUploadError(
            f"{endpoint}: batch {batch_id} is {len(payload)} bytes, over "
            f"upload.max_batch_bytes ({config.max_batch_bytes}); not sent")


SCHEMES = {
    "https": "agent.upload.http:HttpTransport",
    "http": "agent.upload.http:HttpTransport",
    "mqtts": "agent.upload.mqtt:MqttTransport",
    "mqtt": "agent.upload.mqtt:MqttTransport",
}


def open_transport(config: TransportConfig) -> Transport:
    """The transport for ``config.url``'s scheme (ConfigError names ``upload.url``)."""
    target = SCHEMES.get(config.scheme)
    if target is None:
        raise ConfigError(f"upload.url: scheme {config.scheme!r} is not one of "
                          f"{', '.join(sorted(SCHEMES))}")
    module, name = target.split(":")
    cls = getattr(importlib.import_module(module), name)
    transport: Transport = cls(config)
    return transport


def split_url(url: str, schemes: tuple[str, str]) -> tuple[SplitResult, str, int | None]:
    """``url`` split, its host and its port; ConfigError naming ``upload.url`` unless it
    has one of ``schemes``, a valid port and a host name that can be looked up."""
    parts = urlsplit(url)
    if parts.scheme not in schemes:
        raise ConfigError(f"upload.url: {url!r}: the scheme must be {schemes[0]}:// or "
                          f"{schemes[1]}://")
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"upload.url: bad port in {url!r}") from exc
    if not parts.hostname:
        raise ConfigError(f"upload.url: no host in {url!r}")
    check_host(url, parts.hostname)
    return parts, parts.hostname, port


def check_host(url: str, host: str) -> None:
    """ConfigError when ``host`` cannot be looked up at all (an empty or over-long label:
    the resolver's IDNA encoding raises UnicodeError, which is neither of the two
    upload errors and would escape ``send``)."""
    try:
        host.encode("idna")
    except UnicodeError as exc:
        raise ConfigError(f"upload.url: {host!r} in {url!r} is not a valid host name: "
                          f"{exc}") from exc


def network_error(exc: OSError, endpoint: str, timeout: float) -> TransientUploadError:
    """``exc`` (raised while connecting to or talking with ``endpoint``) as a transient error."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        message = (f"{endpoint}: TLS certificate verification failed: "
                   f"{exc.verify_message or exc.reason or exc} (local clock {now}: is it set? "
                   f"is upload.ca_file the CA that signed the server?)")
        log.error("%s", message)
    elif isinstance(exc, socket.gaierror):
        message = f"{endpoint}: cannot resolve the host name: {exc.strerror or exc}"
    elif isinstance(exc, TimeoutError):
        message = f"{endpoint}: no answer within {timeout:g} s"
    elif isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        message = f"{endpoint}: the peer closed the TLS connection: {exc.reason or exc}"
    elif isinstance(exc, ssl.SSLError):
        message = f"{endpoint}: TLS failure: {exc.reason or exc}"
    elif isinstance(exc, ConnectionRefusedError):
        message = f"{endpoint}: connection refused"
    elif isinstance(exc, ConnectionError):
        message = f"{endpoint}: connection lost: {exc}"
    else:
        message = f"{endpoint}: {type(exc).__name__}: {exc}"
    log.debug("%s", message)
    return TransientUploadError(message)
