"""The client TLS context of both transports, and the private key permission check.

Decisions:

- Verification is always on (``CERT_REQUIRED`` and ``check_hostname``); there
  is no setting to turn it off. A private endpoint uses ``upload.ca_file`` (a
  PEM bundle of the CAs to trust *instead of* the system's) rather than an
  "insecure" switch.
- The minimum protocol is TLS 1.2 (Python's own default floor, written down).
- Client certificates (mTLS) need both ``upload.cert_file`` and
  ``upload.key_file``; one without the other is a configuration error, not a
  silent downgrade to server-only TLS.
- A private key that group or others may read (``mode & 0o044``) is refused,
  as ssh refuses a readable identity file: on a box that may be stolen or
  shared with other services, a readable key is a leaked key. So is a key owned
  by another user than the service's own or root (a service run as root would
  read it, and its owner could too, whatever the mode says). The mode checked is
  the file's, through any symbolic link, since that is what is read. The check runs
  when the context is built, i.e. when the transport is constructed, so a bad
  file is reported at start (and at a configuration reload), not at the
  first upload.
- Every problem is a :class:`~agent.errors.ConfigError` naming the key, the
  path and, for permissions, the fix.
"""

from __future__ import annotations

import logging
import os
import ssl
import stat
from pathlib import Path

from agent.errors import ConfigError
from agent.upload.transport import TransportConfig

log = logging.getLogger(__name__)


def check_key_permissions(path: Path, key: str = "upload.key_file") -> None:
    """Raise ConfigError when ``path`` is missing, not a file, or readable by group/others."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{key}: {path} is not a regular file")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o044:
        raise ConfigError(f"{key}: private key {path} has mode {mode:04o}, readable by "
                          f"group or others; restrict it with: chmod 600 {path}")
    if st.st_uid not in (os.geteuid(), 0):
        raise ConfigError(f"{key}: private key {path} belongs to user id {st.st_uid}, "
                          f"who can read it (and chmod it) whatever its mode; make it this "
                          f"service's (user id {os.geteuid()}) with chown, or root's")


def _readable(path: Path, key: str) -> None:
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc.strerror or exc}") from exc


def client_context(config: TransportConfig) -> ssl.SSLContext:
    """A verifying client context for ``config`` (ConfigError names the ``upload.*`` key)."""
    if (config.cert_file is None) != (config.key_file is None):
        missing = "upload.key_file" if config.key_file is None else "upload.cert_file"
        given = "upload.cert_file" if config.key_file is None else "upload.key_file"
        raise ConfigError(f"{missing}: required for a client certificate when {given} is set "
                          f"(set both upload.cert_file and upload.key_file, or neither)")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.check_hostname = True
    if config.ca_file is None:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    else:
        _readable(config.ca_file, "upload.ca_file")
        try:  # only this bundle is trusted, not the system's
            ctx.load_verify_locations(cafile=str(config.ca_file))
        except (ssl.SSLError, ValueError) as exc:
            raise ConfigError(f"upload.ca_file: {config.ca_file} holds no usable PEM "
                              f"certificate: {exc}") from exc
    if config.cert_file is not None and config.key_file is not None:
        _readable(config.cert_file, "upload.cert_file")
        check_key_permissions(config.key_file)
        _readable(config.key_file, "upload.key_file")
        try:
            ctx.load_cert_chain(str(config.cert_file), str(config.key_file))
        except ssl.SSLError as exc:
            raise ConfigError(f"upload.cert_file/upload.key_file: {config.cert_file} and "
                              f"{config.key_file} are not a matching PEM certificate and "
                              f"unencrypted key: {exc}") from exc
    log.debug("TLS client context: ca=%s, client cert=%s",
              config.ca_file or "system", config.cert_file or "none")
    return ctx
