"""Accuracy of exported ONNX classifiers and of PyTorch models on encoded features."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from transformers import PreTrainedModel


def pad_batch(features: list[dict[str, Any]], input_names: list[str], pad_id: int = 0) -> dict[str, np.ndarray]:
    """Pad tokenized features to the longest in the batch as int64 arrays."""
    length = max(len(f["input_ids"]) for f in features)
    batch = {}
    for name in input_names:
        fill = pad_id if name == "input_ids" else 0
        rows = [list(f.get(name, [0] * len(f["input_ids"]))) for f in features]
        batch[name] = np.array([r + [fill] * (length - len(r)) for r in rows], dtype=np.int64)
    return batch


def batches(
    features: list[dict[str, Any]], input_names: list[str], batch_size: int, pad_id: int = 0
) -> list[dict[str, np.ndarray]]:
    """Consecutive padded batches of the features."""
    return [pad_batch(features[i : i + batch_size], input_names, pad_id) for i in range(0, len(features), batch_size)]


def onnx_accuracy(
    onnx_path: Path, features: list[dict[str, Any]], input_names: list[str], pad_id: int = 0, batch_size: int = 64
) -> float:
    """Accuracy of an ONNX classifier (ONNX Runtime, CPU) on features with ``labels``."""
    options = ort.SessionOptions()
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    correct = 0
    for start in range(0, len(features), batch_size):
        chunk = features[start : start + batch_size]
        logits = session.run(None, pad_batch(chunk, input_names, pad_id))[0]
        correct += int((logits.argmax(-1) == np.array([f["labels"] for f in chunk])).sum())
    return correct / len(features)


@torch.no_grad()
def torch_accuracy(
    model: PreTrainedModel, features: list[dict[str, Any]], input_names: list[str], pad_id: int = 0,
    batch_size: int = 64,
) -> float:
    """Accuracy of a PyTorch classifier on features with ``labels``."""
    model.eval()
    correct = 0
    for start in range(0, len(features), batch_size):
        chunk = features[start : start + batch_size]
        inputs = {k: torch.from_numpy(v) for k, v in pad_batch(chunk, input_names, pad_id).items()}
        logits = model(**inputs).logits
        correct += int((logits.argmax(-1).numpy() == np.array([f["labels"] for f in chunk])).sum())
    return correct / len(features)
