"""INT8 quantization of an exported FP32 ONNX encoder, one artifact per engine.

The fastest graph differs per engine (measured on a MiniLM-shaped 90%-sparse model, batch 16, seq 128):
DeepSparse runs calibrated static QOperator graphs with signed symmetric weights on its sparse INT8 path; QDQ
graphs push it off that path. ONNX Runtime runs fastest the fused-dynamic form of compression/onnxruntime_form.py
(its recipe setting ``form``); its static form remains. So two files are written: ``model.deepsparse.onnx`` and
``model.onnx``. Weights that were zero stay exactly zero (they quantize to the zero point), so sparsity survives.

The attention's own products (scores = Q·Kᵀ and context = softmax·V, both inputs activations) can be INT8 too.
ONNX Runtime's quantizer writes them as QLinearMatMul with a requantized output, which DeepSparse runs outside
its fused kernels; rewritten as MatMulInteger → Cast → Mul (the form DeepSparse fuses with the softmax), they
cut a MiniLM-shaped 90%-sparse model's time at batch 16 by about a sixth on DeepSparse. The same rewrite of the
weight layers drops QLinearMatMul's requantization of each output to 8 bits, which on SST-2 cost more accuracy
than any other part of quantization. Which of these each engine's file gets is set per engine in the recipe.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

from compression.graph_index import drop_unused_initializers
from compression.onnxruntime_form import optimized_dynamic_int8
from compression.quantizer_logs import quiet_quantizer
from compression.recipe import EngineQuantization, QuantizationRecipe

log = logging.getLogger(__name__)

CALIBRATION_METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "percentile": CalibrationMethod.Percentile,
    "entropy": CalibrationMethod.Entropy,
}
ENCODER_NODE = re.compile(r"encoder/layer\.\d+/|^/oberta/attention\.\d+/")
"""Node names of the encoder's layers in our exports (the exporter names nodes by module path)."""
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


def onnx_scope(module_name: str) -> str:
    """The exporter's node-name scope of a module: ``bert.encoder.layer.0.output.dense`` is
    ``bert/encoder/layer.0/output/dense`` (a list index stays joined to its list by a dot)."""
    parts: list[str] = []
    for part in module_name.split("."):
        if part.isdigit() and parts:
            parts[-1] += f".{part}"
        else:
            parts.append(part)
    return "/".join(parts)


def range_overrides(
    fp32_path: Path, ranges: dict[str, tuple[float, float]]
) -> dict[str, list[dict[str, np.float32]]]:
    """ONNX Runtime's ``TensorQuantOverrides`` that set the input range of each named module's MatMul.

    ``ranges`` are keyed by module name (from quantization-aware training); modules that read one tensor (query,
    key and value) get the union of their ranges. A module without exactly one MatMul in the graph is an error.
    """
    graph = onnx.load(str(fp32_path), load_external_data=False).graph
    matmuls = [node for node in graph.node if node.op_type == "MatMul"]
    bounds: dict[str, tuple[float, float]] = {}
    for module, (low, high) in ranges.items():
        suffix = f"/{onnx_scope(module)}/MatMul"
        found = [node for node in matmuls if node.name.endswith(suffix)]
        if len(found) != 1:
            raise ValueError(f"{module}: expected one MatMul named '...{suffix}' in {fp32_path.name}, "
                             f"found {len(found)}")
        tensor = found[0].input[0]
        known_low, known_high = bounds.get(tensor, (low, high))
        bounds[tensor] = (min(low, known_low), max(high, known_high))
    return {tensor: [{"rmin": np.float32(low), "rmax": np.float32(high)}] for tensor, (low, high) in bounds.items()}


def quantize_for_engine(
    fp32_path: Path,
    output_path: Path,
    engine: str,
    batches: list[dict[str, np.ndarray]],
    calibration_method: str = "minmax",
    settings: EngineQuantization | None = None,
    activation_ranges: dict[str, tuple[float, float]] | None = None,
) -> Path:
    """INT8 tuned for one engine: static (QOperator format: MatMul layers and the embedding Gathers, calibrated on
    ``batches``) or, for ONNX Runtime's ``fused-dynamic`` form, fused and dynamically quantized.

    ``settings`` default to the recipe defaults of that engine. ``activation_ranges`` (module name to the (low, high)
    of its input, from quantization-aware training) replace the calibrated ranges of those inputs in the static form.
    """
    settings = settings or QuantizationRecipe.model_validate({}).for_engine(engine)
    if settings.form == "fused-dynamic":
        made = optimized_dynamic_int8(fp32_path, output_path, heads=0, hidden=0, fuse_own_attention=True)
        log.info("%s: ONNX Runtime form with fused %s", output_path.name, made.fused)
        return output_path
    with quiet_quantizer():
        quantize_static(
            str(fp32_path),
            str(output_path),
            BatchReader(batches),
            quant_format=QuantFormat.QOperator,
            op_types_to_quantize=["MatMul", "Gather"],
            per_channel=settings.per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=WEIGHT_TYPES[engine],
            calibrate_method=CALIBRATION_METHODS[calibration_method],
            nodes_to_exclude=matching_matmuls(fp32_path, settings.keep_fp32),
            extra_options={
                "WeightSymmetric": True,
                "MatMulConstBOnly": not settings.int8_attention,
                "TensorQuantOverrides": range_overrides(fp32_path, activation_ranges) if activation_ranges else {},
            },
        )
    if settings.integer_matmuls:
        model = onnx.load(str(output_path))
        integer_matmuls(model)
        onnx.save(model, str(output_path))
    return output_path


