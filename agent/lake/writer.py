"""Writing batches into the lake: one Parquet file per batch, kind and day, exactly once.

Python API::

    from agent.lake import Lake

    lake = Lake("lake")                      # creates DIR (0700) if needed
    lake.write(batch, envelope)              # True: written now; False: already there

Exactly once, with any number of receivers (threads or processes, on one host or
sharing one file system) writing the same lake:

- a batch's file is named by its batch id, which depends only on the vehicle and
  its sequence range, so a batch delivered twice maps to the same names;
- before writing a file the writer looks for it (``<batch id>.parquet``), then for
  its id in the metadata of the partition's compacted files. In that order: a
  compaction renames its merged file into place *before* it deletes the per-batch
  files it merged, so a file that is gone was merged, and the second look sees it;
- two receivers writing the same new batch at the same moment both rename an
  identical file onto the same name: one copy;
- a compacted file whose footer cannot be read (damaged by hand, a disk fault) is
  logged once and taken as holding no batch, so receiving goes on; its rows are
  unreadable anyway, and ``bavard lake check`` names it;
- a file appears whole or not at all (:func:`agent.lake.files.write_file`), so the
  sender's acknowledgement, sent after :meth:`Lake.write` returns, means the batch's
  files are on disk; a receiver killed before that leaves at most hidden temporaries
  (``.tmp-*.partial``, removed by ``bavard lake compact`` once an hour old) and the
  sender sends the batch again.

A batch without samples, events or frames writes nothing (there is nothing to
query) and :meth:`Lake.write` says True: it cannot tell a repeat of it.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

from agent.batch import Batch, Envelope
from agent.errors import LakeError
from agent.lake.columns import batch_tables
from agent.lake.files import (
    KEY_BATCHES,
    KEY_IDS,
    KEY_LAYOUT,
    KEY_SIGNALS,
    LAYOUT_VERSION,
    PART_FILE,
    file_metadata,
    ids_of,
    json_bytes,
    parquet_bytes,
    partition_dir,
    write_file,
)
from agent.private_files import make_private_dir

log = logging.getLogger(__name__)

# a per-batch file is small: one row group
BATCH_ROW_GROUP = 1 << 20


class Lake:
    """The lake rooted at ``root`` (see the module docstring)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise LakeError(f"--lake {self.root}: not a directory")
        try:
            make_private_dir(self.root)
        except OSError as exc:
            raise LakeError(f"--lake {self.root}: {exc.strerror or exc}") from None
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise LakeError(f"--lake {self.root}: not writable")
        self._lock = threading.Lock()
        # compacted file -> ((inode, mtime, size), the batch ids it holds)
        self._parts: dict[Path, tuple[tuple[int, int, int], frozenset[str]]] = {}

    def check_vehicle(self, vehicle: str) -> None:
        """LakeError when ``vehicle`` cannot name a partition (a bad batch, not a fault)."""
        partition_dir(self.root, "samples", vehicle, "1970-01-01")

    def write(self, batch: Batch, envelope: Envelope) -> bool:
        """Write the batch's files that the lake does not hold yet; True when it wrote one
        (or the batch has no rows), False when all were there. LakeError when a file
        cannot be written (some may have been: a retry writes the rest)."""
        bid = envelope.batch_id
        tables = batch_tables(batch, bid)
        if not tables:
            return True
        wrote = False
        for (kind, date), table in sorted(tables.items()):
            directory = partition_dir(self.root, kind, envelope.vehicle_id, date)
            path = directory / f"{bid}.parquet"
            if path.exists() or self.compacted_holds(directory, bid):
                continue
            meta = batch_file_metadata(batch, envelope, kind, table.num_rows)
            try:
                write_file(path, parquet_bytes(table, meta, BATCH_ROW_GROUP))
            except OSError as exc:
                raise LakeError(f"{path}: cannot write: {exc.strerror or exc}") from None
            wrote = True
        return wrote

    def compacted_holds(self, directory: Path, bid: str) -> bool:
        """Whether a compacted file of ``directory`` holds batch ``bid``."""
        try:
            names = [e.name for e in os.scandir(directory) if PART_FILE.match(e.name)]
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise LakeError(f"{directory}: cannot list: {exc.strerror or exc}") from None
        return any(bid in self._part_ids(directory / name) for name in names)

    def _part_ids(self, path: Path) -> frozenset[str]:
        try:
            st = path.stat()
        except FileNotFoundError:  # compacted away meanwhile: its successor holds the ids
            return frozenset()
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        with self._lock:
            known = self._parts.get(path)
        if known is not None and known[0] == key:
            return known[1]
        try:
            ids = frozenset(ids_of(file_metadata(path), path))
        except LakeError as exc:  # its rows are unreadable too: receiving goes on
            log.warning("%s; taken as holding no batch (bavard lake check lists it)", exc)
            ids = frozenset()
        with self._lock:
            self._parts[path] = (key, ids)
        return ids


def batch_file_metadata(batch: Batch, envelope: Envelope, kind: str,
                        rows: int) -> dict[bytes, bytes]:
    meta = {
        KEY_LAYOUT: LAYOUT_VERSION.encode(),
        KEY_IDS: json_bytes([envelope.batch_id]),
        KEY_BATCHES: json_bytes([{"id": envelope.batch_id, "seq_first": envelope.seq_first,
                                  "seq_last": envelope.seq_last,
                                  "dbc_fingerprint": envelope.dbc_fingerprint,
                                  "rows": rows}]),
    }
    if kind == "samples" and batch.signals:
        meta[KEY_SIGNALS] = json_bytes(signals_json(batch.signals))
    return meta


def signals_json(signals: dict[Any, Any]) -> list[list[Any]]:
    """The batch's signal metadata as ``[[channel, message, signal, {...}], ...]``."""
    out = []
    for (channel, message, signal), m in sorted(signals.items()):
        out.append([channel, message, signal, {
            "unit": m.unit, "scale": m.scale, "offset": m.offset, "minimum": m.minimum,
            "maximum": m.maximum,
            "choices": None if m.choices is None else sorted(m.choices.items())}])
    return out
