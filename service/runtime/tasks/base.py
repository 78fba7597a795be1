"""The task interface: preprocess (validate + tokenize) -> collate (pad a batch) -> engine -> answers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class PredictOptions:
    """Per-request options for postprocessing."""

    top_k: int | None = None
    max_answer_length: int | None = None  # question answering: longest answer in tokens (default: the card's)
    dimensions: int | None = None  # sentence embedding: keep the vector's first n values (default: all)


class Task(Protocol):
    """Turns request inputs into engine batches and engine outputs into answers.

    Items are task-defined (a tokenized input plus whatever postprocessing needs), one per engine row; the batcher may
    put the items of several requests into one batch. Most tasks make one item per input; question answering makes
    one per window of a long context and merges them back in `answers`.
    """

    def preprocess(self, inputs: Sequence[object]) -> list[Any]:
        """Validate and tokenize request inputs into one item each; raises BadInput."""
        ...

    def tokens(self, item: Any) -> int:
        """The item's length in tokens (its engine row before padding)."""
        ...

    def collate(self, items: Sequence[Any]) -> dict[str, np.ndarray]:
        """Pad items to the longest into int64 arrays keyed by engine input name."""
        ...

    def answers(
        self, items: Sequence[Any], outputs: Sequence[Sequence[np.ndarray]], options: PredictOptions
    ) -> list[dict[str, Any]]:
        """One answer per request input, in order, from the items of one request and each item's engine rows."""
        ...

    def example_inputs(self) -> list[object]:
        """Inputs for the warm-up batch."""
        ...
