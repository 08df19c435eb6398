"""The upload endpoint, step by step: DNS, TCP, TLS with the configured CA and client
certificate (agent.upload.tls builds the same context the transports use), and the
certificates' expiry. Each step is bounded by ``timeout`` seconds and is skipped
when the one before it failed, so the first failure is the one to fix.

MQTT and HTTPS are the same up to here (``mqtts://`` and ``https://``); a plain
``mqtt://`` or ``http://`` endpoint has no TLS step (a warning unless it is on
this machine: the data would cross the network in clear).
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from agent.doctor.certificate import Validity, pem_validity, validity
from agent.doctor.result import Result, failed, passed, skipped, warned
from agent.errors import ConfigError
from agent.upload.settings import UploadConfig

DEFAULT_PORTS = {"https": 443, "http": 80, "mqtts": 8883, "mqtt": 1883}
SOON_DAYS = 30  # a certificate that expires sooner: a warning
REFUSAL_WAIT = 0.3  # seconds to wait for a server's alert refusing our client certificate


def endpoint_checks(upload: UploadConfig | None, timeout: float,
                    wall: Callable[[], float] = time.time) -> list[Result]:
    if upload is None:
        return [skipped("upload", "no [upload] in the configuration: nothing leaves the box")]
    parts = urlsplit(upload.url)
    host, scheme = parts.hostname or "", parts.scheme
    port = parts.port or DEFAULT_PORTS.get(scheme, 443)
    where = f"{host}:{port}"
    out: list[Result] = []
    addresses, result = resolve(host, port, timeout)
    out.append(result)
    if not addresses:
        return [*out, skipped("upload TCP", "no address to connect to")]
    sock, result = connect(addresses, where, timeout)
    out.append(result)
    if sock is None:
        return out
    with sock:
        if scheme not in ("https", "mqtts"):
            loopback = _is_loopback(addresses[0][4][0])
            plain = f"{scheme}:// has no TLS"
            out.append(skipped("upload TLS", f"{plain} (a receiver on this machine)")
                       if loopback else
                       warned("upload TLS", f"{plain}: the data crosses the network in clear",
                              f"use {scheme}s:// with a server certificate"))
        else:
            out.extend(tls(upload, sock, host, port, timeout, wall()))
    if upload.cert_file is not None:
        out.append(client_certificate(upload, wall()))
    return out


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def resolve(host: str, port: int, timeout: float) -> tuple[list[Any], Result]:
    """getaddrinfo in a thread of its own, waited for ``timeout`` seconds (the resolver
    has no timeout of its own to give)."""
    name = "upload DNS"
    try:
        ipaddress.ip_address(host)
        literal = True
    except ValueError:
        literal = False
    found: list[Any] = []
    errors: list[BaseException] = []

    def ask() -> None:
        try:
            found.extend(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except (OSError, UnicodeError) as exc:
            errors.append(exc)

    thread = threading.Thread(target=ask, name="doctor-dns", daemon=True)
    thread.start()
    thread.join(timeout)
    fix = ("check the host name in upload.url, and the box's DNS and link "
           "(resolvectl status; bavard status shows the link)")
    if thread.is_alive():
        return [], failed(name, f"{host}: no answer from the resolver within {timeout:g} s",
                          fix)
    if errors or not found:
        why = errors[0] if errors else "no address"
        return [], failed(name, f"cannot resolve {host}: {why}", fix)
    shown = ", ".join(dict.fromkeys(str(a[4][0]) for a in found))
    if literal:
        return found, passed(name, f"{host} is an address: nothing to resolve")
    return found, passed(name, f"{host} is {shown}")


def connect(addresses: list[Any], where: str, timeout: float
            ) -> tuple[socket.socket | None, Result]:
    """A TCP connection to the first address that takes one."""
    name = "upload TCP"
    problems = []
    for family, kind, proto, _, address in addresses:
        sock = socket.socket(family, kind, proto)
        sock.settimeout(timeout)
        started = time.monotonic()
        try:
            sock.connect(address)
        except OSError as exc:
            sock.close()
            problems.append((address[0], exc))
            continue
        took = (time.monotonic() - started) * 1000
        return sock, passed(name, f"connected to {where} ({address[0]}) in {took:.0f} ms")
    address, problem = problems[0]
    if isinstance(problem, TimeoutError):
        return None, failed(name, f"{where} ({address}): no answer within the timeout",
                            "a firewall drops the connection, or there is no route "
                            "(bavard status shows the link)")
    return None, failed(name, f"{where} ({address}): {problem.strerror or problem}",
                        f"nothing listens on {where}: is the server up, the port in "
                        "upload.url right, a firewall in the way?")


def tls(upload: UploadConfig, sock: socket.socket, host: str, port: int, timeout: float,
        now: float) -> list[Result]:
    """The handshake with the transports' own context, then the server's certificate."""
    from agent.upload.tls import client_context

    name = "upload TLS"
    where = f"{host}:{port}"
    try:
        ctx = client_context(upload.transport())
    except ConfigError as exc:
        return [failed(name, "; ".join(exc.problems), "fix the [upload] TLS files "
                                                      "(bavard config check FILE)")]
    try:
        with ctx.wrap_socket(sock, server_hostname=host) as ssock:
            der = ssock.getpeercert(binary_form=True)
            version = ssock.version()
            refused = _client_refused(ssock)
    except ssl.SSLCertVerificationError as exc:
        results = [failed(name, f"{where}: the server's certificate does not verify: "
                                f"{exc.verify_message}", _verify_fix(exc, upload, host))]
        return results + _peer_certificate(upload, host, port, timeout, now)
    except (ssl.SSLError, OSError) as exc:
        return [failed(name, f"{where}: TLS handshake failed: {exc}",
                       f"is it a TLS port? ({upload.url}); check the server's TLS log")]
    if refused is not None and upload.cert_file is None:
        return [failed(name, f"{where}: the server wants a client certificate: {refused}",
                       "set upload.cert_file and upload.key_file (mTLS)")]
    if refused is not None:
        return [failed(name, f"{where}: the server refused our client certificate: {refused}",
                       "upload.cert_file must be signed by a CA the server trusts")]
    auth = " with our client certificate" if upload.cert_file is not None else ""
    results = [passed(name, f"{where}: {version}, certificate verified{auth}")]
    return results + _server_expiry(der, now)


def _server_expiry(der: bytes | None, now: float) -> list[Result]:
    if not der:
        return []
    try:
        valid = validity(der)
    except ValueError as exc:
        return [skipped("upload certificate", f"cannot read its dates: {exc}")]
    return [expiry("upload certificate", valid, now, "renew the server's certificate")]


def _client_refused(ssock: ssl.SSLSocket) -> str | None:
    """With TLS 1.3 a server judges our certificate (or its absence) after the
    handshake: its alert, if it comes within :data:`REFUSAL_WAIT` seconds (a server
    that accepted waits for us to speak first)."""
    ssock.settimeout(REFUSAL_WAIT)
    try:
        ssock.recv(1)
    except TimeoutError:
        return None
    except ssl.SSLError as exc:
        return str(exc.reason or exc)
    except OSError as exc:
        return str(exc)
    return None


def _verify_fix(exc: ssl.SSLCertVerificationError, upload: UploadConfig, host: str) -> str:
    message = (exc.verify_message or "").lower()
    if "expired" in message or "not yet valid" in message:
        return "renew the server's certificate, or set the box's clock (see the clock check)"
    if "hostname" in message or "ip address mismatch" in message:
        return f"use in upload.url the name the certificate was issued for (not {host})"
    ca = upload.ca_file or "the system's CAs"
    return f"upload.ca_file ({ca}) must hold the CA that signed the server's certificate"


def _peer_certificate(upload: UploadConfig, host: str, port: int, timeout: float,
                      now: float) -> list[Result]:
    """The dates of a certificate that failed verification: a second, unverified
    handshake only to read it (nothing is sent)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if upload.cert_file is not None and upload.key_file is not None:
        ctx.load_cert_chain(str(upload.cert_file), str(upload.key_file))
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw, \
                ctx.wrap_socket(raw, server_hostname=host) as ssock:
            der = ssock.getpeercert(binary_form=True)
    except OSError:
        return []
    return _server_expiry(der, now)


