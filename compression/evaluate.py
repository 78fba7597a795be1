"""Outputs of exported ONNX models and of PyTorch models on encoded features, for the tasks' metrics."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel

from service.runtime.engines.onnxruntime_engine import OnnxRuntimeEngine

Run = Callable[[Mapping[str, np.ndarray]], Sequence[np.ndarray]]
SERVED_BATCH = 16  # the largest batch the server runs by default and `oberta evaluate` scores with


def pad_batch(
    features: list[dict[str, Any]], input_names: list[str], pad_id: int = 0, length: int | None = None
) -> dict[str, np.ndarray]:
    """Pad tokenized features to ``length`` (default: the longest in the batch) as int64 arrays."""
    length = length or max(len(f["input_ids"]) for f in features)
    batch = {}
    for name in input_names:
        fill = pad_id if name == "input_ids" else 0
        rows = [list(f.get(name, [0] * len(f["input_ids"]))) for f in features]
        batch[name] = np.array([r + [fill] * (length - len(r)) for r in rows], dtype=np.int64)
    return batch


def batches(
    features: list[dict[str, Any]], input_names: list[str], batch_size: int, pad_id: int = 0,
    length: int | None = None,
) -> list[dict[str, np.ndarray]]:
    """Consecutive padded batches of the features (all to ``length`` when given)."""
    return [
        pad_batch(features[i : i + batch_size], input_names, pad_id, length)
        for i in range(0, len(features), batch_size)
    ]


def engine_rows(
    run: Run, features: list[dict[str, Any]], input_names: list[str], pad_id: int = 0, batch_size: int = 64
) -> list[list[np.ndarray]]:
    """Every feature's row of every output of a model run batch by batch (``run``: padded inputs -> outputs), in
    feature order."""
    rows: list[list[np.ndarray]] = []
    for batch in batches(features, input_names, batch_size, pad_id):
        outputs = run(batch)
        rows.extend([output[row] for output in outputs] for row in range(len(batch["input_ids"])))
    return rows


def onnx_rows(
    onnx_path: Path, features: list[dict[str, Any]], input_names: list[str], pad_id: int = 0,
    batch_size: int = SERVED_BATCH,
) -> list[list[np.ndarray]]:
    """Every feature's row of every output of an ONNX model (ONNX Runtime, CPU), in feature order, in batches of
    the served size: a dynamically quantized file computes its activation scales over the whole batch, so its
    outputs, and its score, depend on the batch size (SST-2: 3 of 344 sentences differ between 16 and 64). INT8
    products are exact as served, also on a CPU without VNNI (onnxruntime_engine.EXACT_PRODUCTS)."""
    engine = OnnxRuntimeEngine(onnx_path, spinning=True)  # back-to-back batches
    return engine_rows(engine.run, features, input_names, pad_id, batch_size)


@torch.no_grad()
def torch_rows(
    model: PreTrainedModel, features: list[dict[str, Any]], input_names: list[str], output_names: tuple[str, ...],
    pad_id: int = 0, batch_size: int = 64,
) -> list[list[np.ndarray]]:
    """Every feature's row of the named outputs of a PyTorch model (on whatever device it is), in feature order.

    Batches are cut from the features in order of length, so little of them is padding.
    """
    model.eval()
    device = next(model.parameters()).device
    order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
    ordered_rows: list[list[np.ndarray]] = []
    for batch in batches([features[i] for i in order], input_names, batch_size, pad_id):
        outputs = model(**{k: torch.from_numpy(v).to(device) for k, v in batch.items()})
        arrays = [getattr(outputs, name).float().cpu().numpy() for name in output_names]
        ordered_rows.extend([array[row] for array in arrays] for row in range(len(batch["input_ids"])))
    rows: list[list[np.ndarray]] = [[] for _ in features]
    for position, row in zip(order, ordered_rows, strict=True):
        rows[position] = row
    return rows
