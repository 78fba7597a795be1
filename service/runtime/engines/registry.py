"""Engine registry: name -> loader (imports the backend lazily), and the `auto` choice (by measured speed where both
engines are usable)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from service.runtime.card import EngineName, ModelCard
from service.runtime.config import EngineChoice
from service.runtime.cpu import products_saturate
from service.runtime.engines.base import Engine, EngineOptions
from service.runtime.engines.buckets import bucket_grid
from service.runtime.engines.selection import chosen, faster, measure
from service.runtime.errors import ConfigError

logger = logging.getLogger(__name__)

INEXACT_DEEPSPARSE = ("this CPU has no VNNI: DeepSparse's INT8 results differ from the graph's there (the sentiment "
                      "model scored 86.3% against 88.7% on an AVX2 AMD EPYC), ONNX Runtime's are exact")
EngineLoader = Callable[[Path, EngineOptions], Engine]
EngineFactory = Callable[[EngineChoice, Path, ModelCard, EngineOptions], Engine]


def deepsparse_inexact(card: ModelCard) -> bool:
    """Whether DeepSparse would compute this model's integer products inexactly here (INT8 on a CPU without VNNI)."""
    return card.precision == "int8" and products_saturate()


def _load_onnxruntime(path: Path, options: EngineOptions) -> Engine:
    from service.runtime.engines.onnxruntime_engine import OnnxRuntimeEngine

    return OnnxRuntimeEngine(path, threads=options.threads)


def _load_deepsparse(path: Path, options: EngineOptions) -> Engine:
    from service.runtime.engines.deepsparse_engine import DeepSparseEngine

    return DeepSparseEngine(path, options)


def _deepsparse_support() -> tuple[bool, str]:
    from service.runtime.engines.deepsparse_engine import deepsparse_support

    return deepsparse_support()


def require_engine_package(choice: EngineChoice) -> None:
    """Raise MissingPackage when the engine configured needs an optional package that is not installed."""
    if choice == "deepsparse":
        from service.runtime.engines.deepsparse_engine import require_deepsparse

        require_deepsparse()


ENGINES: dict[EngineName, EngineLoader] = {"onnxruntime": _load_onnxruntime, "deepsparse": _load_deepsparse}


def choose_engine(choice: EngineChoice, card: ModelCard) -> tuple[EngineName, str]:
    """The engine to load first for a card and the reason: `auto` prefers DeepSparse when usable (load_engine then
    times it against ONNX Runtime when the card has both files), else ONNX Runtime; an INT8 model on a CPU without
    VNNI takes ONNX Runtime, whose products are exact there."""
    if choice != "auto":
        if choice not in card.files:
            raise ConfigError(f"model {card.name!r} has no ONNX file for engine {choice} (files: {dict(card.files)})")
        return choice, "configured"
    if "deepsparse" not in card.files:
        return "onnxruntime", "the model card lists no deepsparse file"
    usable, reason = _deepsparse_support()
    if usable and "onnxruntime" in card.files and deepsparse_inexact(card):
        return "onnxruntime", INEXACT_DEEPSPARSE
    if usable:
        return "deepsparse", reason
    if "onnxruntime" not in card.files:
        raise ConfigError(f"model {card.name!r} has only a deepsparse file, but {reason}")
    return "onnxruntime", reason


def _load(name: EngineName, model_dir: Path, card: ModelCard, options: EngineOptions) -> Engine:
    return ENGINES[name](model_dir / card.files[name], options)


def _load_faster(model_dir: Path, card: ModelCard, options: EngineOptions) -> tuple[Engine, dict[str, Any]]:
    """Both engines loaded and timed on DeepSparse's first compiled shape; the faster is kept, the other released.
    When one fails to load, the other is kept."""
    try:
        deepsparse = _load("deepsparse", model_dir, card, options)
    except Exception as exc:
        logger.warning("model %s: deepsparse failed, falling back to onnxruntime", card.name, exc_info=True)
        reason = f"deepsparse failed to load ({type(exc).__name__}: {exc})"
        return _load("onnxruntime", model_dir, card, options), {"configured": "auto", "reason": reason}
    try:
        onnxruntime = _load("onnxruntime", model_dir, card, options)
    except Exception as exc:
        logger.warning("model %s: onnxruntime failed, keeping deepsparse unmeasured", card.name, exc_info=True)
        return deepsparse, {"configured": "auto", "reason": f"onnxruntime failed to load ({type(exc).__name__}: {exc})"}
    candidates = {"deepsparse": deepsparse, "onnxruntime": onnxruntime}
    batch_buckets, sequence_buckets = bucket_grid(options)
    batch, length = batch_buckets[0], sequence_buckets[-1]
    rates = measure(candidates, batch, length)
    name = faster(rates)
    measured = ", ".join(f"{engine} {rate:.1f}" for engine, rate in rates.items())
    reason = f"measured the faster at batch {batch} x sequence {length} (items/s: {measured})"
    logger.info("model %s: engine %s %s", card.name, name, reason)
    selection = {"configured": "auto", "reason": reason, "measured_shape": [batch, length],
                 "items_per_second": {engine: round(rate, 1) for engine, rate in rates.items()}}
    return candidates[name], selection


def load_engine(choice: EngineChoice, model_dir: Path, card: ModelCard, options: EngineOptions) -> Engine:
    """Load the engine `choice` resolves to, its info saying how it was chosen (``selection``).

    Under `auto` with both engines usable, both are loaded and timed for a moment and the faster is kept
    (selection.py); without an ONNX Runtime file, a DeepSparse compile failure is raised, else it falls back.
    """
    name, reason = choose_engine(choice, card)
    if name == "deepsparse" and deepsparse_inexact(card):
        logger.warning("model %s: %s", card.name, INEXACT_DEEPSPARSE)
    if choice == "auto" and name == "deepsparse" and "onnxruntime" in card.files:
        logger.info("model %s: timing deepsparse against onnxruntime (%s)", card.name, reason)
        engine, selection = _load_faster(model_dir, card, options)
    else:
        logger.info("model %s: engine %s (%s)", card.name, name, reason)
        engine, selection = _load(name, model_dir, card, options), {"configured": choice, "reason": reason}
    info = engine.info()
    logger.info("model %s: %s engine ready: %s", card.name, engine.name, info)
    fraction = info.get("fraction_of_supported_ops")
    if fraction is not None and fraction < 1:
        logger.warning(
            "model %s: deepsparse runs only %.1f%% of the network with its optimized kernels",
            card.name,
            100 * fraction,
        )
    return chosen(engine, selection)
