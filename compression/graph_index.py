"""Lookups over an ONNX graph for our rewrites: who makes and who reads each tensor, and which tensors are constants."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper


class GraphIndex:
    """Lookups over a graph: the producer of each tensor, the consumers of each tensor, constants by name."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.graph = graph
        self.producer = {name: node for node in graph.node for name in node.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.initializers = {t.name: t for t in graph.initializer}

    def is_constant(self, name: str) -> bool:
        """Whether a tensor is an initializer, a Constant's output or an Identity of one (without reading it)."""
        if name in self.initializers:
            return True
        node = self.producer.get(name)
        if node is None:
            return False
        return node.op_type == "Constant" or (node.op_type == "Identity" and self.is_constant(node.input[0]))

    def constant(self, name: str) -> np.ndarray | None:
        """The value of a constant tensor (see ``is_constant``), or None for a computed one."""
        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant":
            return numpy_helper.to_array(node.attribute[0].t)
        if node is not None and node.op_type == "Identity":  # the exporter shares equal initializers this way
            return self.constant(node.input[0])
        return None

    def made_by(self, name: str, op_type: str) -> onnx.NodeProto | None:
        """The node of that type that makes the tensor, or None."""
        node = self.producer.get(name)
        return node if node is not None and node.op_type == op_type else None

    def only_consumer(self, name: str, op_type: str) -> onnx.NodeProto | None:
        """The tensor's one consumer if it has exactly one and of that type, or None."""
        users = self.consumers.get(name, [])
        return users[0] if len(users) == 1 and users[0].op_type == op_type else None

    def depends_only_on(self, name: str, graph_input: str) -> bool:
        """Whether a tensor is computed from constants and one graph input alone (the attention mask)."""
        stack, seen = [name], set()
        while stack:
            current = stack.pop()
            if current in seen or current == graph_input or self.is_constant(current):
                continue
            seen.add(current)
            node = self.producer.get(current)
            if node is None:
                return False
            stack.extend(i for i in node.input if i)
        return True


def drop_unused_initializers(graph: onnx.GraphProto) -> None:
    """Remove the initializers no node reads any more (after a rewrite replaced their readers)."""
    used = {name for node in graph.node for name in node.input}
    for tensor in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(tensor)
