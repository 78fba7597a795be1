"""Sentence embedding without labels: the dense model's vectors are the targets, STS and retrieval the metrics.

Training data is plain text (`.txt`, one text a line, or a text column). Validation is two measurements, neither of
which the student trains on: a scored sentence-pair file (STS-B: Spearman correlation of the cosine similarity with
the gold scores) and, optionally, retrieval on a SQuAD file (the questions of a seeded share of its articles matched
against all paragraphs of those articles: recall@1, recall@10 and mean reciprocal rank). Every training text inside a
validation text, or holding one, leaves training, and the overlap counts are recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import spearmanr
from transformers import DataCollatorWithPadding, PreTrainedModel, PreTrainedTokenizerBase

from compression.containment import ContainmentIndex, normalise
from compression.data import load_examples, load_texts, split_validation
from compression.embedding_model import load_embedding_model, model_settings
from compression.tasks.base import DataConfig, Evaluation, Features, PreparedData, Rows, SpecTask
from compression.tasks.question_answering import load_squad
from compression.validation import ValidationRecord, counted
from service.runtime.errors import ConfigError
from service.runtime.tasks.sentence_embedding import SPEC

RECALL_AT = (1, 10)


@dataclass(frozen=True)
class ScoredPair:
    """Two sentences and their gold similarity."""

    text: str
    text_pair: str
    score: float


@dataclass(frozen=True)
class Query:
    """A question and the paragraph that answers it."""

    question: str
    passage: str


def scored_pairs(path: str) -> list[ScoredPair]:
    """Sentence pairs with numeric scores (STS-B's sentence1, sentence2, score columns, or detected ones)."""
    pairs = []
    for example in load_examples(path):
        if example.text_pair is None:
            raise ConfigError(f"{path}: the sentence-embedding validation needs sentence pairs with scores")
        try:
            pairs.append(ScoredPair(example.text, example.text_pair, float(example.label)))
        except ValueError as exc:
            raise ConfigError(f"{path}: score {example.label!r} is not a number") from exc
    return pairs


def retrieval_queries(path: str, fraction: float, seed: int) -> tuple[list[Query], int]:
    """The questions of a seeded share of a SQuAD file's articles with their paragraphs, and the articles' count."""
    _, held_out = split_validation(load_squad(path), fraction, seed)
    return [Query(example.question, example.context) for article in held_out for example in article], len(held_out)


def texts_of(item: ScoredPair | Query) -> tuple[str, ...]:
    """The texts of a validation item."""
    return (item.text, item.text_pair) if isinstance(item, ScoredPair) else (item.question, item.passage)


def without_overlaps(train: list[str], validation: Sequence[ScoredPair | Query]) -> list[str]:
    """The training texts that are neither inside a validation text nor hold one."""
    forms = [normalise(text) for text in train]
    validation_forms = {normalise(text) for item in validation for text in texts_of(item)}
    validation_index, train_index = ContainmentIndex(validation_forms), ContainmentIndex(forms)
    holding = {train_index.texts[n] for form in validation_forms for n in train_index.holders(form)}
    return [text for text, form in zip(train, forms, strict=True)
            if form not in holding and not validation_index.holds(form)]


def spearman(pairs: Sequence[ScoredPair], vectors: dict[str, np.ndarray]) -> float:
    """Spearman correlation between the pairs' cosine similarities and their gold scores."""
    similarities = [cosine(vectors[pair.text], vectors[pair.text_pair]) for pair in pairs]
    return float(spearmanr(similarities, [pair.score for pair in pairs]).statistic)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two vectors."""
    return float(np.dot(a, b) / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12))


def retrieval(queries: Sequence[Query], vectors: dict[str, np.ndarray]) -> dict[str, float]:
    """Recall@k and mean reciprocal rank of each question's own paragraph among all the held-out paragraphs."""
    passages = list(dict.fromkeys(query.passage for query in queries))
    row = {passage: index for index, passage in enumerate(passages)}
    corpus = unit_rows(np.stack([vectors[passage] for passage in passages]))
    questions = unit_rows(np.stack([vectors[query.question] for query in queries]))
    similarities = questions @ corpus.T
    own = similarities[np.arange(len(queries)), [row[query.passage] for query in queries]]
    ranks = 1 + (similarities > own[:, None]).sum(axis=1)
    metrics = {f"retrieval_recall_at_{k}": float(np.mean(ranks <= k)) for k in RECALL_AT}
    metrics["retrieval_mrr"] = float(np.mean(1.0 / ranks))
    return metrics


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Each row scaled to unit length."""
    return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)


def embedding_metrics(items: Sequence[ScoredPair | Query], texts: list[str], rows: Rows) -> dict[str, float]:
    """STS Spearman and, when there are queries, the retrieval metrics, from one vector per distinct text."""
    vectors = {text: np.asarray(row[0], dtype=np.float64) for text, row in zip(texts, rows, strict=True)}
    pairs = [item for item in items if isinstance(item, ScoredPair)]
    queries = [item for item in items if isinstance(item, Query)]
    metrics = {"sts_spearman": spearman(pairs, vectors)}
    if queries:
        metrics.update(retrieval(queries, vectors))
    return metrics


class SentenceEmbeddingTask(SpecTask):
    """Embedding distillation on plain texts; scored on STS pairs and, optionally, SQuAD retrieval."""

    spec = SPEC
    metric = "sts_spearman"

    def prepare(self, config: DataConfig) -> PreparedData:
        """Load the texts, the STS pairs and the retrieval queries; drop every training text overlapping them."""
        if config.label_names or config.round_labels or config.validation_split:
            raise ConfigError("--label-names, --round-labels and --validation-split are for text classification")
        if not config.validation_file:
            raise ConfigError("sentence embedding is validated on scored sentence pairs: pass --validation-file "
                              "(e.g. STS-B's train.tsv: sentence1, sentence2, score)")
        validation: list[ScoredPair | Query] = list(scored_pairs(config.validation_file))
        record = ValidationRecord(method="file", file=config.validation_file)
        if config.retrieval_file:
            queries, articles = retrieval_queries(config.retrieval_file, config.validation_fraction, config.seed)
            validation.extend(queries)
            record = record.model_copy(update={"retrieval": ValidationRecord(
                method="articles", fraction=config.validation_fraction, seed=config.seed,
                file=config.retrieval_file, articles=articles)})
        texts = list(dict.fromkeys(load_texts(config.train_file, config.text_column)))
        train = without_overlaps(texts, validation)
        record = record.model_copy(update={"dropped_from_train": len(texts) - len(train)})
        if config.max_train_examples is not None:
            train = train[: config.max_train_examples]
        record = counted(record, [(text,) for text in train], [texts_of(item) for item in validation], "texts")
        return PreparedData(train, validation, record, labels=[])

    def new_model(self, base: str, data: PreparedData) -> PreTrainedModel:
        """The base encoder with its own pooling."""
        return load_embedding_model(base)

    def load_model(self, path: str) -> PreTrainedModel:
        """A (trained) encoder with its pooling."""
        return load_embedding_model(path)

    def check_model(self, model: PreTrainedModel, data: PreparedData, role: str) -> None:
        """Any encoder with pooling fits: there are no labels."""

    def card_settings(self, model: PreTrainedModel, given: dict[str, Any]) -> dict[str, Any]:
        """How the exported graph pools and the vector's length."""
        return model_settings(model).model_dump()

    @property
    def needs_teacher(self) -> bool:
        """No labels: the dense model's vectors are the targets."""
        return True

    @property
    def loss_averages_examples(self) -> bool:
        """No: token states average over tokens, and in-batch similarities compare a batch's texts with each other."""
        return False

    def features(
        self, tokenizer: PreTrainedTokenizerBase, examples: list[Any], data: PreparedData, config: DataConfig,
        input_names: list[str],
    ) -> Features:
        """Tokenized texts (no labels: the teacher's vectors are the targets)."""
        encoded = tokenizer(list(examples), truncation=True, max_length=config.max_length, padding=False)
        return [{name: encoded[name][i] for name in input_names} for i in range(len(examples))]

    def evaluation(
        self, tokenizer: PreTrainedTokenizerBase, examples: list[Any], data: PreparedData, config: DataConfig,
        input_names: list[str],
    ) -> Evaluation:
        """One feature per distinct validation text, scored by STS Spearman and retrieval."""
        texts = list(dict.fromkeys(text for item in examples for text in texts_of(item)))
        features = self.features(tokenizer, texts, data, config, input_names)
        return Evaluation(features, lambda rows: embedding_metrics(examples, texts, rows), in_trainer=False)

    def collator(self, tokenizer: PreTrainedTokenizerBase) -> Callable[[Features], Any]:
        """Dynamic padding."""
        return DataCollatorWithPadding(tokenizer)
