"""DeepSparse engine: one compiled engine per (batch size, sequence length) bucket; a batch is padded up to a bucket
or split over smaller ones, whichever their measured call costs make cheaper (shape_plan.py).

DeepSparse compiles for static shapes, and `compile_model(..., input_shapes=...)` rewrites the ONNX file in place,
so every compilation works on a private copy in a temporary directory (where an older export's attention mask is
also rewritten to the form DeepSparse fuses).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from service.runtime.engines.base import EngineOptions
from service.runtime.engines.buckets import bucket_grid, pad_2d
from service.runtime.engines.shape_plan import Shape, cheapest_plan
from service.runtime.errors import MissingPackage
from service.runtime.graph.attention_mask import simplify_attention_mask_file

logger = logging.getLogger(__name__)

NOT_INSTALLED = "engine deepsparse needs the deepsparse package: pip install 'oberta[deepsparse]'"


def require_deepsparse() -> None:
    """Raise MissingPackage unless deepsparse is installed (without importing it)."""
    if importlib.util.find_spec("deepsparse") is None:
        raise MissingPackage(NOT_INSTALLED)


def import_deepsparse() -> ModuleType:
    """Import deepsparse without letting it import torch (it does so, when installed, for a benchmark helper only).

    This is the one place oberta sets NM_DISABLE_ANALYTICS (unless already set): every use of DeepSparse, the server's
    and the benchmarks', imports it here. Raises MissingPackage when deepsparse is not installed.
    """
    os.environ.setdefault("NM_DISABLE_ANALYTICS", "1")
    block_torch = "torch" not in sys.modules
    if block_torch:
        sys.modules["torch"] = None  # type: ignore[assignment]  # makes `import torch` raise ImportError
    try:
        return importlib.import_module("deepsparse")
    except ModuleNotFoundError as exc:
        if exc.name != "deepsparse":
            raise
        raise MissingPackage(NOT_INSTALLED) from None
    finally:
        if block_torch:
            del sys.modules["torch"]


def deepsparse_support() -> tuple[bool, str]:
    """Whether DeepSparse imports and supports this CPU, and why (not)."""
    try:
        deepsparse = import_deepsparse()
        arch = deepsparse.cpu_architecture()
    except Exception as exc:  # the binary import raises ImportError, OSError or others on unsupported systems
        return False, f"deepsparse is unavailable ({type(exc).__name__}: {exc})"
    return True, f"deepsparse {deepsparse.__version__} supports this CPU (isa {arch.isa}, vnni {arch.vnni})"


@dataclass
class Compiled:
    """An engine compiled for one shape and what one call of it costs: the fastest call seen (measured after
    compiling, lowered by faster calls in service, as a busy machine only ever makes calls slower)."""

    engine: Any
    seconds: float


def call_seconds(engine: Any, batch: int, length: int, calls: int = 5) -> float:
    """The fastest of a few calls on a dummy batch of the engine's shape (after one to warm it up)."""
    names = list(engine.input_names)
    dummy = [np.zeros((batch, length), dtype=np.int64) if name == "token_type_ids" else
             np.ones((batch, length), dtype=np.int64) for name in names]
    engine.run(dummy)
    timings = []
    for _ in range(calls):
        started = time.perf_counter()
        engine.run(dummy)
        timings.append(time.perf_counter() - started)
    return min(timings)


def compile_order(batch_buckets: tuple[int, ...], sequence_buckets: tuple[int, ...]) -> list[Shape]:
    """The order shapes are compiled in: first the smallest batch at the longest sequence, which alone can run any
    batch (in chunks); then the largest batch at the longest sequence (throughput under load); then the shorter
    sequences, shortest first, each with all its batch sizes (short inputs stop padding up to the longest)."""
    longest = sequence_buckets[-1]
    first = [(batch_buckets[0], longest), (batch_buckets[-1], longest)]
    rest = [(batch, length) for length in sequence_buckets for batch in batch_buckets]
    return list(dict.fromkeys(first + rest))


