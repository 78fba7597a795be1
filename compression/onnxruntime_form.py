"""An FP32 encoder in the form ONNX Runtime runs fastest: fused operators, then dynamic per-channel INT8.

``optimize_model(model_type="bert")`` fuses what it recognises (SkipLayerNormalization, BiasGelu,
EmbedLayerNormalization once attention is fused), and ``quantize_dynamic`` turns MatMuls into INT8 ones and a fused
``Attention`` into ``QAttention``, with weights per output channel in signed INT8 and activations quantized at run
time. ONNX Runtime does not recognise the attention of a transformers 5 export, so ``fuse_own_attention`` first
fuses it with our own pass (compression/attention_fusion.py). Measured on a MiniLM-shaped model (2 cores, sequence
128, items/s at batch 1 / 16): static QOperator INT8 148 / 183, optimizer + dynamic INT8 168 / 240, with our attention
fusion first 219 / 244.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import onnx
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.transformers.optimizer import optimize_model

from compression.attention_fusion import fuse_attention
from compression.quantizer_logs import quiet_quantizer

REPORTED_FUSIONS = ("Attention", "SkipLayerNormalization", "BiasGelu", "EmbedLayerNormalization")


@dataclass(frozen=True)
class OptimizedFile:
    """The written file and how many of each reported fused operator it holds."""

    path: Path
    fused: dict[str, int]


def optimized_dynamic_int8(
    fp32_path: Path, output_path: Path, heads: int, hidden: int, fuse_own_attention: bool
) -> OptimizedFile:
    """Optimize an FP32 BERT-family file for ONNX Runtime (our attention fusion first if asked), then quantize it
    dynamically (per-channel signed INT8 weights)."""
    with tempfile.TemporaryDirectory(prefix="oberta-ort-form-") as workdir:
        source = fp32_path
        own_fused = 0
        if fuse_own_attention:
            model = onnx.load(str(fp32_path))
            own_fused = fuse_attention(model).fused
            source = Path(workdir) / "attention-fused.onnx"
            onnx.save(model, str(source))
        previous = logging.root.manager.disable
        logging.disable(logging.INFO)  # the optimizer logs each fusion at INFO; their counts are returned instead
        try:
            optimized = optimize_model(str(source), model_type="bert", num_heads=heads, hidden_size=hidden)
        finally:
            logging.disable(previous)
        statistics = optimized.get_fused_operator_statistics()
        fused = {op: int(statistics.get(op, 0)) for op in REPORTED_FUSIONS}
        fused["Attention"] = max(fused["Attention"], own_fused)
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
    return OptimizedFile(output_path, fused)
