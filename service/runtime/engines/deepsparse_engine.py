"""DeepSparse engine: one compiled engine per (batch size, sequence length) bucket, inputs padded up to a bucket.

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
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from service.runtime.engines.base import EngineOptions
from service.runtime.engines.buckets import checked_buckets, default_sequence_buckets, fitting_bucket, pad_2d
from service.runtime.errors import MissingPackage
from service.runtime.graph.attention_mask import simplify_attention_mask_file

logger = logging.getLogger(__name__)
Shape = tuple[int, int]  # (batch size, sequence length) of a compiled engine

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
        batch_buckets = checked_buckets(options.batch_buckets or (1, options.max_batch_size), None, "batch")
        sequence_buckets = checked_buckets(
            options.sequence_buckets or default_sequence_buckets(options.max_length), options.max_length, "sequence"
        )
        self._batch_buckets, self._sequence_buckets = batch_buckets, sequence_buckets
        self._threads = options.threads
        self._workdir = tempfile.TemporaryDirectory(prefix="oberta-deepsparse-")
        self._copy = Path(self._workdir.name) / Path(path).name
        shutil.copyfile(path, self._copy)
        if simplify_attention_mask_file(self._copy):  # a file exported before the rewrite: same outputs, faster
            logger.info("%s: attention mask rewritten to [batch, 1, 1, key] for DeepSparse", self._copy.name)
        self._pending = compile_order(batch_buckets, sequence_buckets)
        self._engines: dict[Shape, Any] = {}  # replaced, never changed in place: run() reads it without a lock
        self.compile_next()  # the covering shape: with it alone, every batch can run
        first = next(iter(self._engines.values()))
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
            self._engines = {**self._engines, (batch, length): engine}
            logger.debug("compiled %s for batch %d, sequence %d in %.1f s", self._copy.name, batch, length,
                         time.perf_counter() - started)
        if not self._pending:
            self._workdir.cleanup()
        return bool(self._pending)

    @property
    def input_names(self) -> list[str]:
        """ONNX input names, in the compiled engines' order."""
        return list(self._input_names)

    @property
    def fraction_of_supported_ops(self) -> float:
        """The smallest share of the network DeepSparse runs with its optimized kernels, over the compiled shapes."""
        return float(min(engine.fraction_of_supported_ops for engine in self._engines.values()))

    def run(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Run one batch on the compiled shapes: the shortest sequence that holds it, chunks of the largest batch
        compiled at that length, each padded up to the nearest compiled batch, sliced back."""
        engines = self._engines
        rows, length = inputs[self._input_names[0]].shape
        sequence = fitting_bucket(tuple(sorted({shape[1] for shape in engines})), length)
        batches = tuple(sorted(batch for batch, compiled in engines if compiled == sequence))
        largest = batches[-1]
        chunks: list[list[np.ndarray]] = []
        for start in range(0, rows, largest):
            count = min(largest, rows - start)
            batch = fitting_bucket(batches, count)
            padded = [pad_2d(inputs[name][start : start + count], batch, sequence) for name in self._input_names]
            outputs = engines[batch, sequence].run(padded)
            chunks.append([output[:count] for output in outputs])
        if len(chunks) == 1:
            return chunks[0]
        return [np.concatenate(parts) for parts in zip(*chunks, strict=True)]

    def info(self) -> dict[str, Any]:
        """Fraction of supported ops, buckets (and the shapes compiled so far), cores and CPU features."""
        return {
            "fraction_of_supported_ops": self.fraction_of_supported_ops,
            "batch_buckets": list(self._batch_buckets),
            "sequence_buckets": list(self._sequence_buckets),
            "compiled_shapes": [list(shape) for shape in sorted(self._engines)],
            "num_cores": self._threads or "all",
            "cpu": self._cpu,
        }
