"""The receiver's tables (``DIR/receiver.sqlite``, SQLite in WAL mode).

::

    batch        one row per stored batch: batch_id PRIMARY KEY (the dedupe key),
                 vehicle, seq_first, seq_last, ts_first, ts_last, the item counts
                 (samples, events, frames, signals), bytes (encoded size),
                 dbc_fingerprint, received_at (receiver wall clock), transport
                 (http, https, mqtt, mqtts)
    sample       one row per sample: batch_id, vehicle, ts, channel, message, signal,
                 value + value_type (int, float, bool, str), unit, label, flags
    event        batch_id, vehicle, ts, channel, kind, detail, priority
    frame        batch_id, vehicle, ts, channel, arbitration_id, is_extended, is_fd, data
    signal_meta  what each batch said about its signals: vehicle, dbc_fingerprint,
                 channel, message, signal, unit, scale, offset, minimum, maximum,
                 choices (JSON [[raw, label], ...]), batch_id; kept per batch (a few
                 dozen rows) so that every batch reads back whole
    counter      (vehicle, name) -> value; names: received, stored, duplicates,
                 invalid; vehicle '' for batches too broken to name theirs

Rows of a batch keep its order (rowid), so reading them back by rowid gives
the batch's own sequence. Columns that may hold NaN, ``-0.0`` or integers
beyond int64 have no declared type (so no affinity: a type name such as
``NUMBER`` or ``REAL`` would turn ``3.0`` into ``3`` and ``-0.0`` into ``0``);
:mod:`agent.receiver.values` says how they are written. ``PRAGMA user_version``
is the schema version: a file of another version is refused rather than guessed at.
"""

from __future__ import annotations

SCHEMA_VERSION = 1
DB_NAME = "receiver.sqlite"
COUNTER_NAMES = ("received", "stored", "duplicates", "invalid")

DDL = f"""
CREATE TABLE batch (
    batch_id        TEXT PRIMARY KEY,
    vehicle         TEXT NOT NULL,
    seq_first       NOT NULL,
    seq_last        NOT NULL,
    ts_first,
    ts_last,
    samples         INTEGER NOT NULL,
    events          INTEGER NOT NULL,
    frames          INTEGER NOT NULL,
    signals         INTEGER NOT NULL,
    bytes           INTEGER NOT NULL,
    dbc_fingerprint TEXT NOT NULL,
    received_at     REAL NOT NULL,
    transport       TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX batch_by_vehicle ON batch (vehicle, seq_first);
CREATE TABLE sample (
    batch_id   TEXT NOT NULL,
    vehicle    TEXT NOT NULL,
    ts,
    channel    TEXT NOT NULL,
    message    TEXT NOT NULL,
    signal     TEXT NOT NULL,
    value,
    value_type TEXT NOT NULL,
    unit       TEXT NOT NULL,
    label      TEXT,
    flags      NOT NULL
);
CREATE INDEX sample_by_batch ON sample (batch_id);
CREATE INDEX sample_by_signal ON sample (vehicle, channel, message, signal, ts);
CREATE TABLE event (
    batch_id TEXT NOT NULL,
    vehicle  TEXT NOT NULL,
    ts,
    channel  TEXT NOT NULL,
    kind     TEXT NOT NULL,
    detail   TEXT NOT NULL,
    priority NOT NULL
);
CREATE INDEX event_by_batch ON event (batch_id);
CREATE TABLE frame (
    batch_id       TEXT NOT NULL,
    vehicle        TEXT NOT NULL,
    ts,
    channel        TEXT NOT NULL,
    arbitration_id INTEGER NOT NULL,
    is_extended    INTEGER NOT NULL,
    is_fd          INTEGER NOT NULL,
    data           BLOB NOT NULL
);
CREATE INDEX frame_by_batch ON frame (batch_id);
CREATE TABLE signal_meta (
    vehicle         TEXT NOT NULL,
    dbc_fingerprint TEXT NOT NULL,
    channel         TEXT NOT NULL,
    message         TEXT NOT NULL,
    signal          TEXT NOT NULL,
    unit            TEXT NOT NULL,
    scale           NOT NULL,
    offset          NOT NULL,
    minimum,
    maximum,
    choices         TEXT,
    batch_id        TEXT NOT NULL,
    UNIQUE (batch_id, channel, message, signal)
);
CREATE INDEX signal_meta_by_vehicle ON signal_meta (vehicle, channel, message, signal);
CREATE TABLE counter (
    vehicle TEXT NOT NULL,
    name    TEXT NOT NULL,
    value   INTEGER NOT NULL,
    PRIMARY KEY (vehicle, name)
) WITHOUT ROWID;
PRAGMA user_version = {SCHEMA_VERSION};
"""
