"""An X.509 certificate's validity period, read from its DER bytes.

The ssl module gives a verified peer's dates (``getpeercert()``), but not
those of a certificate that failed verification, which is exactly the one a
technician needs to see ("expired on ..."). Reading the two dates needs only
a walk down the DER structure (RFC 5280)::

    Certificate ::= SEQUENCE { tbsCertificate SEQUENCE {
        [0] version OPTIONAL, serialNumber INTEGER, signature SEQUENCE,
        issuer SEQUENCE, validity SEQUENCE { notBefore Time, notAfter Time }, ... } ... }

with Time a UTCTime (``YYMMDDHHMMSSZ``, years 1950-2049) or a GeneralizedTime
(``YYYYMMDDHHMMSSZ``). Anything else is a ValueError.
"""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path
from typing import NamedTuple

_SEQUENCE, _UTC_TIME, _GENERALIZED_TIME, _VERSION = 0x30, 0x17, 0x18, 0xA0


class Validity(NamedTuple):
    not_before: datetime.datetime  # UTC
    not_after: datetime.datetime


def _tlv(der: bytes, at: int) -> tuple[int, int, int]:
    """(tag, start of the value, end of the value) of the element at ``at``."""
    if at + 2 > len(der):
        raise ValueError("DER: truncated element")
    tag, length = der[at], der[at + 1]
    start = at + 2
    if length & 0x80:
        count = length & 0x7F
        if not 1 <= count <= 4 or start + count > len(der):
            raise ValueError("DER: bad length")
        length = int.from_bytes(der[start:start + count], "big")
        start += count
    end = start + length
    if end > len(der):
        raise ValueError("DER: element longer than the data")
    return tag, start, end


def _time(tag: int, text: bytes) -> datetime.datetime:
    value = text.decode("ascii")
    if not value.endswith("Z"):
        raise ValueError(f"DER: time {value!r} is not in UTC")
    if tag == _UTC_TIME:
        year = int(value[:2])
        value = f"{1900 + year if year >= 50 else 2000 + year}{value[2:]}"
    elif tag != _GENERALIZED_TIME:
        raise ValueError(f"DER: tag {tag:#x} is not a time")
    return datetime.datetime.strptime(value[:14], "%Y%m%d%H%M%S").replace(
        tzinfo=datetime.UTC)


def validity(der: bytes) -> Validity:
    """The validity period of a DER certificate."""
    tag, start, _ = _tlv(der, 0)
    if tag != _SEQUENCE:
        raise ValueError("DER: not a certificate (no outer SEQUENCE)")
    tag, at, _ = _tlv(der, start)  # tbsCertificate
    if tag != _SEQUENCE:
        raise ValueError("DER: not a certificate (no tbsCertificate)")
    tag, _, end = _tlv(der, at)
    if tag == _VERSION:
        at = end
    for _ in range(3):  # serialNumber, signature, issuer
        _, _, at = _tlv(der, at)
    tag, at, _ = _tlv(der, at)
    if tag != _SEQUENCE:
        raise ValueError("DER: no validity SEQUENCE where expected")
    tag1, s1, e1 = _tlv(der, at)
    tag2, s2, _ = _tlv(der, e1)
    _, _, e2 = _tlv(der, e1)
    return Validity(_time(tag1, der[s1:e1]), _time(tag2, der[s2:e2]))


def pem_validity(path: Path) -> Validity:
    """The validity of the first certificate of a PEM file (ValueError, OSError)."""
    text = path.read_text(encoding="ascii", errors="replace")
    begin = text.find("-----BEGIN CERTIFICATE-----")
    end = text.find("-----END CERTIFICATE-----", begin)
    if begin < 0 or end < 0:
        raise ValueError(f"{path}: no PEM certificate")
    return validity(ssl.PEM_cert_to_DER_cert(text[begin:end + len("-----END CERTIFICATE-----")]))
