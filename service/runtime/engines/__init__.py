"""Inference engines: ONNX Runtime and DeepSparse behind one small protocol."""

from service.runtime.engines.base import DeferredCompilation, Engine, EngineOptions
from service.runtime.engines.registry import (
    ENGINES,
    EngineFactory,
    choose_engine,
    load_engine,
    require_engine_package,
)

__all__ = [
    "ENGINES",
    "DeferredCompilation",
    "Engine",
    "EngineFactory",
    "EngineOptions",
    "choose_engine",
    "load_engine",
    "require_engine_package",
]
