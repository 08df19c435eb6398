"""The fleet side's data lake: accepted batches as Parquet files that DuckDB, Spark,
Trino or pandas read as they are (docs/lake.md).

* :mod:`.columns`: a batch as Arrow tables, one per kind (samples, events, frames)
  and UTC day
* :mod:`.files`: the Hive-style layout, files written whole or not at all, their
  key-value metadata (which batches a file holds)
* :mod:`.writer`: :class:`Lake` (``write(batch, envelope)``), exactly once with any
  number of receivers
* :mod:`.compact`: a day's per-batch files merged per vehicle (``bavard lake compact``)
* :mod:`.read`: what the lake holds (``batch_ids``, ``files``)

pyarrow is needed here and only here (the extra ``bavard[lake]``); the vehicle never
imports this package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.lake.writer import Lake

__all__ = ["Lake"]


def __getattr__(name: str) -> Any:
    if name == "Lake":
        from agent.lake.writer import Lake

        return Lake
    raise AttributeError(name)
