"""Running a batch on engines compiled for static shapes: pad up or split, whichever the measured costs say is cheaper.

A batch of 3 on shapes compiled for batch 1 and 16 can run as one call padded to 16 or as three calls of 1; which is
faster depends on the model and the CPU, so each compiled shape's cost is measured once and the plan minimises the
sum. One sequence length holds the whole batch (the shortest that is cheapest overall).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

Shape = tuple[int, int]  # (batch size, sequence length) of a compiled engine


@dataclass(frozen=True)
class Chunk:
    """Consecutive rows of the batch run in one call on a compiled shape (padded up to it)."""

    rows: int
    shape: Shape


def _cover(rows: int, costs: Mapping[int, float]) -> tuple[float, list[int]]:
    """The cheapest batch sizes (with repeats) whose sum covers `rows`, and their cost; the last may be padded."""
    best = [0.0] + [math.inf] * rows
    choice = [0] * (rows + 1)
    for covered in range(1, rows + 1):
        for batch, cost in costs.items():
            total = best[max(0, covered - batch)] + cost
            if total < best[covered]:
                best[covered], choice[covered] = total, batch
    sizes, left = [], rows
    while left > 0:
        sizes.append(choice[left])
        left = max(0, left - choice[left])
    return best[rows], sorted(sizes, reverse=True)


def consistent(costs: Mapping[Shape, float]) -> dict[Shape, float]:
    """Costs where a shorter sequence never costs more than a longer one at the same batch size: a measurement that a
    busy machine inflated is capped by the longer shape's."""
    return {
        (batch, sequence): min(cost for (other, longer), cost in costs.items() if other == batch and longer >= sequence)
        for batch, sequence in costs
    }


def cheapest_plan(rows: int, length: int, costs: Mapping[Shape, float]) -> list[Chunk]:
    """The cheapest chunks to run `rows` inputs of `length` tokens on the shapes in `costs` (seconds per call).

    Raises ValueError when no compiled sequence length holds `length`.
    """
    costs = consistent(costs)
    sequences = sorted({sequence for _, sequence in costs if sequence >= length})
    if not sequences:
        longest = max((sequence for _, sequence in costs), default=0)
        raise ValueError(f"length {length} exceeds the longest compiled sequence {longest}")
    plans = []
    for sequence in sequences:
        total, sizes = _cover(rows, {batch: cost for (batch, compiled), cost in costs.items() if compiled == sequence})
        plans.append((total, sequence, sizes))
    _, sequence, sizes = min(plans)
    chunks, left = [], rows
    for batch in sizes:
        chunks.append(Chunk(min(batch, left), (batch, sequence)))
        left -= chunks[-1].rows
    return chunks