def expiry(name: str, valid: Validity, now: float, renew: str) -> Result:
    """Expired or not yet valid: fail; less than :data:`SOON_DAYS` left: warn."""
    at = datetime.datetime.fromtimestamp(now, datetime.UTC)
    after = valid.not_after.strftime("%Y-%m-%d %H:%M UTC")
    if at > valid.not_after:
        return failed(name, f"expired on {after}", renew)
    if at < valid.not_before:
        before = valid.not_before.strftime("%Y-%m-%d %H:%M UTC")
        return failed(name, f"not valid before {before}: the box's clock is behind, or the "
                            "certificate was dated ahead", "set the clock (see the clock "
                                                           "check), or reissue the certificate")
    left = (valid.not_after - at).total_seconds() / 86_400
    if left < SOON_DAYS:
        return warned(name, f"expires on {after}, in {left:.0f} days", renew + " soon")
    return passed(name, f"valid until {after} ({left:.0f} days)")


def client_certificate(upload: UploadConfig, now: float) -> Result:
    assert upload.cert_file is not None
    try:
        valid = pem_validity(upload.cert_file)
    except (OSError, ValueError) as exc:
        return failed("client certificate", f"{upload.cert_file}: {exc}",
                      "upload.cert_file must be a PEM certificate")
    return expiry("client certificate", valid, now, f"renew {upload.cert_file}")
