"""The task interface: preprocess (validate + tokenize) -> collate (pad a batch) -> engine -> postprocess."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


class InputError(ValueError):
    """A request input the task cannot serve; the message says which input and why (sent back with 422)."""


@dataclass(frozen=True)
class PredictOptions:
    """Per-request options for postprocessing."""

    top_k: int | None = None


class Task(Protocol):
    """Turns request inputs into engine batches and engine outputs into answers.

    Items are task-defined (a tokenized input plus whatever postprocessing needs); the batcher may put the items of
    several requests into one batch.
    """

    name: str

    def preprocess(self, inputs: Sequence[object]) -> list[Any]:
        """Validate and tokenize request inputs into one item each; raises InputError."""
        ...

    def collate(self, items: Sequence[Any]) -> dict[str, np.ndarray]:
        """Pad items to the longest into int64 arrays keyed by engine input name."""
        ...

    def postprocess(self, item: Any, outputs: Sequence[np.ndarray], options: PredictOptions) -> dict[str, Any]:
        """The answer for one item from its rows of the engine outputs."""
        ...

    def example_inputs(self) -> list[object]:
        """Inputs for the warm-up batch."""
        ...
