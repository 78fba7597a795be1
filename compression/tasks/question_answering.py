"""Extractive question answering on SQuAD v1.1 JSON files; the metrics are exact match and F1.

Windows come from the server's own `QuestionWindows`: the same question cut (`max_query_length`), window length
(`max_length`), overlap (`doc_stride`) and offset mapping as serving. A training window whose context holds the whole
first answer is labelled with the answer's first and last tokens; other windows label both with the first token
([CLS] / <s>), the "no answer here" position. Without a validation file, validation is carved by article, so no
context is seen in both splits. Validation answers are decoded as the server decodes them (`window_spans`,
`best_spans`), except that a span is always given, since SQuAD v1.1 has no unanswerable questions.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import Encoding
from transformers import (
    AutoModelForQuestionAnswering,
    DataCollatorWithPadding,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from compression.base_models import loading_from
from compression.data import open_text, split_validation
from compression.tasks.base import (
    DataConfig,
    Evaluation,
    Features,
    PreparedData,
    Rows,
    SpecTask,
    load_trained,
    pick_inputs,
)
from compression.tasks.squad_metric import squad_scores
from compression.validation import ValidationRecord
from service.runtime.errors import ConfigError, MissingFile
from service.runtime.tasks.question_answering import (
    SPEC,
    QuestionAnsweringSettings,
    QuestionWindows,
    Span,
    best_spans,
    context_tokens,
    window_spans,
)


@dataclass(frozen=True)
class QAExample:
    """A question about a context with its gold answers: (text, character offset in the context)."""

    id: str
    question: str
    context: str
    answers: tuple[tuple[str, int], ...]


def load_squad(path: str | Path) -> list[list[QAExample]]:
    """The questions of a SQuAD v1.1 JSON file (optionally .gz or .xz), grouped by article."""
    path = Path(path)
    if not path.is_file():
        raise MissingFile(f"data file not found: {path}")
    with open_text(path) as handle:
        try:
            data = json.load(handle)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON: {exc}") from exc
    try:
        articles = [
            [
                QAExample(
                    str(qa["id"]), qa["question"], paragraph["context"],
                    tuple((answer["text"], int(answer["answer_start"])) for answer in qa["answers"]),
                )
                for paragraph in article["paragraphs"]
                for qa in paragraph["qas"]
            ]
            for article in data["data"]
        ]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not SQuAD JSON (data/paragraphs/context/qas/question/answers): {exc!r}") from exc
    unanswered = [e.id for article in articles for e in article if not e.answers]
    if unanswered:
        raise ValueError(f"{path}: questions without answers (SQuAD v1.1 answers every question): {unanswered[:5]}")
    return articles


def answer_tokens(encoding: Encoding, start: int, end: int) -> tuple[int, int]:
    """The window's first and last tokens of the answer at characters [start, end); (0, 0) when it is not inside."""
    tokens = context_tokens(encoding)
    offsets = encoding.offsets
    if len(tokens) == 0 or offsets[tokens[0]][0] > start or offsets[tokens[-1]][1] < end:
        return 0, 0
    first = max(int(t) for t in tokens if offsets[t][0] <= start)
    last = min(int(t) for t in tokens if offsets[t][1] >= end)
    return first, last


def _settings(config: DataConfig) -> QuestionAnsweringSettings:
    return QuestionAnsweringSettings.model_validate(config.task_settings)


def _windows(tokenizer: PreTrainedTokenizerBase, config: DataConfig) -> QuestionWindows:
    settings = _settings(config)
    return QuestionWindows(tokenizer.backend_tokenizer, config.max_length, settings.doc_stride,
                           settings.max_query_length)


def windows_of(
    windows: QuestionWindows, examples: list[QAExample], chunk: int = 1000
) -> Iterator[tuple[int, QAExample, Encoding]]:
    """(example index, example, window) for every window of every example, tokenized a chunk at a time."""
    for offset in range(0, len(examples), chunk):
        batch = examples[offset : offset + chunk]
        encoded = windows.encode([(e.question, e.context) for e in batch])
        for index, (example, encodings) in enumerate(zip(batch, encoded, strict=True), start=offset):
            for encoding in encodings:
                yield index, example, encoding


