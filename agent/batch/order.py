"""The canonical order of a batch's samples: the order :func:`.decoding.decode` returns
them in when the body has no ``order``.

Rows by (timestamp in IEEE totalOrder, group, row); in a row, by column. A sample is
addressed as (group, row, column, index in column).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agent.batch.model import total_order_key

Position = tuple[int, int, int, int]  # (group, row, column, index in column)


def _sort_key(times: list[float]) -> Callable[[float], Any]:
    """Sorting by float is IEEE totalOrder unless there is a NaN or a zero."""
    if any(t != t or t == 0.0 for t in times):
        return total_order_key
    return float


def is_canonical(positions: list[Position], times: list[list[float]]) -> bool:
    """Whether ``positions`` are in the order of :func:`canonical_order`, without making it:
    every row's samples together, by column, and the rows by (timestamp, group, row)."""
    key = _sort_key([t for group_times in times for t in group_times])
    last_row: tuple[Any, int, int] | None = None
    last_col = -1
    for g, r, c, _ in positions:
        if last_row is not None and last_row[1] == g and last_row[2] == r:
            if c <= last_col:
                return False
        else:
            row = (key(times[g][r]), g, r)
            if last_row is not None and not row > last_row:
                return False
            last_row = row
        last_col = c
    return True


def canonical_order(times: list[list[float]], column_rows: list[list[list[int]]]
                    ) -> list[Position]:
    """(group, row, column, index in column) of every sample in the order decode returns
    them: rows by (timestamp in IEEE totalOrder, group, row); in a row, by column."""
    members: list[list[list[Position]]] = []
    for g, group_times in enumerate(times):
        rows: list[list[Position]] = [[] for _ in group_times]
        for c, col_rows in enumerate(column_rows[g]):
            for k, r in enumerate(col_rows):
                rows[r].append((g, r, c, k))
        members.append(rows)
    key = _sort_key([t for group_times in times for t in group_times])
    keyed = sorted((key(ts), g, r)
                   for g, group_times in enumerate(times) for r, ts in enumerate(group_times))
    return [pos for _, g, r in keyed for pos in members[g][r]]
