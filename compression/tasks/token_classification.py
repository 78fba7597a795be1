"""Token classification (named entities) on CoNLL files; the metric is entity-level F1 (exact span and type).

A CoNLL file has one token per line with its tag in the last column, blank lines between sentences and -DOCSTART-
lines between documents; tags are IOB2. A sentence is tokenized as its words joined by single spaces, exactly as the
server tokenizes a text, and each word's tag labels its first sub-token; the other positions get -100, which the loss,
distillation and the metric ignore. Predicted word tags are read, as the server reads them, at first sub-tokens.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer
from transformers import (
    AutoModelForTokenClassification,
    DataCollatorForTokenClassification,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from compression.data import open_text, split_validation
from compression.tasks.base import (
    DataConfig,
    Evaluation,
    Features,
    PreparedData,
    Rows,
    SpecTask,
    load_trained,
    new_head,
    pick_inputs,
)
from compression.tasks.entity_metric import entity_scores
from compression.validation import ValidationRecord, counted, inside_none
from service.runtime.errors import ConfigError, MissingFile
from service.runtime.tasks.token_classification import SPEC, check_tags, first_tokens, word_spans

IGNORED = -100
DOCUMENT_START = "-DOCSTART-"


@dataclass(frozen=True)
class Sentence:
    """Words with their IOB2 tags."""

    words: tuple[str, ...]
    tags: tuple[str, ...]

    @property
    def text(self) -> str:
        """The words joined by single spaces, as a served text."""
        return " ".join(self.words)


def load_conll(path: str | Path) -> list[Sentence]:
    """The sentences of a CoNLL file (optionally .gz or .xz): token first, tag last on each line."""
    path = Path(path)
    if not path.is_file():
        raise MissingFile(f"data file not found: {path}")
    sentences: list[Sentence] = []
    words: list[str] = []
    tags: list[str] = []
    with open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            columns = line.split()
            if columns and columns[0] == DOCUMENT_START:
                continue
            if columns and len(columns) < 2:
                raise ValueError(f"{path}:{number}: a token line needs a tag in its last column")
            if columns:
                words.append(columns[0])
                tags.append(columns[-1])
            elif words:
                sentences.append(Sentence(tuple(words), tuple(tags)))
                words, tags = [], []
    if words:
        sentences.append(Sentence(tuple(words), tuple(tags)))
    if not sentences:
        raise ValueError(f"{path}: no sentences")
    return sentences


def tag_order(sentences: list[Sentence]) -> list[str]:
    """The distinct tags: O first, then by entity type, B- before I-."""
    tags = {tag for sentence in sentences for tag in sentence.tags}
    check_tags(sorted(tags))
    return sorted(tags, key=lambda tag: (tag != "O", tag[2:], tag[:2]))


def _tokenizer(tokenizer: PreTrainedTokenizerBase, max_length: int) -> Tokenizer:
    """The model's fast tokenizer, truncating to max_length and never padding (the server's truncate setting)."""
    copy = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    copy.no_padding()
    copy.enable_truncation(max_length)
    return copy


def sentence_features(
    tokenizer: Tokenizer, sentences: list[Sentence], label_to_id: dict[str, int], input_names: list[str]
) -> tuple[Features, list[list[int | None]]]:
    """Features labelled on first sub-tokens, and each sentence's first sub-token per word (None when cut off)."""
    features: Features = []
    firsts: list[list[int | None]] = []
    for sentence, encoding in zip(sentences, tokenizer.encode_batch([s.text for s in sentences]), strict=True):
        first = first_tokens(encoding, word_spans(sentence.text))
        labels = np.full(len(encoding.ids), IGNORED, dtype=np.int32)
        for position, tag in zip(first, sentence.tags, strict=True):
            if position is not None:
                labels[position] = label_to_id[tag]
        features.append({**pick_inputs(encoding, input_names), "labels": labels})
        firsts.append(first)
    return features, firsts


def predicted_tags(rows: Rows, firsts: list[list[int | None]], labels: list[str]) -> list[list[str | None]]:
    """Each sentence's word tags: the argmax at each word's first sub-token (None for words cut off)."""
    return [
        [None if position is None else labels[int(np.argmax(row[0][position]))] for position in first]
        for row, first in zip(rows, firsts, strict=True)
    ]


