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

    def __init__(self, path: str | Path, threads: int | None = None, spinning: bool = False) -> None:
        """`spinning`: ONNX Runtime's default, threads that spin between runs. Off, they sleep and leave the cores to
        the server's tokenization and HTTP work: served throughput on 2 cores rose about 8% for 16 long texts a
        request and about 20% for one short text at 64 clients. Back-to-back runs with nothing else on the cores
        (the engine benchmark) are fastest with it on."""
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        if not spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
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
        return {"version": ort.__version__, "intra_op_num_threads": self._threads or "default",
                "spinning": self._spinning}
