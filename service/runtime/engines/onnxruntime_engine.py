"""ONNX Runtime engine: one CPU InferenceSession with dynamic batch and sequence axes."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort


class OnnxRuntimeEngine:
    """Runs an ONNX file with ONNX Runtime's CPU execution provider."""

    name = "onnxruntime"

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._threads = threads
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
        """Version and thread count."""
        return {"version": ort.__version__, "intra_op_num_threads": self._threads or "default"}
