"""ONNX Runtime engine: one CPU InferenceSession with dynamic batch and sequence axes, its INT8 products exact."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from service.runtime.cpu import products_saturate

EXACT_PRODUCTS = "session.x64quantprecision"
"""ONNX Runtime's session entry that stores int8 weights as uint8 plus 128 (their zero points too) when it optimizes
the graph, so that its products go through uint8 x uint8 kernels, which widen before adding: the same integers, exact.
It covers the weights of MatMulInteger, QAttention, QGemm, QLinearMatMul, DynamicQuantizeMatMul and those read through
DequantizeLinear (QDQ files), at about 0.9x the speed of the saturating products (scratch timing: 2 cores, 8 x 128
tokens, the sentiment files)."""


class OnnxRuntimeEngine:
    """Runs an ONNX file with ONNX Runtime's CPU execution provider."""

    name = "onnxruntime"

    def __init__(self, path: str | Path, threads: int | None = None, spinning: bool = False,
                 exact_int8: bool = True) -> None:
        """`spinning`: ONNX Runtime's default, threads that spin between runs. Off, they sleep and leave the cores to
        the server's tokenization and HTTP work: served throughput on 2 cores rose about 8% for 16 long texts a
        request and about 20% for one short text at 64 clients. Back-to-back runs with nothing else on the cores
        (the engine benchmark) are fastest with it on. `exact_int8`: int8 weights as uint8 where this CPU's int8
        products saturate (off: the file as ONNX Runtime runs it by default, for the benchmark's dense peers)."""
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        if not spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._exact_int8 = exact_int8 and products_saturate()
        if self._exact_int8:
            options.add_session_config_entry(EXACT_PRODUCTS, "1")
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._threads = threads
        self._spinning = spinning
        self._input_names = [node.name for node in self._session.get_inputs()]

    @property
    def input_names(self) -> list[str]:
        """ONNX input names of the session."""
        return list(self._input_names)

    def run(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Run one batch of any size and length."""
        feed = {name: inputs[name] for name in self._input_names}
        return [np.asarray(output) for output in self._session.run(None, feed)]

    def info(self) -> dict[str, Any]:
        """Version, thread count and whether idle threads spin."""
        info: dict[str, Any] = {"version": ort.__version__, "intra_op_num_threads": self._threads or "default",
                                "spinning": self._spinning}
        if self._exact_int8:
            info["exact_int8"] = f"int8 weights as uint8 ({EXACT_PRODUCTS}: no VNNI on this CPU)"
        return info

