"""What every inference engine offers the server."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class EngineOptions:
    """Engine settings derived from an endpoint's config and its model card."""

    max_length: int
    max_batch_size: int = 16
    threads: int | None = None
    sequence_buckets: tuple[int, ...] | None = None
    batch_buckets: tuple[int, ...] | None = None


class Engine(Protocol):
    """Runs an ONNX encoder on int64 inputs of shape [batch, sequence].

    `run` returns the model outputs in ONNX output order with exactly the input's batch rows. Sequence axes of the
    outputs may be longer than the input's (an engine may pad); positions past the input are padding.
    """

    name: str

    @property
    def input_names(self) -> list[str]:
        """ONNX input names the engine expects."""
        ...

    def run(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Run one batch."""
        ...

    def info(self) -> dict[str, Any]:
        """Facts worth showing in /v1/models, e.g. threads or DeepSparse's fraction of supported ops."""
        ...


@runtime_checkable
class DeferredCompilation(Protocol):
    """An engine that serves before all of its shapes are compiled, and compiles the rest when asked."""

    def compile_next(self) -> bool:
        """Compile one more shape (blocking); returns whether more are pending."""
        ...
