"""The identifiers in a batch: its id, the pseudonymous vehicle id and the DBC fingerprint."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from os import PathLike
from pathlib import Path
from typing import Any

from agent.batch.exact import UINT64_MAX
from agent.errors import BatchFormatError, BavardError

VEHICLE_ID_BYTES = 16  # truncated HMAC-SHA256: 128 bits, 32 hex digits
BATCH_ID_BYTES = 16


def batch_id(vehicle_id: str, seq_first: int, seq_last: int) -> str:
    """32 hex digits: the first 16 bytes of SHA-256 over ``"bavard-batch" 0x00 vehicle_id
    0x00 seq_first (u64 BE) seq_last (u64 BE)``. The same records give the same id on
    every retry, so the receiver can drop duplicates."""
    check_seq(seq_first, seq_last)
    digest = hashlib.sha256(b"bavard-batch\0" + vehicle_id.encode("utf-8") + b"\0"
                            + seq_first.to_bytes(8, "big") + seq_last.to_bytes(8, "big"))
    return digest.digest()[:BATCH_ID_BYTES].hex()


def pseudonymous_vehicle_id(vin: str, secret: bytes) -> str:
    """32 hex digits: the first 16 bytes of HMAC-SHA256(key=secret,
    msg="bavard-vehicle" 0x00 VIN), the VIN stripped of surrounding blanks and upper-cased.

    Without ``secret`` (per fleet or per owner, kept on the box) nobody can link the id to
    the VIN, not even by trying every VIN; with it, the same vehicle always gets the same id.
    """
    if not isinstance(secret, bytes | bytearray) or len(secret) < 16:
        raise ValueError("the pseudonym secret must be at least 16 bytes")
    normalized = vin.strip().upper()
    if not normalized:
        raise ValueError("empty VIN")
    mac = hmac.new(bytes(secret), b"bavard-vehicle\0" + normalized.encode("utf-8"),
                   hashlib.sha256)
    return mac.digest()[:VEHICLE_ID_BYTES].hex()


def dbc_fingerprint(paths: Iterable[str | PathLike[str]]) -> str:
    """64 hex digits: SHA-256 over the sorted SHA-256 digests (32 bytes each) of the
    files' bytes. Independent of the order and names of the files; any changed byte
    (even a comment or a line ending) changes it."""
    digests = []
    for path in paths:
        try:
            digests.append(hashlib.sha256(Path(path).read_bytes()).digest())
        except OSError as exc:
            raise BavardError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return hashlib.sha256(b"".join(sorted(digests))).hexdigest()


def check_seq(seq_first: Any, seq_last: Any) -> None:
    """BatchFormatError unless ``seq_first``..``seq_last`` is a range of u64s."""
    for name, value in (("seq_first", seq_first), ("seq_last", seq_last)):
        if type(value) is not int or not 0 <= value <= UINT64_MAX:
            raise BatchFormatError(f"{name} must be an int in 0..2**64-1, not {value!r}")
    if seq_first > seq_last:
        raise BatchFormatError(f"seq_first {seq_first} > seq_last {seq_last}")
