"""The evaluate stage: the task metric of each ONNX file on the validation features (ONNX Runtime, CPU)."""

from __future__ import annotations

from pathlib import Path

from compression.evaluate import onnx_rows
from compression.stages.prepare import Prepared, prefixed


def evaluate(graphs: dict[str, Path], prepared: Prepared) -> dict[str, float]:
    """Metrics of each named graph, prefixed with its name (e.g. ``int8_deepsparse_graph_accuracy``)."""
    metrics: dict[str, float] = {}
    for name, path in graphs.items():
        rows = onnx_rows(path, prepared.evaluation.features, prepared.input_names, prepared.pad_id)
        metrics.update(prefixed(name, prepared.evaluation.score(rows)))
    return metrics
