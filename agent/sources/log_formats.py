"""The CAN log formats bavard reads and writes, by file name ending.

One table for the replay source (:mod:`agent.sources.replay`) and the
simulator's log output (:mod:`agent.sources.simulator.output`), so that
every log ``bavard simulate -o`` writes reads back with ``bavard decode``.
"""

from __future__ import annotations

#: file name ending (lower-case, without ".gz") -> format
LOG_SUFFIXES: dict[str, str] = {
    ".log": "candump",
    ".candump": "candump",
    ".txt": "candump",
    ".asc": "asc",
    ".blf": "blf",
    ".trc": "trc",
}