def window_feature(example: QAExample, encoding: Encoding, input_names: list[str]) -> dict[str, Any]:
    """A window's model inputs labelled with the example's first answer."""
    text, start = example.answers[0]
    first, last = answer_tokens(encoding, start, start + len(text))
    return {**pick_inputs(encoding, input_names), "start_positions": first, "end_positions": last}


def predicted_answers(
    rows: Rows, sources: list[tuple[int, Encoding]], examples: list[QAExample], max_answer_length: int
) -> list[str]:
    """Each example's best span over its windows, from the windows' start and end logits."""
    windows: list[list[tuple[list[Span], float]]] = [[] for _ in examples]
    for row, (index, encoding) in zip(rows, sources, strict=True):
        context = examples[index].context
        windows[index].append(window_spans(row[0], row[1], encoding, context, max_answer_length, top_k=1))
    return [best_spans(spans, top_k=1, allow_empty=False)[0].answer for spans in windows]


class QuestionAnsweringTask(SpecTask):
    """SQuAD-style extractive question answering."""

    spec = SPEC
    metric = "f1"

    def prepare(self, config: DataConfig) -> PreparedData:
        """Load questions; carve validation by article unless a validation file is given (overlaps are not counted:
        no article is in both splits)."""
        if config.label_names or config.round_labels:
            raise ValueError("--label-names and --round-labels are for text classification")
        if config.validation_split:
            raise ConfigError("--validation-split is for text classification; questions are carved by article")
        articles = load_squad(config.train_file)
        if config.validation_file:
            train = [e for article in articles for e in article]
            validation = [e for article in load_squad(config.validation_file) for e in article]
            record = ValidationRecord(method="file", file=config.validation_file)
        else:
            train_articles, validation_articles = split_validation(articles, config.validation_fraction, config.seed)
            train = [e for article in train_articles for e in article]
            validation = [e for article in validation_articles for e in article]
            record = ValidationRecord(method="articles", fraction=config.validation_fraction, seed=config.seed,
                                      file=config.train_file)
        if config.max_train_examples is not None:
            train = train[: config.max_train_examples]
        return PreparedData(train, validation, record, labels=[])

    def new_model(self, base: str, data: PreparedData) -> PreTrainedModel:
        """A span-prediction head on the base encoder."""
        with loading_from(base):
            return AutoModelForQuestionAnswering.from_pretrained(base, attn_implementation="eager")

    def load_model(self, path: str) -> PreTrainedModel:
        """A trained question-answering model."""
        return load_trained(AutoModelForQuestionAnswering, path)

    def check_model(self, model: PreTrainedModel, data: PreparedData, role: str) -> None:
        """Any span-prediction head fits."""

    def features(
        self, tokenizer: PreTrainedTokenizerBase, examples: list[Any], data: PreparedData, config: DataConfig,
        input_names: list[str],
    ) -> Features:
        """One feature per window with start and end positions."""
        windows = windows_of(_windows(tokenizer, config), examples)
        return [window_feature(example, encoding, input_names) for _, example, encoding in windows]

    def evaluation(
        self, tokenizer: PreTrainedTokenizerBase, examples: list[Any], data: PreparedData, config: DataConfig,
        input_names: list[str],
    ) -> Evaluation:
        """Validation windows scored by exact match and F1 of each question's best span."""
        windows = list(windows_of(_windows(tokenizer, config), examples))
        features = [window_feature(example, encoding, input_names) for _, example, encoding in windows]
        sources = [(index, encoding) for index, _, encoding in windows]
        golds = [[text for text, _ in example.answers] for example in examples]

        max_answer_length = _settings(config).max_answer_length

        def score(rows: Rows) -> dict[str, float]:
            return squad_scores(predicted_answers(rows, sources, examples, max_answer_length), golds)

        return Evaluation(features, score)

    def collator(self, tokenizer: PreTrainedTokenizerBase) -> Callable[[Features], Any]:
        """Dynamic padding (start and end positions are scalars)."""
        return DataCollatorWithPadding(tokenizer)
