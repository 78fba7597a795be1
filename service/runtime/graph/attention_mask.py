"""A leaner attention mask in exported encoder graphs.

transformers 5 exports the padding mask of a bidirectional encoder as a [batch, 1, query, key] tensor built by a
chain of Range, Unsqueeze, Gather, And, Expand and Where nodes, which every layer then adds to its attention
scores. For an encoder the query axis carries no information (every query sees the same keys), so the same
additive mask is ``Where(attention_mask[:, None, None, :] != 0, 0, min)`` of shape [batch, 1, 1, key]: the same
values after broadcasting, a fraction of the work, and a shape DeepSparse fuses into the attention kernels.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

log = logging.getLogger(__name__)
MASK_INPUT = "attention_mask"
SCORE_ADD = "attention/self/Add"
PREFIX = "/oberta/attention_mask"


def _constant_value(graph: onnx.GraphProto, name: str) -> np.ndarray | None:
    for node in graph.node:
        if node.op_type == "Constant" and name in node.output:
            return numpy_helper.to_array(node.attribute[0].t)
    for init in graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    return None


def _shared_mask(graph: onnx.GraphProto) -> tuple[str, float] | None:
    """The mask tensor every attention-score Add shares, and its fill value, if the graph has that form."""
    adds = [node for node in graph.node if node.op_type == "Add" and SCORE_ADD in node.name]
    if not adds:
        return None
    shared = set(adds[0].input).intersection(*(set(node.input) for node in adds[1:]))
    if len(shared) != 1:
        return None
    mask = shared.pop()
    where = next((node for node in graph.node if mask in node.output), None)
    if where is None or where.op_type != "Where" or where.name.startswith(PREFIX):
        return None  # another form, or already rewritten
    kept, fill = (_constant_value(graph, name) for name in where.input[1:])
    if kept is None or fill is None or kept.size != 1 or fill.size != 1 or float(kept) != 0.0:
        return None
    return mask, float(fill)


def _prune_dead_nodes(graph: onnx.GraphProto) -> int:
    """Remove nodes whose outputs reach no graph output; returns how many went."""
    needed = {output.name for output in graph.output}
    live = []
    for node in reversed(graph.node):
        if any(name in needed for name in node.output):
            live.append(node)
            needed.update(node.input)
    removed = len(graph.node) - len(live)
    live.reverse()
    del graph.node[:]
    graph.node.extend(live)
    return removed


def simplify_attention_mask(model: onnx.ModelProto) -> bool:
    """Rewrite the shared [batch, 1, query, key] attention mask as [batch, 1, 1, key], in place.

    Returns False (graph untouched) when the graph has no mask of the expected form.
    """
    graph = model.graph
    if MASK_INPUT not in {i.name for i in graph.input}:
        return False
    found = _shared_mask(graph)
    if found is None:
        return False
    mask, fill = found
    graph.initializer.extend([
        numpy_helper.from_array(np.array([1, 2], dtype=np.int64), f"{PREFIX}/axes"),
        numpy_helper.from_array(np.array(0.0, dtype=np.float32), f"{PREFIX}/kept"),
        numpy_helper.from_array(np.array(fill, dtype=np.float32), f"{PREFIX}/fill"),
    ])
    nodes = [
        helper.make_node("Cast", [MASK_INPUT], [f"{PREFIX}/bool"], name=f"{PREFIX}/Cast", to=onnx.TensorProto.BOOL),
        helper.make_node("Unsqueeze", [f"{PREFIX}/bool", f"{PREFIX}/axes"], [f"{PREFIX}/bool4d"],
                         name=f"{PREFIX}/Unsqueeze"),
        helper.make_node("Where", [f"{PREFIX}/bool4d", f"{PREFIX}/kept", f"{PREFIX}/fill"], [f"{PREFIX}/additive"],
                         name=f"{PREFIX}/Where"),
    ]
    for node in graph.node:
        for index, name in enumerate(node.input):
            if name == mask:
                node.input[index] = f"{PREFIX}/additive"
    position = next(i for i, node in enumerate(graph.node) if f"{PREFIX}/additive" in node.input)
    for offset, node in enumerate(nodes):
        graph.node.insert(position + offset, node)
    removed = _prune_dead_nodes(graph)
    log.debug("attention mask: [batch, 1, query, key] subgraph (%d nodes) replaced by [batch, 1, 1, key]", removed)
    return True


def simplify_attention_mask_file(path: Path) -> bool:
    """:func:`simplify_attention_mask` on an ONNX file, rewritten in place only when it changed."""
    model = onnx.load(str(path))
    if not simplify_attention_mask(model):
        return False
    onnx.save(model, str(path))
    return True
