"""Text and text-pair classification from TSV, CSV or JSONL files; the metric is accuracy.

Sentence pairs (MRPC, RTE, STS-B) are rows with a second text column. STS-B's similarity scores (0 to 5) are learned
and served as classes: `round_labels` rounds each score half up to an integer, which gives the six classes 0..5.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
from transformers import (
    AutoModelForSequenceClassification,
    DataCollatorWithPadding,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from compression.data import Example, label_names, load_examples, split_validation
from compression.tasks.base import (
    DataConfig,
    Evaluation,
    Features,
    PreparedData,
    Rows,
    SpecTask,
    load_trained,
    new_head,
)
from compression.validation import ValidationRecord, counted, hold_out_sentences
from service.runtime.errors import ConfigError
from service.runtime.tasks.text_classification import SPEC


def round_label(example: Example) -> Example:
    """The example with its numeric label rounded half up to an integer (STS-B 3.5 -> 4, 2.4 -> 2)."""
    try:
        value = float(example.label)
    except ValueError as exc:
        raise ValueError(f"label {example.label!r} is not a number, so it cannot be rounded") from exc
    return replace(example, label=str(math.floor(value + 0.5)))


def carve(examples: list[Example], config: DataConfig) -> tuple[list[Example], list[Example], ValidationRecord]:
    """Train and validation examples, and how validation was made: the validation file, else the configured split
    of the training file (default: sentences for single texts, random for pairs)."""
    if config.validation_file:
        if config.validation_split:
            raise ConfigError("--validation-split carves validation from the training file: not with --validation-file")
        columns = (config.text_column, config.text_pair_column, config.label_column)
        validation = load_examples(config.validation_file, *columns)
        return examples, validation, ValidationRecord(method="file", file=config.validation_file)
    pairs = any(e.text_pair is not None for e in examples)
    split = config.validation_split or ("random" if pairs else "sentences")
    record = ValidationRecord(method=split, fraction=config.validation_fraction, seed=config.seed,
                              file=config.train_file)
    if split == "random":
        return *split_validation(examples, config.validation_fraction, config.seed), record
    holdout = hold_out_sentences(examples, config.validation_fraction, config.seed)
    record = record.model_copy(update={"sentences": holdout.sentences, "dropped_from_train": holdout.dropped})
    return holdout.train, holdout.validation, record


def texts(example: Example) -> tuple[str, ...]:
    """The example's text, or both sides of its pair."""
    return (example.text,) if example.text_pair is None else (example.text, example.text_pair)


def encode_examples(
    tokenizer: PreTrainedTokenizerBase,
    examples: list[Example],
    label_to_id: dict[str, int],
    max_length: int,
) -> Features:
    """Tokenize examples (no padding: batches are padded dynamically) and attach label ids."""
    texts = [e.text for e in examples]
    pairs = [e.text_pair for e in examples]
    has_pairs = any(p is not None for p in pairs)
    if has_pairs and any(p is None for p in pairs):
        raise ValueError("some examples have a text pair and some do not")
    encoded = tokenizer(
        texts, pairs if has_pairs else None, truncation=True, max_length=max_length, padding=False
    )
    features = []
    for i, example in enumerate(examples):
        if example.label not in label_to_id:
            raise ValueError(f"label {example.label!r} is not one of {sorted(label_to_id)}")
        feature = {key: values[i] for key, values in encoded.items()}
        feature["labels"] = label_to_id[example.label]
        features.append(feature)
    return features


def accuracy(rows: Rows, features: Features) -> dict[str, float]:
    """Share of features whose argmax logit is their label."""
    correct = sum(int(np.argmax(row[0])) == feature["labels"] for row, feature in zip(rows, features, strict=True))
    return {"accuracy": correct / len(features)}


class TextClassificationTask(SpecTask):
    """Sequence classification of texts and text pairs."""

    spec = SPEC
    metric = "accuracy"

    def prepare(self, config: DataConfig) -> PreparedData:
        """Load the training file, carve or load validation, count its overlaps with training, fix the label order."""
        columns = (config.text_column, config.text_pair_column, config.label_column)
        train, validation, record = carve(load_examples(config.train_file, *columns), config)
        if config.max_train_examples is not None:
            train = train[: config.max_train_examples]
        pairs = any(e.text_pair is not None for e in train + validation)
        record = counted(record, [texts(e) for e in train], [texts(e) for e in validation],
                         "each side of a pair" if pairs else "texts")
        if config.round_labels:
            train, validation = [round_label(e) for e in train], [round_label(e) for e in validation]
        labels = label_names(train + validation)
        display = config.label_names or labels
        if len(display) != len(labels):
            raise ValueError(f"--label-names gives {len(display)} names for {len(labels)} labels {labels}")
        return PreparedData(train, validation, record, labels, list(display))

    def new_model(self, base: str, data: PreparedData) -> PreTrainedModel:
        """A sequence classifier with label names from the data."""
        return new_head(AutoModelForSequenceClassification, base, data.display_labels)

    def load_model(self, path: str) -> PreTrainedModel:
        """A trained sequence classifier."""
        return load_trained(AutoModelForSequenceClassification, path)

    def check_model(self, model: PreTrainedModel, data: PreparedData, role: str) -> None:
        """The model must have one output per label."""
        if model.config.num_labels != len(data.labels):
            raise ValueError(f"the {role} has {model.config.num_labels} labels but the data has {len(data.labels)}")

    def features(
        self, tokenizer: PreTrainedTokenizerBase, examples: list[Any], data: PreparedData, config: DataConfig,
        input_names: list[str],
    ) -> Features:
        """Tokenized texts (or pairs) with label ids."""
        label_to_id = {label: i for i, label in enumerate(data.labels)}
        return encode_examples(tokenizer, examples, label_to_id, config.max_length)

    def evaluation(
        self, tokenizer: PreTrainedTokenizerBase, examples: list[Any], data: PreparedData, config: DataConfig,
        input_names: list[str],
    ) -> Evaluation:
        """Validation features scored by accuracy."""
        features = self.features(tokenizer, examples, data, config, input_names)
        return Evaluation(features, lambda rows: accuracy(rows, features))

    def collator(self, tokenizer: PreTrainedTokenizerBase) -> Callable[[Features], Any]:
        """Dynamic padding."""
        return DataCollatorWithPadding(tokenizer)
