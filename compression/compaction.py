"""Dead attention heads and feed-forward neurons dropped from an exported encoder graph.

A head whose rows of the attention output weight are all zero, or a feed-forward neuron whose row of the second
feed-forward weight is zero, adds nothing to the layer's output (compression/structure.py makes them so). Their
columns of the query, key, value and first feed-forward weights (and biases) and their rows of the output weights
are sliced away, which is exact: the graph computes the same outputs with smaller matrices, on every engine. The
exporter names nodes by module path, so each layer's weights are found by name (BERT and RoBERTa; MPNet's
feed-forward layers, not its heads: its relative position bias is per head).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from compression.graph_index import GraphIndex, drop_unused_initializers

LAYER = re.compile(r"encoder/layer\.(\d+)/(.+)/MatMul$")
ROLES = {
    "attention/self/query": "query", "attention/self/key": "key", "attention/self/value": "value",
    "attention/output/dense": "attention_output", "intermediate/dense": "intermediate", "output/dense": "output",
}


@dataclass(frozen=True)
class CompactionReport:
    """Heads and neurons left per layer after dropping the dead ones."""

    heads: list[int]
    neurons: list[int]
    dropped: bool  # whether the graph changed


class _Weights:
    """The MatMul weight and bias initializers of each layer's Linear layers, by role; replaced under new names."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.graph = graph
        self.index = GraphIndex(graph)
        self.layers: dict[int, dict[str, tuple[onnx.NodeProto, onnx.NodeProto | None]]] = {}
        for node in graph.node:
            match = LAYER.search(node.name) if node.op_type == "MatMul" else None
            if match is None or match.group(2) not in ROLES or not self.index.is_constant(node.input[1]):
                continue
            adds = [n for n in self.index.consumers.get(node.output[0], []) if n.op_type == "Add"]
            bias_add = adds[0] if len(adds) == 1 and self._bias_input(adds[0]) is not None else None
            self.layers.setdefault(int(match.group(1)), {})[ROLES[match.group(2)]] = (node, bias_add)
        self.replaced = 0

    def _bias_input(self, add: onnx.NodeProto) -> int | None:
        constants = [i for i, name in enumerate(add.input) if self.index.is_constant(name)]
        return constants[0] if len(constants) == 1 else None

    def weight(self, layer: int, role: str) -> np.ndarray:
        return self.index.constant(self.layers[layer][role][0].input[1])  # type: ignore[return-value]

    def replace(self, layer: int, role: str, weight: np.ndarray, bias_slice: np.ndarray | None) -> None:
        """Point the role's MatMul (and, with ``bias_slice``, its bias Add) at new, smaller initializers."""
        matmul, add = self.layers[layer][role]
        self.replaced += 1
        name = f"/oberta/compact/layer.{layer}/{role}"
        self.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(weight), f"{name}/weight"))
        matmul.input[1] = f"{name}/weight"
        if bias_slice is not None and add is not None:
            index = self._bias_input(add)
            assert index is not None
            bias = self.index.constant(add.input[index])
            assert bias is not None
            self.graph.initializer.append(numpy_helper.from_array(bias[bias_slice], f"{name}/bias"))
            add.input[index] = f"{name}/bias"


def _alive_groups(rows: np.ndarray, group: int) -> np.ndarray:
    """Indices of the groups of ``group`` rows that hold a non-zero weight."""
    return np.flatnonzero(np.abs(rows.reshape(-1, group * rows.shape[1])).sum(axis=1) > 0)


def compact(model: onnx.ModelProto, head_size: int) -> CompactionReport:
    """Drop dead heads and neurons from every layer, in place; returns what is left per layer."""
    graph = model.graph
    weights = _Weights(graph)
    heads_left, neurons_left = [], []
    for layer in sorted(weights.layers):
        roles = weights.layers[layer]
        if {"attention_output", "query", "key", "value"} <= set(roles):
            attention_output = weights.weight(layer, "attention_output")  # [heads * head_size, hidden]
            alive = _alive_groups(attention_output, head_size)
            heads = attention_output.shape[0] // head_size
            if 0 < len(alive) < heads:
                columns = (alive[:, None] * head_size + np.arange(head_size)).reshape(-1)
                for role in ("query", "key", "value"):
                    weights.replace(layer, role, weights.weight(layer, role)[:, columns], columns)
                weights.replace(layer, "attention_output", attention_output[columns], None)
            heads_left.append(len(alive) if len(alive) else heads)
        if {"intermediate", "output"} <= set(roles):
            output = weights.weight(layer, "output")  # [neurons, hidden]
            alive = _alive_groups(output, 1)
            if 0 < len(alive) < output.shape[0]:
                weights.replace(layer, "intermediate", weights.weight(layer, "intermediate")[:, alive], alive)
                weights.replace(layer, "output", output[alive], None)
            neurons_left.append(len(alive) if len(alive) else output.shape[0])
    drop_unused_initializers(graph)
    return CompactionReport(heads_left, neurons_left, weights.replaced > 0)


def compact_file(path: Path, head_size: int) -> CompactionReport:
    """Compact an ONNX file in place (rewritten only when something was dropped)."""
    model = onnx.load(str(path))
    report = compact(model, head_size)
    if report.dropped:
        onnx.save(model, str(path))
    return report
