"""An engine double for serving tests: wraps a real engine, records batch sizes, fails on demand, can be held."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from service.runtime.card import ModelCard
from service.runtime.config import EngineChoice
from service.runtime.engines import Engine, EngineOptions, load_engine


class RecordingEngine:
    """Wraps a real engine, records the batch size of every call, can be told to fail the next one, and can be held.

    While `gate` is cleared, calls wait for it (at most 30 s); every call takes at least `delay_s`.
    """

    def __init__(self, inner: Engine) -> None:
        self.inner = inner
        self.name = inner.name
        self.calls: list[int] = []
        self.fail_next = False
        self.gate = threading.Event()
        self.gate.set()
        self.delay_s = 0.0

    @property
    def input_names(self) -> list[str]:
        return self.inner.input_names

    def run(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        self.calls.append(len(next(iter(inputs.values()))))
        assert self.gate.wait(timeout=30), "the engine's gate stayed closed for 30 s"
        time.sleep(self.delay_s)  # simulated engine work
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("injected engine failure")
        return self.inner.run(inputs)

    def info(self) -> dict[str, Any]:
        return self.inner.info()


class RecordingFactory:
    """An engine factory that wraps every engine it loads in a RecordingEngine, kept in load order."""

    def __init__(self) -> None:
        self.engines: list[RecordingEngine] = []

    def __call__(self, choice: EngineChoice, model_dir: Path, card: ModelCard, options: EngineOptions) -> Engine:
        engine = RecordingEngine(load_engine(choice, model_dir, card, options))
        self.engines.append(engine)
        return engine
