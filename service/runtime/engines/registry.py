"""Engine registry: name -> loader (imports the backend lazily), and the `auto` choice."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from service.runtime.card import EngineName, ModelCard
from service.runtime.config import EngineChoice
from service.runtime.engines.base import Engine, EngineOptions
from service.runtime.errors import ConfigError

logger = logging.getLogger(__name__)

EngineLoader = Callable[[Path, EngineOptions], Engine]
EngineFactory = Callable[[EngineChoice, Path, ModelCard, EngineOptions], Engine]


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
    """The engine to use for a card and the reason: `auto` prefers DeepSparse when usable, else ONNX Runtime."""
    if choice != "auto":
        if choice not in card.files:
            raise ConfigError(f"model {card.name!r} has no ONNX file for engine {choice} (files: {dict(card.files)})")
        return choice, "configured"
    if "deepsparse" not in card.files:
        return "onnxruntime", "the model card lists no deepsparse file"
    usable, reason = _deepsparse_support()
    if usable:
        return "deepsparse", reason
    if "onnxruntime" not in card.files:
        raise ConfigError(f"model {card.name!r} has only a deepsparse file, but {reason}")
    return "onnxruntime", reason


def load_engine(choice: EngineChoice, model_dir: Path, card: ModelCard, options: EngineOptions) -> Engine:
    """Load the engine `choice` resolves to; under `auto`, a DeepSparse compile failure falls back to ONNX Runtime."""
    name, reason = choose_engine(choice, card)
    logger.info("model %s: engine %s (%s)", card.name, name, reason)
    try:
        engine = ENGINES[name](model_dir / card.files[name], options)
    except Exception:
        if choice != "auto" or name == "onnxruntime" or "onnxruntime" not in card.files:
            raise
        logger.warning("model %s: deepsparse failed, falling back to onnxruntime", card.name, exc_info=True)
        engine = ENGINES["onnxruntime"](model_dir / card.files["onnxruntime"], options)
    info = engine.info()
    logger.info("model %s: %s engine ready: %s", card.name, engine.name, info)
    fraction = info.get("fraction_of_supported_ops")
    if fraction is not None and fraction < 1:
        logger.warning(
            "model %s: deepsparse runs only %.1f%% of the network with its optimized kernels",
            card.name,
            100 * fraction,
        )
    return engine
