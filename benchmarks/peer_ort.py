"""The dense INT8 models of the FP32 export on ONNX Runtime: what a user makes with ONNX Runtime's own tools, and
what oberta's own ONNX Runtime form makes of the same dense model.

``ort-optimized`` is the user's minute: ONNX Runtime's transformer optimizer, then dynamic per-channel INT8. ONNX
Runtime 1.18 does not recognise the attention of a transformers 5 export (its mask, its score scaling by Mul and its
reshape to -1 heads differ from the patterns it matches), so its fused-operator counts are recorded with the file.
``ort-fused`` adds our attention fusion first (compression/onnxruntime_form.py): the dense model in the form our
ONNX Runtime files take, so that what sparsity and smaller shapes buy on ONNX Runtime is measured apart from what
fusion buys.
"""

from __future__ import annotations

from pathlib import Path

from compression.onnxruntime_form import OptimizedFile, optimized_dynamic_int8

PEERS = {"ort-optimized": False, "ort-fused": True}
"""Each ONNX Runtime peer and whether our attention fusion runs before ONNX Runtime's optimizer."""


def ort_peer(name: str, fp32_path: Path, output_path: Path, heads: int, hidden: int) -> OptimizedFile:
    """Write one ONNX Runtime peer of the dense FP32 file."""
    return optimized_dynamic_int8(fp32_path, output_path, heads, hidden, fuse_own_attention=PEERS[name])
