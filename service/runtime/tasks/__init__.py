"""Tasks: how request inputs become engine batches and engine outputs become answers."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tokenizers import Tokenizer

from service.runtime.card import ModelCard, QuestionAnsweringSettings
from service.runtime.tasks.base import InputError, PredictOptions, Task
from service.runtime.tasks.question_answering import QuestionAnswering
from service.runtime.tasks.text_classification import TextClassification
from service.runtime.tasks.token_classification import TokenClassification

TaskBuilder = Callable[[ModelCard, Tokenizer, int, Sequence[str]], Task]


def _text_classification(card: ModelCard, tokenizer: Tokenizer, pad_id: int, input_names: Sequence[str]) -> Task:
    return TextClassification(tokenizer, pad_id, card.labels, input_names, card.max_length)


def _question_answering(card: ModelCard, tokenizer: Tokenizer, pad_id: int, input_names: Sequence[str]) -> Task:
    settings = card.question_answering or QuestionAnsweringSettings()
    return QuestionAnswering(tokenizer, pad_id, input_names, card.max_length, settings)


def _token_classification(card: ModelCard, tokenizer: Tokenizer, pad_id: int, input_names: Sequence[str]) -> Task:
    return TokenClassification(tokenizer, pad_id, card.labels, input_names, card.max_length)


TASKS: dict[str, TaskBuilder] = {
    "text-classification": _text_classification,
    "question-answering": _question_answering,
    "token-classification": _token_classification,
}


def build_task(card: ModelCard, tokenizer: Tokenizer, pad_id: int, input_names: Sequence[str]) -> Task:
    """The task the card names, over a configured tokenizer and the engine's input names."""
    if card.task not in TASKS:
        raise ValueError(f"model {card.name!r}: task {card.task} is not served yet (served: {sorted(TASKS)})")
    return TASKS[card.task](card, tokenizer, pad_id, input_names)


__all__ = ["TASKS", "InputError", "PredictOptions", "Task", "build_task"]
