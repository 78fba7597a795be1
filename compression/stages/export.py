"""The export stage: the trained student as a checked FP32 ONNX model directory."""

from __future__ import annotations

from pathlib import Path

from transformers import PreTrainedModel

from compression.export import export_model_dir
from compression.stages.prepare import Prepared
from compression.tasks import DataConfig
from service.runtime.card import ModelCard


def export(student: PreTrainedModel, prepared: Prepared, data: DataConfig, model_dir: Path, name: str) -> ModelCard:
    """Write ``model.onnx`` (checked against PyTorch), the tokenizer and a first FP32 card into model_dir; returns
    that card, whose ``build`` holds the export's facts (parity, opset)."""
    return export_model_dir(
        student, prepared.tokenizer, model_dir, name, data.max_length,
        task=prepared.task.name, task_settings=prepared.task.card_settings(student, data.task_settings),
    )
