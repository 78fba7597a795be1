"""A training batch cut into parts of rows for its forward and backward passes (`TrainingLoop.micro_batch_tokens`).

On a CPU the time per window of a step grows with the batch's size once its activations outgrow the caches: the
5-layer question-answering student took 263 ms a 384-token window in batches of 32 and 130 ms in batches of 5 (2
Zen 4 cores, bf16, forward, backward and optimizer step). Each part's loss is weighted by its share of the batch's
rows, so where the loss averages over examples the gradients add up to the whole batch's.
"""

from __future__ import annotations

from typing import Any

import torch

from service.runtime.errors import ConfigError


def row_count(batch: dict[str, Any]) -> int:
    """The batch's rows: the first dimension of its input ids."""
    return int(batch["input_ids"].shape[0])


def split_rows(batch: dict[str, Any], max_tokens: int | None) -> list[dict[str, Any]]:
    """The batch cut along its rows into consecutive parts of at most ``max_tokens`` tokens (rows times the padded
    length; at least one row a part); the batch itself, alone in the list, where it fits or ``max_tokens`` is None."""
    rows, length = batch["input_ids"].shape[:2]
    per_part = max(1, max_tokens // length) if max_tokens is not None else rows
    if per_part >= rows:
        return [batch]
    return [
        {name: value[start : start + per_part] if _has_rows(value, rows) else value for name, value in batch.items()}
        for start in range(0, rows, per_part)
    ]


def _has_rows(value: Any, rows: int) -> bool:
    return isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == rows


def check_micro_batches(task_name: str, loss_averages_examples: bool, max_tokens: int | None) -> None:
    """Refuse micro_batch_tokens for a task whose losses do not average over examples (ConfigError)."""
    if max_tokens is not None and not loss_averages_examples:
        raise ConfigError(f"training.micro_batch_tokens is for tasks whose losses average over examples (text "
                          f"classification, question answering), not {task_name}: its parts would not add up to "
                          "the batch's gradient")
