"""Self-attention fused into ONNX Runtime's ``com.microsoft.Attention`` operator, in our own exports.

ONNX Runtime's transformer optimizer does not recognise the attention of a transformers 5 export (its mask, its
score scaling by Mul and its reshape to -1 heads differ from the patterns it matches), so an ONNX Runtime file
keeps about twenty small operators per layer, and dynamic quantization cannot turn them into its INT8
``QAttention`` kernel. Our exports have one shape of attention per layer (see the module's test), matched here
from each Softmax outward:

    Q = Transpose(Reshape(X·Wq + bq))        perm 0,2,1,3
    K = Transpose(Reshape(X·Wk + bk))        perm 0,2,3,1
    V = Transpose(Reshape(X·Wv + bv))        perm 0,2,1,3
    P = Softmax(Q·K * scale + mask)          the mask derived from the attention_mask input alone
    O = Reshape(Transpose(P·V))              perm 0,2,1,3

and replaced by ``Attention(X, [Wq|Wk|Wv], [bq|bk|bv], mask)`` with ``num_heads`` and ``scale`` read from the
graph. A layer whose attention differs (MPNet adds a relative position bias to the scores) is left as it is and
counted, so the caller can report what was fused.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from compression.graph_index import GraphIndex, drop_unused_initializers

MASK_INPUT = "attention_mask"
MASK_INT32 = "/oberta/attention/mask_int32"


@dataclass(frozen=True)
class _Projection:
    """One of Q, K, V: the MatMul's input, weight and bias, and the head size its Reshape splits into."""

    source: str
    weight: np.ndarray
    bias: np.ndarray
    head_size: int


@dataclass(frozen=True)
class FusionReport:
    """How many self-attention blocks were fused, and how many Softmax nodes did not match the pattern."""

    fused: int
    unmatched: int


def _perm(node: onnx.NodeProto) -> list[int]:
    return [int(p) for p in helper.get_attribute_value(next(a for a in node.attribute if a.name == "perm"))]


def _projection(g: GraphIndex, transposed: str, perm: list[int]) -> _Projection | None:
    """Q, K or V behind ``Transpose(perm)(Reshape(Add(MatMul(X, W), b)))``, or None if the tensor is made otherwise."""
    transpose = g.made_by(transposed, "Transpose")
    if transpose is None or _perm(transpose) != perm:
        return None
    reshape = g.made_by(transpose.input[0], "Reshape")
    add = g.made_by(reshape.input[0], "Add") if reshape is not None else None
    if reshape is None or add is None:
        return None
    shape = g.made_by(reshape.input[1], "Concat")
    head_size = g.constant(shape.input[-1]) if shape is not None else g.constant(reshape.input[1])
    if head_size is None:
        return None
    for bias_name, product in (add.input, reversed(add.input)):
        matmul = g.made_by(product, "MatMul")
        if matmul is None:
            continue
        bias, weight = g.constant(bias_name), g.constant(matmul.input[1])
        if bias is not None and weight is not None and weight.ndim == 2:
            return _Projection(matmul.input[0], weight, bias, int(np.asarray(head_size).reshape(-1)[-1]))
    return None


def _match(g: GraphIndex, softmax: onnx.NodeProto) -> tuple[list[_Projection], float, onnx.NodeProto] | None:
    """The Q, K, V projections, the score scale and the output Reshape of one self-attention, or None."""
    masked = g.made_by(softmax.input[0], "Add")
    if masked is None:
        return None
    mask_sides = [i for i in masked.input if g.depends_only_on(i, MASK_INPUT)]
    if len(mask_sides) != 1:
        return None
    scaled = g.made_by(next(i for i in masked.input if i != mask_sides[0]), "Mul")
    if scaled is None:
        return None
    factors = [g.constant(i) for i in scaled.input]
    scale = next((f for f in factors if f is not None and f.size == 1), None)
    scores = next((g.made_by(i, "MatMul") for i in scaled.input if g.constant(i) is None), None)
    if scale is None or scores is None:
        return None
    context = g.only_consumer(softmax.output[0], "MatMul")
    if context is None or context.input[0] != softmax.output[0]:
        return None
    query = _projection(g, scores.input[0], [0, 2, 1, 3])
    key = _projection(g, scores.input[1], [0, 2, 3, 1])
    value = _projection(g, context.input[1], [0, 2, 1, 3])
    merge = g.only_consumer(context.output[0], "Transpose")
    output = g.only_consumer(merge.output[0], "Reshape") if merge is not None and _perm(merge) == [0, 2, 1, 3] else None
    projections = [p for p in (query, key, value) if p is not None]
    if output is None or len(projections) != 3 or len({p.source for p in projections}) != 1:
        return None
    if len({p.head_size for p in projections}) != 1 or len({p.weight.shape for p in projections}) != 1:
        return None
    return projections, float(np.asarray(scale).reshape(-1)[0]), output


def _live_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """The nodes that some graph output depends on, in their order."""
    nodes = list(graph.node)
    producer = {name: index for index, node in enumerate(nodes) for name in node.output}
    live: set[int] = set()
    stack = [o.name for o in graph.output]
    while stack:
        index = producer.get(stack.pop())
        if index is None or index in live:
            continue
        live.add(index)
        stack.extend(i for i in nodes[index].input if i)
    return [node for index, node in enumerate(nodes) if index in live]


def fuse_attention(model: onnx.ModelProto) -> FusionReport:
    """Replace each matched self-attention by one ``com.microsoft.Attention`` node, in place; drop what became
    unused; returns what was fused."""
    graph = model.graph
    g = GraphIndex(graph)
    replacements: dict[str, onnx.NodeProto] = {}  # keyed by the output Reshape's output
    unmatched = 0
    for softmax in [n for n in graph.node if n.op_type == "Softmax"]:
        matched = _match(g, softmax)
        if matched is None:
            unmatched += 1
            continue
        projections, scale, output = matched
        index = len(replacements)
        weight = np.concatenate([p.weight for p in projections], axis=1).astype(np.float32)
        bias = np.concatenate([p.bias for p in projections]).astype(np.float32)
        weight_name, bias_name = f"/oberta/attention.{index}/qkv_weight", f"/oberta/attention.{index}/qkv_bias"
        graph.initializer.extend([numpy_helper.from_array(weight, weight_name),
                                  numpy_helper.from_array(bias, bias_name)])
        heads = projections[0].weight.shape[1] // projections[0].head_size
        replacements[output.output[0]] = helper.make_node(
            "Attention", [projections[0].source, weight_name, bias_name, MASK_INT32], [output.output[0]],
            f"/oberta/attention.{index}/Attention", domain="com.microsoft", num_heads=heads, scale=scale,
        )
    if replacements:
        cast = helper.make_node("Cast", [MASK_INPUT], [MASK_INT32], "/oberta/attention/mask_cast",
                                to=onnx.TensorProto.INT32)
        nodes = [replacements.get(node.output[0], node) if node.output else node for node in graph.node]
        del graph.node[:]
        graph.node.extend([cast, *nodes])
        live = _live_nodes(graph)
        del graph.node[:]
        graph.node.extend(live)
        drop_unused_initializers(graph)
        if not any(o.domain == "com.microsoft" for o in model.opset_import):
            model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return FusionReport(fused=len(replacements), unmatched=unmatched)
