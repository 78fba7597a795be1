"""Text classification: a text or a [text, text_pair] in, the most likely label (and optionally the top k) out."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, Field
from tokenizers import Tokenizer

from service.runtime.errors import BadInput
from service.runtime.tasks.base import PredictOptions
from service.runtime.tasks.encoding import Encoded, TextEncoder, TextInput, check_input_names, collate_encodings
from service.runtime.tasks.signature import Answers, Signature, TensorSpec, numbers, strings
from service.runtime.tasks.spec import TaskSpec

if TYPE_CHECKING:
    from service.runtime.card import ModelCard


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis, in float64."""
    shifted = logits.astype(np.float64) - np.max(logits, axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def softmax_row(logits: np.ndarray) -> list[float]:
    """Softmax of one vector of logits in Python floats: for a few labels, numpy's per-call overhead costs more than
    the arithmetic."""
    values = [float(value) for value in logits.tolist()]
    top = max(values)
    exps = [math.exp(value - top) for value in values]
    total = sum(exps)
    return [value / total for value in exps]


def _check_input(index: int, value: object) -> TextInput:
    if isinstance(value, str):
        if not value.strip():
            raise BadInput(f"inputs[{index}] is empty")
        return value
    if isinstance(value, list | tuple) and len(value) == 2 and all(isinstance(text, str) for text in value):
        for position, text in enumerate(value):
            if not text.strip():
                raise BadInput(f"inputs[{index}][{position}] is empty")
        return (value[0], value[1])
    raise BadInput(f"inputs[{index}] must be a string or a [text, text_pair] list of two strings")


class TextClassification:
    """Sequence classification over the card's labels with softmax scores."""

    def __init__(
        self, tokenizer: Tokenizer, pad_id: int, labels: Sequence[str], input_names: Sequence[str], max_length: int
    ) -> None:
        self._encoder = TextEncoder(tokenizer, max_length, word_cache=True)
        self._pad_id = pad_id
        self._labels = list(labels)
        self._input_names = check_input_names(input_names)

    def preprocess(self, inputs: Sequence[object]) -> list[Encoded]:
        """Validate texts and pairs and tokenize them; raises BadInput naming the offending input."""
        texts = [_check_input(index, value) for index, value in enumerate(inputs)]
        return self._encoder.encode_ids(texts)

    def tokens(self, item: Encoded) -> int:
        """The text's length in tokens."""
        return len(item.ids)

    def collate(self, items: Sequence[Encoded]) -> dict[str, np.ndarray]:
        """Pad a batch of encodings to its longest."""
        return collate_encodings(items, self._input_names, self._pad_id)

    def postprocess(self, item: Encoded, outputs: Sequence[np.ndarray], options: PredictOptions) -> dict[str, Any]:
        """Best label and score from the item's logits; with top_k, also the k best labels."""
        logits = outputs[0]
        if logits.shape != (len(self._labels),):
            raise ValueError(f"logits of shape {logits.shape} do not match the {len(self._labels)} labels of the card")
        scores = softmax_row(logits)
        order = sorted(range(len(scores)), key=lambda index: -scores[index])  # stable: ties keep the card's order
        best = order[0]
        answer: dict[str, Any] = {"label": self._labels[best], "score": scores[best]}
        if options.top_k is not None:
            top = order[: options.top_k]
            answer["labels"] = [{"label": self._labels[index], "score": scores[index]} for index in top]
        return answer

    def answers(
        self, items: Sequence[Encoded], outputs: Sequence[Sequence[np.ndarray]], options: PredictOptions
    ) -> list[dict[str, Any]]:
        """One answer per item (each input is one item)."""
        return [self.postprocess(item, rows, options) for item, rows in zip(items, outputs, strict=True)]

    def example_inputs(self) -> list[object]:
        """A single text and a pair."""
        return ["oberta warm-up", ["oberta warm-up", "second text"]]


class LabelScore(BaseModel):
    """A label and its probability."""

    label: str = Field(description="label name from the model card")
    score: float = Field(description="softmax probability")


class ClassificationOutput(BaseModel):
    """The answer for one text-classification input."""

    label: str = Field(description="most likely label")
    score: float = Field(description="its softmax probability")
    labels: list[LabelScore] | None = Field(default=None, description="the top_k labels, best first, when asked for")


def _processor(card: ModelCard, tokenizer: Tokenizer, pad_id: int, input_names: Sequence[str]) -> TextClassification:
    return TextClassification(tokenizer, pad_id, card.labels, input_names, card.max_length)


def v2_signature(card: ModelCard) -> Signature:
    """Inputs `text` and, for pairs, `text_pair` (as many elements as `text`); outputs `label` (BYTES), `score`
    (FP32) and `scores` (FP32 [n, labels], in the order of the metadata's `labels`)."""
    column = {label: index for index, label in enumerate(card.labels)}

    def build_inputs(elements: Mapping[str, list[str]]) -> list[object]:
        pairs = elements.get("text_pair")
        if pairs is None:
            return list(elements["text"])
        return [(text, pair) for text, pair in zip(elements["text"], pairs, strict=True)]

    def build_outputs(answers: Answers) -> dict[str, np.ndarray]:
        scores = np.zeros((len(answers), len(column)), dtype=np.float32)
        for row, answer in enumerate(answers):
            for entry in answer["labels"]:
                scores[row, column[entry["label"]]] = entry["score"]
        return {"label": strings(answers, "label"), "score": numbers(answers, "score", np.float32), "scores": scores}

    return Signature(
        inputs=(TensorSpec("text", "BYTES"), TensorSpec("text_pair", "BYTES", optional=True)),
        outputs=(
            TensorSpec("label", "BYTES"),
            TensorSpec("score", "FP32"),
            TensorSpec("scores", "FP32", (-1, len(card.labels))),
        ),
        build_inputs=build_inputs,
        build_outputs=build_outputs,
        build_options=lambda _: PredictOptions(top_k=len(card.labels)),
    )


SPEC = TaskSpec(
    name="text-classification",
    summary="a text or a [text, text_pair] in, a label with its probability out (TSV, CSV or JSONL to train)",
    output_names=("logits",),
    per_token=False,
    has_labels=True,
    accepts_text=True,
    build=_processor,
    v1_inputs=(str, tuple[str, str]),
    v1_output=ClassificationOutput,
    v2_signature=v2_signature,
    options=frozenset({"top_k"}),
)
