"""Where and how the HTTP receiver listens: ``HOST:PORT``, the loopback rule, TLS.

Plain HTTP is allowed on a loopback address only: batches carry what a vehicle
did, and a pseudonymous id is still personal data, so anything that crosses a
network goes over TLS. A host name counts as loopback only when *every*
address it resolves to is one (``localhost`` is; a name that also resolves to
a LAN address is not), and the server binds the first of them.

HTTPS takes a certificate chain and its key (PEM); with a client CA, a client
certificate signed by it is required (mutual TLS) and the handshake fails
without one. TLS 1.2 is the minimum.

HTTPS *without* a client CA on an address that is not loopback is refused too,
unless ``allow_anonymous`` says it is meant (then it is logged as a warning):
anyone who can reach the port could store forged batches under any vehicle's
id, and ``GET /stats`` lists every vehicle's pseudonym. Loopback (a reverse proxy
on the same host doing the authentication, a test) needs no client CA.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from agent.errors import ReceiverError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TlsFiles:
    """The server's certificate chain and key (PEM); ``client_ca`` requires client certs."""

    cert_file: Path
    key_file: Path
    client_ca: Path | None = None


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8443`` for IPv6) as (host, port); ReceiverError otherwise."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ReceiverError(f"--listen {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port_text)


def resolve(host: str, port: int) -> list[tuple[socket.AddressFamily, str]]:
    """The (family, address) pairs ``host`` stands for, in the resolver's order."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ReceiverError(f"cannot resolve {host!r}: {exc}") from None
    out: list[tuple[socket.AddressFamily, str]] = []
    for family, _type, _proto, _name, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6) and (family, str(sockaddr[0])) not in out:
            out.append((family, str(sockaddr[0])))
    if not out:
        raise ReceiverError(f"{host!r} has no IPv4 or IPv6 address")
    return out


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


def bind_address(host: str, port: int, tls: TlsFiles | None,
                 allow_anonymous: bool = False) -> tuple[socket.AddressFamily, str]:
    """The address to bind; refuses plain HTTP anywhere but on loopback, and HTTPS
    without client certificates there too unless ``allow_anonymous``."""
    addresses = resolve(host, port)
    outside = [a for _f, a in addresses if not is_loopback(a)]
    if not outside:
        return addresses[0]
    where = f"{host} ({', '.join(outside)} is not a loopback address)"
    if tls is None:
        raise ReceiverError(
            f"refusing plain HTTP on {where}: give --cert and --key to serve HTTPS, or "
            f"listen on 127.0.0.1")
    if tls.client_ca is None:
        if not allow_anonymous:
            raise ReceiverError(
                f"refusing HTTPS without client certificates on {where}: anyone reaching it "
                f"could store batches under any vehicle's id and read the vehicles' "
                f"pseudonyms at /stats; give --client-ca CA to require client certificates "
                f"(mTLS), or --allow-anonymous if something in front authenticates senders")
        log.warning("HTTPS on %s accepts anyone (--allow-anonymous): no client certificate "
                    "is asked for; any sender can store batches under any vehicle's id and "
                    "read /stats", where)
    return addresses[0]


def server_context(tls: TlsFiles) -> ssl.SSLContext:
    """The server-side TLS context; ReceiverError naming the file that is wrong."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ReceiverError(f"--cert {tls.cert_file} / --key {tls.key_file}: "
                            f"cannot load the certificate and key: {exc}") from None
    if tls.client_ca is not None:
        try:
            ctx.load_verify_locations(cafile=tls.client_ca)
        except (OSError, ssl.SSLError) as exc:
            raise ReceiverError(f"--client-ca {tls.client_ca}: cannot load: {exc}") from None
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx
