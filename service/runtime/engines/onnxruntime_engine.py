"""ONNX Runtime engine: one CPU InferenceSession with dynamic batch and sequence axes, its INT8 products exact."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from service.runtime.graph.unsigned_weights import exact_source

log = logging.getLogger(__name__)


class OnnxRuntimeEngine:
    """Runs an ONNX file with ONNX Runtime's CPU execution provider."""

    name = "onnxruntime"

    def __init__(self, path: str | Path, threads: int | None = None, spinning: bool = False,
                 exact_int8: bool = True) -> None:
        """`spinning`: ONNX Runtime's default, threads that spin between runs. Off, they sleep and leave the cores to
        the server's tokenization and HTTP work: served throughput on 2 cores rose about 8% for 16 long texts a
        request and about 20% for one short text at 64 clients. Back-to-back runs with nothing else on the cores
        (the engine benchmark) are fastest with it on. `exact_int8`: int8 weights as uint8 where this CPU's int8
        products saturate (off: the file as ONNX Runtime runs it by itself, for the benchmark's dense peers)."""
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        if not spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if exact_int8:
            self._session, self._unsigned_weights = exact_session(Path(path), options)
        else:
            self._session, self._unsigned_weights = plain_session(Path(path), options), 0
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
        if self._unsigned_weights:
            info["exact_int8"] = f"{self._unsigned_weights} int8 weights run as uint8 (no VNNI on this CPU)"
        return info


def exact_session(path: Path, options: ort.SessionOptions) -> tuple[ort.InferenceSession, int]:
    """A session of the file, with its int8 weights as uint8 where this CPU's int8 products saturate
    (unsigned_weights.py; the file as it is if ONNX Runtime refuses the rewritten graph); with the number rewritten."""
    source, rewritten = exact_source(path)
    if rewritten:
        try:
            session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ONNX Runtime raises its own unexported error types
            log.warning("%s: ONNX Runtime refused its int8 weights as uint8 (%s); its int8 products may saturate on "
                        "this CPU", path.name, exc)
        else:
            log.info("%s: %d int8 weights run as uint8, exact on this CPU without VNNI", path.name, rewritten)
            return session, rewritten
    return plain_session(path, options), 0


def plain_session(path: Path, options: ort.SessionOptions) -> ort.InferenceSession:
    """A CPU session of the file as it is."""
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