class DeepSparseEngine:
    """Runs an ONNX file with DeepSparse, compiled for a grid of batch sizes and sequence lengths.

    Construction compiles one shape that can run every batch, so the model serves within seconds; `compile_next`
    compiles the others (the server calls it in the background once every model is ready).
    """

    name = "deepsparse"

    def __init__(self, path: str | Path, options: EngineOptions) -> None:
        self._deepsparse = import_deepsparse()
        batch_buckets, sequence_buckets = bucket_grid(options)
        self._batch_buckets, self._sequence_buckets = batch_buckets, sequence_buckets
        self._threads = options.threads
        self._workdir = tempfile.TemporaryDirectory(prefix="oberta-deepsparse-")
        self._copy = Path(self._workdir.name) / Path(path).name
        shutil.copyfile(path, self._copy)
        if simplify_attention_mask_file(self._copy):  # a file exported before the rewrite: same outputs, faster
            logger.info("%s: attention mask rewritten to [batch, 1, 1, key] for DeepSparse", self._copy.name)
        self._pending = compile_order(batch_buckets, sequence_buckets)
        self._compiled: dict[Shape, Compiled] = {}  # replaced, never changed in place: run() reads it without a lock
        self.compile_next()  # the covering shape: with it alone, every batch can run
        first = next(iter(self._compiled.values())).engine
        self._input_names: list[str] = list(first.input_names)
        self._cpu = f"{first.cpu_avx_type}{' vnni' if first.cpu_vnni else ''}"

    def compile_next(self) -> bool:
        """Compile the next pending shape (blocking: DeepSparse compiles for seconds); returns whether more are
        pending. `run` uses a shape as soon as it is compiled."""
        if self._pending:
            batch, length = self._pending.pop(0)
            started = time.perf_counter()
            engine = self._deepsparse.compile_model(
                str(self._copy), batch_size=batch, num_cores=self._threads, input_shapes=[[batch, length]]
            )
            compiled = Compiled(engine, call_seconds(engine, batch, length))
            self._compiled = {**self._compiled, (batch, length): compiled}
            logger.debug("compiled %s for batch %d, sequence %d in %.1f s; a call takes %.1f ms", self._copy.name,
                         batch, length, time.perf_counter() - started, 1000 * compiled.seconds)
        if not self._pending:
            self._workdir.cleanup()
            self._remeasure()
        return bool(self._pending)

    def _remeasure(self) -> None:
        """Measure every shape's call once more, now that no compilation competes for the cores."""
        for (batch, length), entry in self._compiled.items():
            entry.seconds = min(entry.seconds, call_seconds(entry.engine, batch, length))

    @property
    def input_names(self) -> list[str]:
        """ONNX input names, in the compiled engines' order."""
        return list(self._input_names)

    @property
    def fraction_of_supported_ops(self) -> float:
        """The smallest share of the network DeepSparse runs with its optimized kernels, over the compiled shapes."""
        return float(min(compiled.engine.fraction_of_supported_ops for compiled in self._compiled.values()))

    def run(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Run one batch on the compiled shapes, padded up or split as their measured costs say is cheapest."""
        compiled = self._compiled
        rows, length = inputs[self._input_names[0]].shape
        plan = cheapest_plan(rows, length, {shape: entry.seconds for shape, entry in compiled.items()})
        chunks: list[list[np.ndarray]] = []
        start = 0
        for chunk in plan:
            batch, sequence = chunk.shape
            part = [pad_2d(inputs[name][start : start + chunk.rows], batch, sequence) for name in self._input_names]
            entry = compiled[chunk.shape]
            started = time.perf_counter()
            outputs = entry.engine.run(part)
            entry.seconds = min(entry.seconds, time.perf_counter() - started)
            chunks.append([output[: chunk.rows] for output in outputs])
            start += chunk.rows
        if len(chunks) == 1:
            return chunks[0]
        return [np.concatenate(parts) for parts in zip(*chunks, strict=True)]

    def info(self) -> dict[str, Any]:
        """Fraction of supported ops, buckets (and the shapes compiled so far), cores and CPU features."""
        return {
            "fraction_of_supported_ops": self.fraction_of_supported_ops,
            "batch_buckets": list(self._batch_buckets),
            "sequence_buckets": list(self._sequence_buckets),
            "compiled_shapes": [list(shape) for shape in sorted(self._compiled)],
            "shapes_pending": len(self._pending),
            "call_ms": {f"{batch}x{length}": round(1000 * entry.seconds, 2)
                        for (batch, length), entry in sorted(self._compiled.items())},
            "num_cores": self._threads or "all",
            "cpu": self._cpu,
        }
