"""The ``[upload]`` and ``[vehicle]`` settings (parsed by agent.config)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from agent.batch.limits import MAX_RECORDS
from agent.ranges import DAY, Range, TiB, show
from agent.store.settings import Kind
from agent.upload.transport import TransportConfig

MiB = 1024 * 1024
CLASSES = {"events": Kind.EVENT, "samples": Kind.SAMPLE, "frames": Kind.FRAME}


@dataclass(frozen=True)
class UploadConfig:
    """Where batches go, how big they are, how failures are retried, and what a metered
    (cellular) link may carry. Sizes in bytes, times in seconds."""

    url: str = ""  # https://..., http://... (loopback tests), mqtts://..., mqtt://...
    purpose: str = "fleet"  # what it may receive (agent.privacy.purposes)
    topic: str = "bavard/{vehicle}/batch"
    timeout: float = 30.0
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    max_batch_bytes: int = 4 * MiB
    mqtt_version: int = 5
    client_id: str = ""
    batch_items: int = 50_000  # at most this many records per batch ...
    batch_seconds: float = 60.0  # ... spanning at most this much of their own time
    linger: float = 30.0  # once caught up, samples wait this long to fill a batch
    retry_initial: float = 1.0  # first backoff cap; full jitter below it
    retry_max: float = 300.0  # backoff cap
    require_link: bool = True  # false: no connectivity gate (a box whose links are unclassed)
    metered_classes: str = "events"  # "events", "samples" or "frames": the lowest class sent
    metered_daily_bytes: int | None = 5 * MiB  # None (false in TOML) = no limit
    metered_monthly_bytes: int | None = 100 * MiB
    interfaces: tuple[tuple[str, str], ...] = field(default=())  # (glob, class) ahead of defaults

    def transport(self) -> TransportConfig:
        return TransportConfig(url=self.url, topic=self.topic, timeout=self.timeout,
                               ca_file=self.ca_file, cert_file=self.cert_file,
                               key_file=self.key_file, max_batch_bytes=self.max_batch_bytes,
                               mqtt_version=self.mqtt_version, client_id=self.client_id)

    @property
    def metered_min_kind(self) -> Kind:
        return CLASSES[self.metered_classes]

    def problems(self) -> list[str]:
        out = []
        out.extend(_url_problems(self.url))
        if self.mqtt_version not in (5, 311):
            out.append(f"mqtt_version: must be 5 or 311, got {self.mqtt_version}")
        if "{vehicle}" not in self.topic:
            out.append(f"topic: must contain {{vehicle}}, got {self.topic!r}")
        if self.metered_classes not in CLASSES:
            out.append(f"metered_classes: must be one of {', '.join(CLASSES)}, "
                       f"got {self.metered_classes!r}")
        if (self.cert_file is None) != (self.key_file is None):
            out.append("cert_file, key_file: give both (mTLS) or neither")
        for name, allowed in RANGES.items():
            value = getattr(self, name)
            if value is None and name in OPTIONAL:
                continue
            problem = allowed.problem(value, " (or false for no limit)" if name in OPTIONAL
                                      else "")
            if problem is not None:
                out.append(f"{name}: {problem}")
        if (self.retry_initial in RANGES["retry_initial"]
                and self.retry_max in RANGES["retry_max"]
                and self.retry_initial > self.retry_max):
            out.append(f"retry_initial: must be at most retry_max ({show(self.retry_max)}), "
                       f"got {show(self.retry_initial)}")
        return out


# The range of every number of [upload] (docs/config.md lists them).
RANGES = {
    "timeout": Range(0, 3_600, open_low=True),
    "max_batch_bytes": Range(1, 256 * MiB),
    "batch_items": Range(1, MAX_RECORDS),
    "batch_seconds": Range(0, DAY, open_low=True),
    "linger": Range(0, DAY),
    "retry_initial": Range(0, DAY, open_low=True),
    "retry_max": Range(0, DAY, open_low=True),
    "metered_daily_bytes": Range(0, TiB),
    "metered_monthly_bytes": Range(0, TiB),
}
OPTIONAL = frozenset({"metered_daily_bytes", "metered_monthly_bytes"})
SCHEMES = ("https", "http", "mqtts", "mqtt")


def _url_problems(url: str) -> list[str]:
    """The scheme, host and port of ``upload.url`` (the transports check them again, with
    the rest, when they are built)."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # an unclosed [IPv6 address
        return [f"url: {url!r} is not a URL: {exc}"]
    if "://" not in url or parts.scheme not in SCHEMES:
        return [f"url: expected https://, http://, mqtts:// or mqtt://, got {url!r}"]
    out = []
    if not parts.hostname:
        out.append(f"url: no host in {url!r}")
    try:
        port = parts.port
    except ValueError:  # not digits, or over 65535
        port = -1
    if port is not None and port not in PORTS:
        shown = parts.netloc.rpartition(":")[2]
        out.append(f"url: the port must be {PORTS.rule}, got {shown!r} in {url!r}")
    return out


PORTS = Range(1, 65_535)


@dataclass(frozen=True)
class VehicleConfig:
    """Who the data is about. Only a pseudonym of the VIN ever leaves the box: an HMAC
    keyed with ``id_secret_file`` (by default a random per-box secret created in the state
    directory on first start, so one box always gives the same pseudonym)."""

    vin: str = ""  # "" = unknown: the pseudonym is then still stable per box
    id_secret_file: Path | None = None

    def problems(self) -> list[str]:
        if self.vin and (len(self.vin.strip()) != 17 or not self.vin.strip().isalnum()):
            return [f"vin: expected 17 letters and digits, got {self.vin!r}"]
        return []
