"""Upload batches: the model (:mod:`.model`) and its versioned wire format (:mod:`.codec`,
documented byte by byte in ``docs/batch-format.md``)."""

from agent.batch.codec import (
    FORMAT_VERSION,
    BatchFormatError,
    Envelope,
    batch_id,
    dbc_fingerprint,
    decode,
    encode,
    pseudonymous_vehicle_id,
    read_envelope,
)
from agent.batch.model import Batch, SignalKey, SignalMeta, signal_metadata

__all__ = [
    "FORMAT_VERSION",
    "Batch",
    "BatchFormatError",
    "Envelope",
    "SignalKey",
    "SignalMeta",
    "batch_id",
    "dbc_fingerprint",
    "decode",
    "encode",
    "pseudonymous_vehicle_id",
    "read_envelope",
    "signal_metadata",
]
