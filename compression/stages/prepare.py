"""The prepare stage: a run's task, data, tokenizer and features, shared by the training and export stages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from transformers import AutoTokenizer, PreTrainedModel

from compression.base_models import loading_from
from compression.evaluate import torch_rows
from compression.export import model_input_names
from compression.tasks import CompressionTask, DataConfig, Evaluation, PreparedData, task_for


@dataclass(frozen=True)
class Prepared:
    """Task, data and features of a run."""

    task: CompressionTask
    data: PreparedData
    tokenizer: Any
    train: list[dict[str, Any]]
    evaluation: Evaluation
    input_names: list[str]
    pad_id: int


def prepare(data_config: DataConfig, tokenizer_path: str, model: PreTrainedModel) -> Prepared:
    """Load the data, check the model's head fits it, and encode training and validation features."""
    task = task_for(data_config.task)
    data = task.prepare(data_config)
    task.check_model(model, data, "model")
    with loading_from(tokenizer_path):
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    input_names = model_input_names(model)
    train = task.features(tokenizer, data.train, data, data_config, input_names)
    evaluation = task.evaluation(tokenizer, data.validation, data, data_config, input_names)
    return Prepared(task, data, tokenizer, train, evaluation, input_names, tokenizer.pad_token_id or 0)


def prefixed(prefix: str, metrics: dict[str, float]) -> dict[str, float]:
    """Metrics named for what was measured, e.g. ``teacher_f1``."""
    return {f"{prefix}_{name}": value for name, value in metrics.items()}


def score(prepared: Prepared, model: PreTrainedModel) -> dict[str, float]:
    """The task metric of a PyTorch model on the validation features."""
    rows = torch_rows(model, prepared.evaluation.features, prepared.input_names, prepared.task.output_names,
                      prepared.pad_id)
    return prepared.evaluation.score(rows)
