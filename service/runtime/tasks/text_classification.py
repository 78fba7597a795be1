"""Text classification: a text or a [text, text_pair] in, the most likely label (and optionally the top k) out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from tokenizers import Encoding, Tokenizer

from service.runtime.tasks.base import InputError, PredictOptions
from service.runtime.tasks.encoding import TextInput, check_input_names, collate_encodings, encode


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis, in float64."""
    shifted = logits.astype(np.float64) - np.max(logits, axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def _check_input(index: int, value: object) -> TextInput:
    if isinstance(value, str):
        if not value.strip():
            raise InputError(f"inputs[{index}] is empty")
        return value
    if isinstance(value, list | tuple) and len(value) == 2 and all(isinstance(text, str) for text in value):
        for position, text in enumerate(value):
            if not text.strip():
                raise InputError(f"inputs[{index}][{position}] is empty")
        return (value[0], value[1])
    raise InputError(f"inputs[{index}] must be a string or a [text, text_pair] list of two strings")


class TextClassification:
    """Sequence classification over the card's labels with softmax scores."""

    name = "text-classification"

    def __init__(
        self, tokenizer: Tokenizer, pad_id: int, labels: Sequence[str], input_names: Sequence[str], max_length: int
    ) -> None:
        self._tokenizer = tokenizer
        self._pad_id = pad_id
        self._labels = list(labels)
        self._input_names = check_input_names(input_names)
        self._max_length = max_length

    def preprocess(self, inputs: Sequence[object]) -> list[Encoding]:
        """Validate texts and pairs and tokenize them; raises InputError naming the offending input."""
        texts = [_check_input(index, value) for index, value in enumerate(inputs)]
        return encode(self._tokenizer, texts, self._max_length)

    def collate(self, items: Sequence[Encoding]) -> dict[str, np.ndarray]:
        """Pad a batch of encodings to its longest."""
        return collate_encodings(items, self._input_names, self._pad_id)

    def postprocess(self, item: Encoding, outputs: Sequence[np.ndarray], options: PredictOptions) -> dict[str, Any]:
        """Best label and score from the item's logits; with top_k, also the k best labels."""
        logits = outputs[0]
        if logits.shape != (len(self._labels),):
            raise ValueError(f"logits of shape {logits.shape} do not match the {len(self._labels)} labels of the card")
        scores = softmax(logits)
        order = np.argsort(-scores, kind="stable")
        best = int(order[0])
        answer: dict[str, Any] = {"label": self._labels[best], "score": float(scores[best])}
        if options.top_k is not None:
            answer["labels"] = [
                {"label": self._labels[int(index)], "score": float(scores[index])} for index in order[: options.top_k]
            ]
        return answer

    def answers(
        self, items: Sequence[Encoding], outputs: Sequence[Sequence[np.ndarray]], options: PredictOptions
    ) -> list[dict[str, Any]]:
        """One answer per item (each input is one item)."""
        return [self.postprocess(item, rows, options) for item, rows in zip(items, outputs, strict=True)]

    def example_inputs(self) -> list[object]:
        """A single text and a pair."""
        return ["oberta warm-up", ["oberta warm-up", "second text"]]
