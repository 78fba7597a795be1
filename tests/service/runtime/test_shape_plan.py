"""The cheapest way to run a batch on compiled shapes: pad up, or split into smaller calls."""

from __future__ import annotations

import pytest

from service.runtime.engines.shape_plan import Chunk, cheapest_plan, consistent

# one call's seconds per compiled (batch, sequence): batch 16 costs ten singles, longer sequences cost more
COSTS = {(1, 32): 1.0, (16, 32): 10.0, (1, 128): 4.0, (16, 128): 40.0}


def test_a_small_batch_splits_and_a_large_one_pads() -> None:
    assert cheapest_plan(3, 20, COSTS) == [Chunk(1, (1, 32))] * 3
    assert cheapest_plan(14, 20, COSTS) == [Chunk(14, (16, 32))]
    assert cheapest_plan(17, 20, COSTS) == [Chunk(16, (16, 32)), Chunk(1, (1, 32))]


def test_the_sequence_holds_the_longest_input() -> None:
    assert cheapest_plan(2, 100, COSTS) == [Chunk(1, (1, 128))] * 2
    with pytest.raises(ValueError, match="exceeds the longest compiled sequence 128"):
        cheapest_plan(1, 129, COSTS)


def test_a_longer_sequence_is_used_when_it_is_cheaper() -> None:
    costs = {(1, 32): 1.0, (16, 128): 12.0}  # batch 16 is compiled only at 128 so far
    assert cheapest_plan(16, 20, costs) == [Chunk(16, (16, 128))]
    assert cheapest_plan(8, 20, costs) == [Chunk(1, (1, 32))] * 8


def test_an_inflated_measurement_of_a_shorter_sequence_is_capped() -> None:
    inflated = {(1, 32): 4.0, (16, 32): 500.0, (16, 128): 40.0, (1, 128): 8.0}
    assert consistent(inflated)[16, 32] == 40.0
    assert cheapest_plan(16, 20, inflated) == [Chunk(16, (16, 32))]  # 16 calls of 1 would cost 64