class TokenClassificationTask(SpecTask):
    """CoNLL-style named-entity recognition."""

    spec = SPEC
    metric = "f1"

    def prepare(self, config: DataConfig) -> PreparedData:
        """Load sentences, carve (at random) or load validation, drop every training sentence inside a validation
        sentence (CoNLL repeats headings and table lines across its files), then leave unscored every validation
        sentence inside a training sentence (short headings and broken table lines), so the overlaps counted are 0
        both ways; order the tags."""
        if config.label_names or config.round_labels:
            raise ValueError("--label-names and --round-labels are for text classification")
        if config.validation_split:
            raise ConfigError("--validation-split is for text classification; CoNLL sentences are carved at random")
        sentences = load_conll(config.train_file)
        if config.validation_file:
            train, validation = sentences, load_conll(config.validation_file)
            record = ValidationRecord(method="file", file=config.validation_file)
        else:
            train, validation = split_validation(sentences, config.validation_fraction, config.seed)
            record = ValidationRecord(method="random", fraction=config.validation_fraction, seed=config.seed,
                                      file=config.train_file)
        kept = [train[n] for n in inside_none([s.text for s in train], [s.text for s in validation])]
        dropped_from_train = len(train) - len(kept)
        train = kept if config.max_train_examples is None else kept[: config.max_train_examples]
        scored = [validation[n] for n in inside_none([s.text for s in validation], [s.text for s in train])]
        record = record.model_copy(update={"dropped_from_train": dropped_from_train,
                                           "dropped_from_validation": len(validation) - len(scored)})
        validation = scored
        record = counted(record, [(s.text,) for s in train], [(s.text,) for s in validation], "sentences")
        labels = tag_order(train + validation)
        return PreparedData(train, validation, record, labels, labels)

    def new_model(self, base: str, data: PreparedData) -> PreTrainedModel:
        """A per-token classifier over the tags."""
        return new_head(AutoModelForTokenClassification, base, data.labels)

    def load_model(self, path: str) -> PreTrainedModel:
        """A trained token classifier."""
        return load_trained(AutoModelForTokenClassification, path)

    def check_model(self, model: PreTrainedModel, data: PreparedData, role: str) -> None:
        """The model's tags must be the data's, in the same order."""
        tags = [str(tag) for _, tag in sorted((int(i), tag) for i, tag in (model.config.id2label or {}).items())]
        if tags != data.labels:
            raise ValueError(f"the {role} has tags {tags} but the data has {data.labels}")

    @property
    def loss_averages_examples(self) -> bool:
        """No: cross-entropy and distillation average over the batch's labelled tokens."""
        return False

    def features(
        self, tokenizer: PreTrainedTokenizerBase, examples: list[Any], data: PreparedData, config: DataConfig,
        input_names: list[str],
    ) -> Features:
        """Tokenized sentences with tag ids on first sub-tokens."""
        label_to_id = {label: i for i, label in enumerate(data.labels)}
        return sentence_features(_tokenizer(tokenizer, config.max_length), examples, label_to_id, input_names)[0]

    def evaluation(
        self, tokenizer: PreTrainedTokenizerBase, examples: list[Any], data: PreparedData, config: DataConfig,
        input_names: list[str],
    ) -> Evaluation:
        """Validation sentences scored by entity-level precision, recall and F1."""
        label_to_id = {label: i for i, label in enumerate(data.labels)}
        features, firsts = sentence_features(
            _tokenizer(tokenizer, config.max_length), examples, label_to_id, input_names
        )
        gold = [list(sentence.tags) for sentence in examples]

        def score(rows: Rows) -> dict[str, float]:
            return entity_scores(gold, predicted_tags(rows, firsts, data.labels))

        return Evaluation(features, score)

    def collator(self, tokenizer: PreTrainedTokenizerBase) -> Callable[[Features], Any]:
        """Dynamic padding; padded labels are -100."""
        return DataCollatorForTokenClassification(tokenizer)
