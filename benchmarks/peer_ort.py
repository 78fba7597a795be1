"""The dense INT8 model a user makes with ONNX Runtime's own tools: its transformer optimizer, then dynamic INT8.

``optimize_model(model_type="bert")`` fuses what it recognises (Attention, SkipLayerNormalization, BiasGelu, ...) and
``quantize_dynamic`` quantizes the weights per output channel to signed INT8, the activations at run time. ONNX
Runtime 1.18 does not recognise the attention of a transformers 5 export (its mask, its score scaling by Mul and its
reshape to -1 heads differ from the patterns it matches), so the fused-operator counts are recorded with the file.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import onnx
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.transformers.optimizer import optimize_model

from compression.quantize import quiet_quantizer

REPORTED_FUSIONS = ("Attention", "SkipLayerNormalization", "BiasGelu")


def ort_optimized_int8(fp32_path: Path, output_path: Path, heads: int, hidden: int) -> tuple[Path, dict[str, int]]:
    """Optimize the FP32 BERT-family file for ONNX Runtime, quantize it dynamically; returns the file and how many
    of each reported fusion the optimizer made."""
    previous = logging.root.manager.disable
    logging.disable(logging.INFO)  # the optimizer logs each fusion at INFO; their counts are returned instead
    try:
        optimized = optimize_model(str(fp32_path), model_type="bert", num_heads=heads, hidden_size=hidden)
    finally:
        logging.disable(previous)
    statistics = optimized.get_fused_operator_statistics()
    fused = {op: int(statistics.get(op, 0)) for op in REPORTED_FUSIONS}
    with tempfile.TemporaryDirectory(prefix="oberta-ort-optimized-") as workdir:
        optimized_path = Path(workdir) / "optimized.onnx"
        optimized.save_model_to_file(str(optimized_path))
        with quiet_quantizer():
            quantize_dynamic(
                str(optimized_path),
                str(output_path),
                per_channel=True,
                weight_type=QuantType.QInt8,
                # the fused operators are in the com.microsoft domain, where shape inference finds no types
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
    return output_path, fused
