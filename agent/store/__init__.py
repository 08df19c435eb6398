"""The durable store-and-forward buffer (SQLite, WAL) between the pipeline and the uploader.

See docs/store.md and agent.store.buffer.
"""

from agent.errors import StoreError
from agent.store.buffer import Store, StoredBatch
from agent.store.settings import DB_NAME, DEFAULT_STATE_DIR, Kind, StoreConfig
from agent.store.stats import BufferStats, ClassStats, read_stats_file
from agent.store.writer import CommitInfo

__all__ = [
    "DB_NAME",
    "DEFAULT_STATE_DIR",
    "BufferStats",
    "ClassStats",
    "CommitInfo",
    "Kind",
    "Store",
    "StoreConfig",
    "StoreError",
    "StoredBatch",
    "read_stats_file",
]
