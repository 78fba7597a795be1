"""The tasks `oberta finetune`, `compress` and `export` support, by the card's task name."""

from __future__ import annotations

from compression.tasks.base import CompressionTask, DataConfig, Evaluation, PreparedData, TaskName
from compression.tasks.question_answering import QuestionAnsweringTask
from compression.tasks.text_classification import TextClassificationTask
from compression.tasks.token_classification import TokenClassificationTask

TASKS: dict[str, CompressionTask] = {
    task.name: task for task in (TextClassificationTask(), QuestionAnsweringTask(), TokenClassificationTask())
}


def task_for(name: str) -> CompressionTask:
    """The task of that name; ValueError for others."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; tasks: {', '.join(TASKS)}")
    return TASKS[name]


__all__ = ["TASKS", "CompressionTask", "DataConfig", "Evaluation", "PreparedData", "TaskName", "task_for"]
