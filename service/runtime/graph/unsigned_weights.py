"""Exact INT8 products on ONNX Runtime where the CPU has no VNNI.

On such an x86 CPU (AVX2 or AVX-512 without VNNI: AMD EPYC up to Zen 3, Intel before Cascade Lake) ONNX Runtime
multiplies uint8 activations by int8 weights with an instruction that adds two products in 16 bits and saturates
(255 x 127 x 2 does not fit), so a quantized file computes other numbers than it was validated with. On an AVX2
AMD EPYC, 0.5-2% of the outputs of the shipped sentiment model's first layers were wrong (up to 32% of the largest
value) and its DeepSparse file, run on ONNX Runtime, scored 87.21% against the 88.66% it scores with exact products.

Stored as uint8 with 128 added to each weight and to its zero point, the same integers go through ONNX Runtime's
uint8 x uint8 kernels, which widen before adding and are exact: that file scored 88.66% on the same machine, at
0.81-0.91x the speed of the saturating products (scratch timing, 2 cores, 128 tokens).
"""

from __future__ import annotations

import platform
from collections import Counter
from functools import cache
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

WEIGHT_SLOTS = {"MatMulInteger": (1, 3), "QAttention": (1, 7), "QLinearMatMul": (3, 5), "QGemm": (3, 5),
                "MatMulIntegerToFloat": (1, 5), "DynamicQuantizeMatMul": (1, 3)}
"""Per operator (ONNX's and ONNX Runtime's uint8 x int8 products): the input holding the quantized weight, and the one
holding its zero point. Weights read through DequantizeLinear (QDQ files) are not rewritten."""
VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
"""CPU flags (Linux /proc/cpuinfo) under which ONNX Runtime's uint8 x int8 products are exact."""
SHIFT = 128


@cache
def products_saturate(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU is an x86 one whose flags (read on Linux) show no VNNI. Elsewhere False."""
    if platform.machine().lower() not in {"x86_64", "amd64"}:
        return False
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), None)
    return flags is not None and not VNNI_FLAGS.intersection(flags)


def _input(node: onnx.NodeProto, slot: int) -> str:
    """The node's input at ``slot``, or "" where it has none (an optional input left out)."""
    return node.input[slot] if slot < len(node.input) else ""


def _set_input(node: onnx.NodeProto, slot: int, name: str) -> None:
    while len(node.input) <= slot:
        node.input.append("")
    node.input[slot] = name


def _shift(tensor: onnx.TensorProto) -> None:
    """An int8 initializer as uint8 plus 128, in place."""
    values = numpy_helper.to_array(tensor).astype(np.int16) + SHIFT
    tensor.CopyFrom(numpy_helper.from_array(values.astype(np.uint8), tensor.name))


def unsigned_weights(model: onnx.ModelProto) -> int:
    """Rewrite, in place, each int8 weight initializer of the WEIGHT_SLOTS operators and its zero point (128 where
    it had none) as uint8 plus 128: the same integers. A weight or zero point that anything else also reads is left as
    it is. Returns the number of weights rewritten."""
    graph = model.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    reads = Counter(name for node in graph.node for name in node.input if name)

    def int8_constant(name: str) -> bool:
        return name in initializers and initializers[name].data_type == onnx.TensorProto.INT8

    candidates = [(node, slots) for node in graph.node if (slots := WEIGHT_SLOTS.get(node.op_type))
                  and int8_constant(_input(node, slots[0])) and reads[_input(node, slots[0])] == 1]
    zero_reads = Counter(_input(node, zero) for node, (_, zero) in candidates)
    shifted: set[str] = set()
    for node, (weight, zero) in candidates:
        zero_point = _input(node, zero)
        if not zero_point:
            zero_point = f"{node.input[weight]}_unsigned_zero_point"
            graph.initializer.append(numpy_helper.from_array(np.array(SHIFT, dtype=np.uint8), zero_point))
            _set_input(node, zero, zero_point)
        elif zero_point not in shifted:
            if not int8_constant(zero_point) or zero_reads[zero_point] != reads[zero_point]:
                continue  # computed, or read by other nodes whose integers would move
            _shift(initializers[zero_point])
            shifted.add(zero_point)
        _shift(initializers[node.input[weight]])
        shifted.add(node.input[weight])
    return sum(1 for node, (weight, _) in candidates if node.input[weight] in shifted)


def exact_source(path: Path) -> tuple[str | bytes, int]:
    """What to give ONNX Runtime for an ONNX file: its path, or where this CPU's products saturate and the file has
    int8 weights, the rewritten model's bytes; with the number of weights rewritten."""
    if not products_saturate():
        return str(path), 0
    try:
        model = onnx.load(str(path))
    except Exception:  # not a readable ONNX file: ONNX Runtime then says so, naming it
        return str(path), 0
    rewritten = unsigned_weights(model)
    return (model.SerializeToString(), rewritten) if rewritten else (str(path), 0)
