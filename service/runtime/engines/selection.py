"""`engine: auto` by measured speed: the candidate engines timed on one shape, interleaved, and the faster kept; and
the record of how an engine was chosen, shown with its info (so in /v1/models).

The shape is the one every candidate can run at once, without compiling more (DeepSparse compiles its other shapes
after start-up): the smallest batch bucket at the longest sequence. Each engine is timed in a block of its own calls,
DeepSparse first: ONNX Runtime's threads spin after its calls, holding the cores, so calls alternating with its ran
DeepSparse 2.3x slower (ner at batch 1 x 128: 121 against 283 items/s alone), enough to pick the slower engine.
Each engine's speed is its fastest call: a call the machine's other work interrupted says nothing of the engine, and
DeepSparse, whose threads wait for each other, loses far more to such interruptions than ONNX Runtime (with a
benchmark client starting beside the server, medians picked ONNX Runtime for the sentiment model).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from service.runtime.engines.base import DeferredCompilation, Engine

MEASURE_CALLS = 5
"""Calls per engine after one warm-up call each, unless the budget runs out first."""
MEASURE_BUDGET_S = 1.0
"""Longest time the measured calls of all engines may take together (one round always runs)."""


def dummy_batch(input_names: list[str], batch: int, length: int) -> dict[str, np.ndarray]:
    """A full batch of one repeated token (speed does not depend on which)."""
    return {name: np.zeros((batch, length), dtype=np.int64) if name == "token_type_ids" else
            np.ones((batch, length), dtype=np.int64) for name in input_names}


def measure(
    engines: Mapping[str, Engine], batch: int, length: int, calls: int = MEASURE_CALLS,
    budget_s: float = MEASURE_BUDGET_S,
) -> dict[str, float]:
    """Items/s of each engine on a [batch, length] batch, one engine after another in the given order: a warm-up
    call, then `calls` calls or fewer once its share of `budget_s` has passed (at least one); from the fastest call."""
    rates: dict[str, float] = {}
    for name, engine in engines.items():
        inputs = dummy_batch(engine.input_names, batch, length)
        engine.run(inputs)
        seconds: list[float] = []
        deadline = time.perf_counter() + budget_s / len(engines)
        for _ in range(calls):
            started = time.perf_counter()
            engine.run(inputs)
            seconds.append(time.perf_counter() - started)
            if time.perf_counter() >= deadline:
                break
        rates[name] = batch / min(seconds)
    return rates


def faster(items_per_second: Mapping[str, float]) -> str:
    """The engine that ran the most items per second."""
    return max(items_per_second, key=lambda name: items_per_second[name])


class ChosenEngine:
    """An engine with the record of how it was chosen (``selection`` in its info)."""

    def __init__(self, engine: Engine, selection: dict[str, Any]) -> None:
        self.engine = engine
        self.name = engine.name
        self.selection = selection

    @property
    def input_names(self) -> list[str]:
        """The engine's ONNX input names."""
        return self.engine.input_names

    def run(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Run one batch on the engine."""
        return self.engine.run(inputs)

    def info(self) -> dict[str, Any]:
        """The engine's info and how it was chosen."""
        return {**self.engine.info(), "selection": self.selection}


class ChosenDeferredEngine(ChosenEngine):
    """A chosen engine that compiles more shapes after start-up (DeepSparse)."""

    def compile_next(self) -> bool:
        """Compile the engine's next pending shape; returns whether more are pending."""
        engine = self.engine
        assert isinstance(engine, DeferredCompilation)
        return engine.compile_next()


def chosen(engine: Engine, selection: dict[str, Any]) -> ChosenEngine:
    """The engine with its selection record, still offering deferred compilation when it has it."""
    if isinstance(engine, DeferredCompilation):
        return ChosenDeferredEngine(engine, selection)
    return ChosenEngine(engine, selection)
