"""Tasks: how request inputs become engine batches and engine outputs become answers, and each task's spec.

The registry below is the one list of tasks; everything else (the card, the CLI, both protocols, compression) looks
tasks up here by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from tokenizers import Tokenizer

from service.runtime.errors import ConfigError
from service.runtime.tasks import (
    question_answering,
    sentence_embedding,
    text_classification,
    token_classification,
)
from service.runtime.tasks.base import PredictOptions, Task
from service.runtime.tasks.spec import TaskSpec

if TYPE_CHECKING:
    from service.runtime.card import ModelCard

TASKS: dict[str, TaskSpec] = {
    module.SPEC.name: module.SPEC
    for module in (text_classification, question_answering, token_classification, sentence_embedding)
}
DEFAULT_TASK = text_classification.SPEC.name


def task_spec(name: str) -> TaskSpec:
    """The spec of the task of that name; ConfigError naming the known tasks otherwise."""
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; tasks: {', '.join(TASKS)}")
    return TASKS[name]


def build_task(card: ModelCard, tokenizer: Tokenizer, pad_id: int, input_names: Sequence[str]) -> Task:
    """The serving processor of the card's task, over a configured tokenizer and the engine's input names."""
    return task_spec(card.task).build(card, tokenizer, pad_id, input_names)

__all__ = ["DEFAULT_TASK", "TASKS", "PredictOptions", "Task", "TaskSpec", "build_task", "task_spec"]
