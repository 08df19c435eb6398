"""The terminal sparkline of ``bavard status`` and ``bavard live``."""

from __future__ import annotations

import math

import pytest

from agent.cli.sparkline import BLOCKS, sparkline


def test_lowest_to_highest_spans_every_block() -> None:
    assert sparkline(range(8)) == BLOCKS
    assert sparkline([0, 3, 7, 7, 2]) == "▁▄██▃"
    assert sparkline([-5.0, 5.0]) == "▁█"


def test_a_flat_series_is_the_middle_block_and_all_zeros_the_lowest() -> None:
    assert sparkline([5, 5, 5]) == "▄▄▄"
    assert sparkline([0, 0]) == "▁▁"
    assert sparkline([]) == ""


def test_width_keeps_the_newest_values_or_pads_on_the_left() -> None:
    assert sparkline(range(20), width=8) == BLOCKS  # the last 8, scaled among themselves
    assert sparkline([1, 2], width=5) == "   ▁█"
    assert sparkline([1, 2], width=0) == ""
    with pytest.raises(ValueError, match="width"):
        sparkline([1], width=-1)


def test_values_that_are_not_finite_are_blanks() -> None:
    assert sparkline([math.nan, 1, 2, math.inf]) == " ▁█ "
    assert sparkline([math.nan]) == " "