def integer_matmuls(model: onnx.ModelProto) -> int:
    """Rewrite each QLinearMatMul and the DequantizeLinear after it, in place, as MatMulInteger → Cast → Mul by
    the product of the input scales; returns how many were rewritten.

    The result is the exact integer product, without the requantization of the output to 8 bits that
    QLinearMatMul does (on SST-2 that requantization alone cost 1.5 points of accuracy).
    """
    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    replacements: dict[str, list[onnx.NodeProto]] = {}  # keyed by the first output, unique in a graph
    removed: set[str] = set()
    for node in graph.node:
        if node.op_type != "QLinearMatMul":
            continue
        a, a_scale, a_zero, b, b_scale, b_zero = node.input[:6]
        users = consumers.get(node.output[0], [])
        if len(users) != 1 or users[0].op_type != "DequantizeLinear":
            raise ValueError(f"{node.name}: expected one DequantizeLinear after it, found {[u.op_type for u in users]}")
        scale = numpy_helper.to_array(initializers[a_scale]) * numpy_helper.to_array(initializers[b_scale])
        scale_name = f"{node.name}_rescale"
        graph.initializer.append(numpy_helper.from_array(np.asarray(scale, dtype=np.float32), scale_name))
        replacements[node.output[0]] = [
            helper.make_node("MatMulInteger", [a, b, a_zero, b_zero], [f"{node.name}_int32"], f"{node.name}_integer"),
            helper.make_node("Cast", [f"{node.name}_int32"], [f"{node.name}_float"], f"{node.name}_cast",
                             to=onnx.TensorProto.FLOAT),
            helper.make_node("Mul", [f"{node.name}_float", scale_name], [users[0].output[0]], f"{node.name}_rescale"),
        ]
        removed.add(users[0].output[0])
    nodes = [
        new for node in graph.node if node.output[0] not in removed for new in replacements.get(node.output[0], [node])
    ]
    del graph.node[:]
    graph.node.extend(nodes)
    drop_unused_initializers(graph)  # the dropped output scales and zero points
    return len(replacements)


def quantize_model_dir(
    fp32_path: Path, model_dir: Path, batches: list[dict[str, np.ndarray]], recipe: QuantizationRecipe,
    activation_ranges: dict[str, tuple[float, float]] | None = None,
) -> dict[str, str]:
    """Write the per-engine INT8 files into model_dir; returns the card's ``files`` mapping."""
    files = {}
    for engine, name in INT8_FILES.items():
        quantize_for_engine(fp32_path, model_dir / name, engine, batches, recipe.calibration_method,
                            recipe.for_engine(engine), activation_ranges)
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
        elif node.op_type == "QAttention" and len(node.input) > 7:
            points[node.input[1]] = node.input[7]
    return points


def weight_sparsity(onnx_path: Path) -> dict[str, float | int]:
    """Sparsity of the encoder's Linear weights stored in an ONNX file (INT8 entries equal to their zero point count).

    Counted: the 2-D weights of MatMul-like nodes named for an encoder layer (``.../encoder/layer.N/...``) and of
    our fused attention (``/oberta/attention.N/...``: Q, K and V packed). The pooler and task heads stay dense
    and are left out (ONNX Runtime's optimizer turns their Gemm into MatMul).
    """
    model = onnx.load(str(onnx_path))
    initializers = {t.name: t for t in model.graph.initializer}
    zero_points = _zero_points(model.graph)
    weights: list[tuple[np.ndarray, np.ndarray | int]] = []
    for node in model.graph.node:
        if not ENCODER_NODE.search(node.name):
            continue
        if node.op_type == "QLinearMatMul" and node.input[3] in initializers:
            name = node.input[3]
        elif node.op_type in ("MatMul", "MatMulInteger", "QAttention") and node.input[1] in initializers:
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
