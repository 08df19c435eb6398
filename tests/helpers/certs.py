"""trustme certificates on disk for the TLS upload tests: a CA, a server, a client.

The server certificate is for ``127.0.0.1`` and ``localhost``; the client's
private key is written with mode 0600 (the transports refuse a readable key).
``other_ca`` is a CA that signed nothing the peers use: trusting it alone
makes verification fail.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class Certs:
    ca_file: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca_file: Path

    def server_context(self, require_client_cert: bool = False) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.server_cert, self.server_key)
        if require_client_cert:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(cafile=str(self.ca_file))
        return ctx


def make_certs(directory: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> Certs:
    directory.mkdir(parents=True, exist_ok=True)
    ca, other = trustme.CA(), trustme.CA()
    server = ca.issue_cert(*hosts)
    client = ca.issue_cert("bavard-client@example.org", common_name="bavard-client")
    certs = Certs(directory / "ca.pem", directory / "server.pem", directory / "server.key",
                  directory / "client.pem", directory / "client.key",
                  directory / "other-ca.pem")
    ca.cert_pem.write_to_path(str(certs.ca_file))
    other.cert_pem.write_to_path(str(certs.other_ca_file))
    server.cert_chain_pems[0].write_to_path(str(certs.server_cert))
    server.private_key_pem.write_to_path(str(certs.server_key))
    client.cert_chain_pems[0].write_to_path(str(certs.client_cert))
    client.private_key_pem.write_to_path(str(certs.client_key))
    os.chmod(certs.client_key, 0o600)
    os.chmod(certs.server_key, 0o600)
    return certs
