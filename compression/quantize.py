"""Calibrated static INT8 quantization of an exported FP32 ONNX encoder, one artifact per engine.

The fastest graph differs per engine (measured on a MiniLM-shaped 90%-sparse model, batch 16, seq 128):
DeepSparse runs QOperator graphs (QLinearMatMul) with signed symmetric weights on its sparse INT8 path,
while ONNX Runtime's CPU kernels are fast only with unsigned weights. QDQ graphs push DeepSparse off its
fast path. So two files are written from one calibration: ``model.deepsparse.onnx`` and ``model.onnx``.
Weights that were zero stay exactly zero (they quantize to the zero point), so sparsity survives.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

log = logging.getLogger(__name__)

CALIBRATION_METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "percentile": CalibrationMethod.Percentile,
    "entropy": CalibrationMethod.Entropy,
}
WEIGHT_TYPES = {"deepsparse": QuantType.QInt8, "onnxruntime": QuantType.QUInt8}
INT8_FILES = {"deepsparse": "model.deepsparse.onnx", "onnxruntime": "model.onnx"}


class BatchReader(CalibrationDataReader):
    """Feeds calibration batches (dicts of int64 arrays) to the ONNX Runtime calibrator."""

    def __init__(self, batches: list[dict[str, np.ndarray]]) -> None:
        self.batches = batches
        self._iterator: Iterator[dict[str, np.ndarray]] = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._iterator, None)

    def rewind(self) -> None:
        self._iterator = iter(self.batches)


def matching_matmuls(fp32_path: Path, patterns: list[str]) -> list[str]:
    """Names of the MatMul nodes whose name matches any regex (node names follow the module path, e.g.
    ``/model/bert/encoder/layer.0/output/dense/MatMul``)."""
    compiled = [re.compile(p) for p in patterns]
    graph = onnx.load(str(fp32_path), load_external_data=False).graph
    return [n.name for n in graph.node if n.op_type == "MatMul" and any(p.search(n.name) for p in compiled)]


def quantize_for_engine(
    fp32_path: Path,
    output_path: Path,
    engine: str,
    batches: list[dict[str, np.ndarray]],
    calibration_method: str = "minmax",
    keep_fp32: list[str] | None = None,
) -> Path:
    """Static INT8 (QOperator format: MatMul layers and the embedding Gathers) tuned for one engine."""
    quantize_static(
        str(fp32_path),
        str(output_path),
        BatchReader(batches),
        quant_format=QuantFormat.QOperator,
        op_types_to_quantize=["MatMul", "Gather"],
        per_channel=False,
        activation_type=QuantType.QUInt8,
        weight_type=WEIGHT_TYPES[engine],
        calibrate_method=CALIBRATION_METHODS[calibration_method],
        nodes_to_exclude=matching_matmuls(fp32_path, keep_fp32 or []),
        extra_options={"WeightSymmetric": True, "MatMulConstBOnly": True},
    )
    return output_path


def quantize_model_dir(
    fp32_path: Path, model_dir: Path, batches: list[dict[str, np.ndarray]], calibration_method: str = "minmax",
    keep_fp32: list[str] | None = None,
) -> dict[str, str]:
    """Write the per-engine INT8 files into model_dir; returns the card's ``files`` mapping."""
    files = {}
    for engine, name in INT8_FILES.items():
        quantize_for_engine(fp32_path, model_dir / name, engine, batches, calibration_method, keep_fp32)
        files[engine] = name
        log.info("wrote %s for %s", model_dir / name, engine)
    return files


def _zero_points(graph: onnx.GraphProto) -> dict[str, str]:
    """Map each quantized MatMul weight to the name of its zero point initializer."""
    points = {}
    for node in graph.node:
        if node.op_type == "QLinearMatMul":
            points[node.input[3]] = node.input[5]
        elif node.op_type == "MatMulInteger" and len(node.input) > 3:
            points[node.input[1]] = node.input[3]
    return points


def weight_sparsity(onnx_path: Path) -> dict[str, float | int]:
    """Sparsity of the MatMul weights stored in an ONNX file (INT8 entries equal to their zero point count).

    Only 2-D MatMul weights are counted: in our exports these are the encoder's Linear layers (the pooler and a
    sequence classifier's head export as Gemm) plus, for question answering and token classification, the small
    per-token head (a MatMul; under 0.05% of a MiniLM encoder's weights).
    """
    model = onnx.load(str(onnx_path))
    initializers = {t.name: t for t in model.graph.initializer}
    zero_points = _zero_points(model.graph)
    weights: list[tuple[np.ndarray, np.ndarray | int]] = []
    for node in model.graph.node:
        if node.op_type == "QLinearMatMul" and node.input[3] in initializers:
            name = node.input[3]
        elif node.op_type in ("MatMul", "MatMulInteger") and node.input[1] in initializers:
            name = node.input[1]
        else:
            continue
        array = numpy_helper.to_array(initializers[name])
        if array.ndim != 2:
            continue
        zero_name = zero_points.get(name)
        zero = numpy_helper.to_array(initializers[zero_name]) if zero_name in initializers else 0
        weights.append((array, zero))
    total = sum(a.size for a, _ in weights)
    zeros = sum(int((a == z).sum()) for a, z in weights)
    return {"sparsity": zeros / total if total else 0.0, "weights": total, "matrices": len(weights)}
