"""Block-range slicing for bounded maintenance batches."""

from __future__ import annotations

import pytest

from events_pipeline.common.heap_ranges import block_ranges


def test_block_ranges_cover_everything_and_end_open():
    assert list(block_ranges(5, 2)) == [("(0,0)", "(2,0)"), ("(2,0)", "(4,0)"), ("(4,0)", "(4294967295,0)")]


def test_block_ranges_empty_table_still_one_slice():
    assert list(block_ranges(0, 100)) == [("(0,0)", "(4294967295,0)")]


def test_block_ranges_rejects_zero():
    with pytest.raises(ValueError, match="batch_blocks"):
        list(block_ranges(10, 0))
