"""The plain pyarrow baseline of scripts/bench_receive.py: what a competent pyarrow user
writes to turn received batches into Parquet, without bavard's receiver.

For each encoded batch: :func:`agent.batch.decode`, one ``pa.table`` from the
samples' columns (``zip(*samples)``), ``pq.write_table(..., compression="zstd")``
to ``<batch id>.parquet`` in one directory. One process, no HTTP, no check of the
batch id against the transport's, no dedupe look-up, no temporary file, no fsync,
no ``raw`` column: less than the receiver does, which is what a baseline is for.

The columns are the lake's sample columns but ``raw`` and ``text``: batch_id,
timestamp (``timestamp[us, UTC]``, the float seconds rounded to the microsecond),
channel, message, signal, value (float64), unit, label, flags.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from agent.batch import decode
from agent.frames import Sample

TIMESTAMP = pa.timestamp("us", tz="UTC")


def samples_table(batch_id: str, samples: Sequence[Sample]) -> pa.Table:
    """The samples of one batch as an Arrow table (the baseline's columns)."""
    columns: Sequence[Sequence[Any]] = (list(zip(*samples, strict=True)) if samples
                                         else [() for _ in Sample._fields])
    ts, channel, message, signal, value, unit, label, flags = columns
    return pa.table({
        "batch_id": pa.array([batch_id] * len(samples), pa.string()),
        "timestamp": pa.array([round(t * 1e6) for t in ts], pa.int64()).cast(TIMESTAMP),
        "channel": pa.array(channel, pa.string()),
        "message": pa.array(message, pa.string()),
        "signal": pa.array(signal, pa.string()),
        "value": pa.array(value, pa.float64()),
        "unit": pa.array(unit, pa.string()),
        "label": pa.array(label, pa.string()),
        "flags": pa.array(flags, pa.int32()),
    })


def write_batches(payloads: Sequence[bytes], directory: Path) -> None:
    """Each encoded batch as ``directory/<batch id>.parquet`` (the timed baseline)."""
    for payload in payloads:
        batch = decode(payload)
        bid = batch.batch_id
        pq.write_table(samples_table(bid, batch.samples), directory / f"{bid}.parquet",
                       compression="zstd")
