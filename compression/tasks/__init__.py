"""The tasks `oberta finetune`, `compress` and `export` support, by the card's task name."""

from __future__ import annotations

from compression.tasks.base import CompressionTask, DataConfig, Evaluation, PreparedData
from compression.tasks.question_answering import QuestionAnsweringTask
from compression.tasks.sentence_embedding import SentenceEmbeddingTask
from compression.tasks.text_classification import TextClassificationTask
from compression.tasks.token_classification import TokenClassificationTask
from service.runtime.errors import ConfigError
from service.runtime.tasks import task_spec

TASKS: dict[str, CompressionTask] = {
    task.name: task
    for task in (TextClassificationTask(), QuestionAnsweringTask(), TokenClassificationTask(), SentenceEmbeddingTask())
}


def task_for(name: str) -> CompressionTask:
    """The compression side of the task of that name; ConfigError for unknown tasks and tasks not trained here."""
    spec = task_spec(name)
    if spec.name not in TASKS:
        raise ConfigError(f"task {name!r} is served but cannot be trained yet; trainable: {', '.join(TASKS)}")
    return TASKS[spec.name]


__all__ = ["TASKS", "CompressionTask", "DataConfig", "Evaluation", "PreparedData", "task_for"]
