"""The batch wire format: versioned header, msgpack envelope, columnar msgpack body, zstd.

Byte by byte in ``docs/batch-format.md``; in short::

    "BVRD" | version u8 | compression u8 | envelope length u32 BE
    | envelope (msgpack map, never compressed: batch id, vehicle, sequence and time range)
    | body (msgpack map, zstd-compressed: the samples in columns, events, raw frames)
    | CRC-32 of everything before it, u32 BE

Samples are grouped per (channel, message) into rows (one row per timestamp,
typically one frame) and per (signal, unit) into columns with a presence
bitmap over the rows. Timestamps are integer microseconds, the first one
absolute, then the differences to the previous one minus the group's typical
step. Values: ints as deltas; floats that are ``raw * scale + offset`` of an
integer raw as raw deltas plus the scale and offset; anything else as itself.
Every reconstruction is checked while encoding, value by value, so decoding
gives back exactly what was encoded, down to NaN bits, ``-0.0`` and int
versus float.

:func:`decode` trusts nothing: whatever the bytes, it returns a Batch or
raises :class:`BatchFormatError` saying what is wrong and where.

This module is the public face; the work is done in:

* :mod:`.container`: header, envelope, CRC, zstd, msgpack (:func:`read_envelope`)
* :mod:`.ids`: batch id, pseudonymous vehicle id, DBC fingerprint
* :mod:`.encoding` and :mod:`.decoding`: the body, built and read back
* :mod:`.columns`: one signal's column (values, exceptions, labels, flags)
* :mod:`.timestamps`: timestamp columns (``time_us`` step deltas, ``time_s``)
* :mod:`.tables`: events, raw frames, signal metadata
* :mod:`.order`: the canonical order of the samples
* :mod:`.exact`: integer bounds and bit-exact float checks
* :mod:`.validate`: checked reading of untrusted msgpack values
* :mod:`.limits`: how big a batch may be, and what its msgpack may cost unpacked,
  checked before anything is built
* :mod:`.wire`: the HTTP content type and header, the MQTT user property
"""

from __future__ import annotations

from agent.batch.container import FORMAT_VERSION, Envelope, read_envelope
from agent.batch.decoding import decode
from agent.batch.encoding import encode
from agent.batch.ids import batch_id, dbc_fingerprint, pseudonymous_vehicle_id
from agent.errors import BatchFormatError

__all__ = [
    "FORMAT_VERSION",
    "BatchFormatError",
    "Envelope",
    "batch_id",
    "dbc_fingerprint",
    "decode",
    "encode",
    "pseudonymous_vehicle_id",
    "read_envelope",
]
