"""`engine: auto` by measured speed: the engines timed one after another, the faster kept, the numbers in the
engine's info; an explicit engine, or auto with one usable engine, loads without measuring."""

from __future__ import annotations

import gc
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.runtime.card import load_card
from service.runtime.config import EngineChoice
from service.runtime.engines import ENGINES, DeferredCompilation, Engine, EngineOptions, load_engine
from service.runtime.engines import registry as engine_registry
from service.runtime.engines.deepsparse_engine import deepsparse_support
from service.runtime.engines.registry import EngineLoader
from service.runtime.engines.selection import chosen, dummy_batch, faster, measure

DEEPSPARSE_USABLE, DEEPSPARSE_REASON = deepsparse_support()
needs_deepsparse = pytest.mark.skipif(not DEEPSPARSE_USABLE, reason=DEEPSPARSE_REASON)


class FakeEngine:
    """Takes `seconds` a call and logs its calls (name and batch shape) in a shared list."""

    def __init__(self, name: str, seconds: float, log: list[tuple[str, tuple[int, ...]]]) -> None:
        self.name, self.seconds, self.log = name, seconds, log

    @property
    def input_names(self) -> list[str]:
        return ["input_ids", "attention_mask"]

    def run(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        self.log.append((self.name, inputs["input_ids"].shape))
        time.sleep(self.seconds)
        return [np.zeros((len(inputs["input_ids"]), 2), dtype=np.float32)]

    def info(self) -> dict[str, Any]:
        return {"fake": True}


def test_the_faster_of_two_engines_is_chosen_from_a_block_of_calls_each() -> None:
    log: list[tuple[str, tuple[int, ...]]] = []
    engines = {"slow": FakeEngine("slow", 0.02, log), "quick": FakeEngine("quick", 0.002, log)}
    rates = measure(engines, batch=4, length=32, calls=3, budget_s=10)
    assert faster(rates) == "quick"
    assert rates["slow"] == pytest.approx(4 / 0.02, rel=0.5) and rates["quick"] > 2 * rates["slow"]
    assert [name for name, _ in log] == ["slow"] * 4 + ["quick"] * 4  # a warm-up call each, then 3 calls, in turn
    assert {shape for _, shape in log} == {(4, 32)}


def test_each_engine_stops_after_the_call_that_spends_its_share_of_the_budget() -> None:
    log: list[tuple[str, tuple[int, ...]]] = []
    engines = {"a": FakeEngine("a", 0.001, log), "b": FakeEngine("b", 0.001, log)}
    measure(engines, batch=1, length=8, calls=5, budget_s=0)
    assert [name for name, _ in log] == ["a", "a", "b", "b"]  # warm-up, then the one call always run


def test_the_dummy_batch_fits_the_inputs() -> None:
    batch = dummy_batch(["input_ids", "attention_mask", "token_type_ids"], 2, 5)
    assert {name: (value.shape, int(value.sum())) for name, value in batch.items()} == {
        "input_ids": ((2, 5), 10), "attention_mask": ((2, 5), 10), "token_type_ids": ((2, 5), 0)
    }


def test_a_chosen_engine_keeps_deferred_compilation_only_when_it_has_it() -> None:
    class Deferred(FakeEngine):
        def compile_next(self) -> bool:
            return False

    plain = chosen(FakeEngine("x", 0, []), {"configured": "x", "reason": "configured"})
    deferred = chosen(Deferred("y", 0, []), {"configured": "auto", "reason": "r"})
    assert not isinstance(plain, DeferredCompilation) and isinstance(deferred, DeferredCompilation)
    assert deferred.compile_next() is False
    assert plain.info() == {"fake": True, "selection": {"configured": "x", "reason": "configured"}}
    assert plain.run(dummy_batch(plain.input_names, 3, 4))[0].shape == (3, 2)


@needs_deepsparse
def test_auto_measures_both_engines_on_the_first_compiled_shape_and_keeps_the_faster(
    bert_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded: dict[str, weakref.ref[Engine]] = {}
    for name, loader in list(ENGINES.items()):
        def recording(path: Path, options: EngineOptions, name: str = name, loader: EngineLoader = loader) -> Engine:
            engine = loader(path, options)
            loaded[name] = weakref.ref(engine)
            return engine

        monkeypatch.setitem(ENGINES, name, recording)
    card = load_card(bert_dir)
    engine = load_engine("auto", bert_dir, card, EngineOptions(max_length=64, max_batch_size=4, threads=1))
    gc.collect()
    assert {name: ref() is not None for name, ref in loaded.items()} == {
        name: name == engine.name for name in ("deepsparse", "onnxruntime")
    }, "the slower engine must be released"
    selection = engine.info()["selection"]
    rates = selection["items_per_second"]
    assert set(rates) == {"deepsparse", "onnxruntime"} and min(rates.values()) > 0
    assert engine.name == max(rates, key=rates.get)
    assert (selection["configured"], selection["measured_shape"]) == ("auto", [1, 64])
    assert selection["reason"].startswith("measured the faster at batch 1 x sequence 64 (items/s: deepsparse ")
    assert isinstance(engine, DeferredCompilation) == (engine.name == "deepsparse")


@pytest.mark.parametrize("choice", ["onnxruntime", *(["deepsparse"] if DEEPSPARSE_USABLE else [])])
def test_an_explicit_engine_loads_without_measuring(
    bert_dir: Path, monkeypatch: pytest.MonkeyPatch, choice: EngineChoice
) -> None:
    def no_measuring(*args: object, **kwargs: object) -> dict[str, float]:
        raise AssertionError("an explicit engine must not be measured")

    monkeypatch.setattr(engine_registry, "measure", no_measuring)
    engine = load_engine(choice, bert_dir, load_card(bert_dir), EngineOptions(max_length=64, threads=1))
    assert engine.name == choice
    assert engine.info()["selection"] == {"configured": choice, "reason": "configured"}


def test_auto_with_one_usable_engine_loads_it_without_measuring(
    bert_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_registry, "measure", lambda *args, **kwargs: pytest.fail("measured"))
    monkeypatch.setattr(engine_registry, "_deepsparse_support", lambda: (False, "deepsparse is unavailable (x)"))
    engine = load_engine("auto", bert_dir, load_card(bert_dir), EngineOptions(max_length=64, threads=1))
    assert engine.name == "onnxruntime"
    assert engine.info()["selection"] == {"configured": "auto", "reason": "deepsparse is unavailable (x)"}


@needs_deepsparse
def test_auto_keeps_deepsparse_when_onnxruntime_fails_to_load(bert_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(path: Path, options: EngineOptions) -> Engine:
        raise RuntimeError("corrupt file")

    monkeypatch.setitem(ENGINES, "onnxruntime", broken)
    engine = load_engine("auto", bert_dir, load_card(bert_dir), EngineOptions(max_length=64, threads=1))
    assert engine.name == "deepsparse"
    assert engine.info()["selection"] == {"configured": "auto",
                                          "reason": "onnxruntime failed to load (RuntimeError: corrupt file)"}
