"""Token classification (named entities): a text in, its entities with character offsets out.

Aggregation rule. Words are the text's whitespace-separated pieces, as in CoNLL files (one token per line). A word's
tag is the argmax of the logits at its first sub-token (training labels only first sub-tokens) and its score is that
tag's softmax probability. Tags are IOB2 (O, B-TYPE, I-TYPE) and merge into entities word by word: B-X starts an
entity of type X; I-X continues the open entity when it is of type X and otherwise starts one (a stray I-, read as
conlleval does); O, or a word cut off by truncation, closes it. An entity's text runs from its first word's start to
its last word's end, spaces between included, less any punctuation at either end ("Paris." gives "Paris", and also
"U.S." gives "U.S"); its score is the mean of its words' scores. Offsets are character positions in the text, end
exclusive.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, Field
from tokenizers import Encoding, Tokenizer

from service.runtime.errors import BadInput, ConfigError
from service.runtime.tasks.base import PredictOptions
from service.runtime.tasks.encoding import TextEncoder, check_input_names, collate_encodings
from service.runtime.tasks.signature import Signature, TensorSpec, json_strings
from service.runtime.tasks.spec import TaskSpec
from service.runtime.tasks.text_classification import softmax

if TYPE_CHECKING:
    from service.runtime.card import ModelCard

WORD = re.compile(r"\S+")


def word_spans(text: str) -> list[tuple[int, int]]:
    """Character spans [start, end) of the whitespace-separated words of a text."""
    return [match.span() for match in WORD.finditer(text)]


def first_tokens(encoding: Encoding, spans: Sequence[tuple[int, int]]) -> list[int | None]:
    """For each word, the position of its first sub-token in the encoding, or None when it has none (cut off)."""
    starts = [start for start, _ in spans]
    first: list[int | None] = [None] * len(spans)
    for position, (sequence, (start, end)) in enumerate(zip(encoding.sequence_ids, encoding.offsets, strict=True)):
        if sequence is None or end <= start:
            continue
        word = bisect.bisect_right(starts, end - 1) - 1  # a token's last character lies in its word, even when
        if word >= 0 and end - 1 < spans[word][1] and first[word] is None:  # its offsets include a leading space
            first[word] = position
    return first


def strip_punctuation(text: str, start: int, end: int) -> tuple[int, int]:
    """The span [start, end) of text without punctuation at either end; unchanged when nothing else is left."""
    first, last = start, end
    while first < last and unicodedata.category(text[first]).startswith("P"):
        first += 1
    while last > first and unicodedata.category(text[last - 1]).startswith("P"):
        last -= 1
    return (first, last) if first < last else (start, end)


def check_tags(labels: Sequence[str]) -> None:
    """Raise ConfigError unless every label is O, B-TYPE or I-TYPE."""
    odd = [label for label in labels if label != "O" and not (label[:2] in ("B-", "I-") and len(label) > 2)]
    if odd:
        raise ConfigError(f"token-classification labels must be IOB2 (O, B-TYPE, I-TYPE); got {odd}")


def entity_chunks(tags: Sequence[str | None]) -> list[tuple[str, int, int]]:
    """Entities (type, first word, last word) of a sequence of word tags; None counts as O."""
    chunks: list[tuple[str, int, int]] = []
    open_type: str | None = None
    for index, tag in enumerate(tags):
        if tag is None or tag == "O":
            open_type = None
            continue
        kind = tag[2:]
        if tag.startswith("I-") and open_type == kind:
            chunks[-1] = (kind, chunks[-1][1], index)
        else:
            chunks.append((kind, index, index))
            open_type = kind
    return chunks


@dataclass(frozen=True)
class Words:
    """A tokenized text with its words and each word's first sub-token."""

    text: str
    spans: list[tuple[int, int]]
    encoding: Encoding
    first_tokens: list[int | None]


def _check_input(index: int, value: object) -> str:
    if not isinstance(value, str):
        raise BadInput(f"inputs[{index}] must be a string")
    if not value.strip():
        raise BadInput(f"inputs[{index}] is empty")
    return value


class TokenClassification:
    """Per-word IOB2 tags merged into entities."""

    def __init__(
        self, tokenizer: Tokenizer, pad_id: int, labels: Sequence[str], input_names: Sequence[str], max_length: int
    ) -> None:
        check_tags(labels)
        self._encoder = TextEncoder(tokenizer, max_length)
        self._pad_id = pad_id
        self._labels = list(labels)
        self._input_names = check_input_names(input_names)

    def preprocess(self, inputs: Sequence[object]) -> list[Words]:
        """Validate texts, tokenize them and find each word's first sub-token; raises BadInput."""
        texts = [_check_input(index, value) for index, value in enumerate(inputs)]
        items = []
        for text, encoding in zip(texts, self._encoder.encode(texts), strict=True):
            spans = word_spans(text)
            items.append(Words(text, spans, encoding, first_tokens(encoding, spans)))
        return items

    def tokens(self, item: Words) -> int:
        """The text's length in tokens."""
        return len(item.encoding.ids)

    def collate(self, items: Sequence[Words]) -> dict[str, np.ndarray]:
        """Pad a batch of encodings to its longest."""
        return collate_encodings([item.encoding for item in items], self._input_names, self._pad_id)

    def postprocess(self, item: Words, outputs: Sequence[np.ndarray], options: PredictOptions) -> dict[str, Any]:
        """The entities of one text from its per-token logits."""
        logits = outputs[0]
        if logits.ndim != 2 or logits.shape[1] != len(self._labels):
            raise ValueError(f"logits of shape {logits.shape} do not match the {len(self._labels)} labels of the card")
        probabilities = softmax(logits)  # every token at once: per token, numpy's call overhead is most of the cost
        best = np.argmax(probabilities, axis=-1).tolist()
        best_scores = probabilities[np.arange(len(best)), best].tolist()
        tags: list[str | None] = []
        scores: list[float] = []
        for token in item.first_tokens:
            tags.append(None if token is None else self._labels[best[token]])
            scores.append(0.0 if token is None else best_scores[token])
        entities = []
        for kind, first, last in entity_chunks(tags):
            start, end = strip_punctuation(item.text, item.spans[first][0], item.spans[last][1])
            score = float(np.mean(scores[first : last + 1]))
            entities.append({"type": kind, "text": item.text[start:end], "start": start, "end": end, "score": score})
        return {"entities": entities}

    def answers(
        self, items: Sequence[Words], outputs: Sequence[Sequence[np.ndarray]], options: PredictOptions
    ) -> list[dict[str, Any]]:
        """One answer per item (each input is one item)."""
        return [self.postprocess(item, rows, options) for item, rows in zip(items, outputs, strict=True)]

    def example_inputs(self) -> list[object]:
        """One text."""
        return ["oberta warm-up in Paris"]


class Entity(BaseModel):
    """A named entity found in a text."""

    type: str = Field(description="entity type, e.g. PER (the tag without its B-/I- prefix)")
    text: str = Field(description="the entity's text")
    start: int = Field(description="character offset of the entity in the text")
    end: int = Field(description="character offset just past the entity")
    score: float = Field(description="mean probability of the entity's word tags")


class TokenClassificationOutput(BaseModel):
    """The entities of one token-classification input."""

    entities: list[Entity] = Field(description="entities in text order")


def _processor(card: ModelCard, tokenizer: Tokenizer, pad_id: int, input_names: Sequence[str]) -> TokenClassification:
    return TokenClassification(tokenizer, pad_id, card.labels, input_names, card.max_length)


def v2_signature(_: ModelCard) -> Signature:
    """Input `text`; output `entities` (BYTES: per input, a JSON array of its entities, each {"type", "text",
    "start", "end", "score"}, as in v1)."""
    return Signature(
        inputs=(TensorSpec("text", "BYTES"),),
        outputs=(TensorSpec("entities", "BYTES"),),
        build_inputs=lambda elements: list(elements["text"]),
        build_outputs=lambda answers: {"entities": json_strings(answers, "entities")},
    )


SPEC = TaskSpec(
    name="token-classification",
    summary="a text in, its named entities with character offsets out (CoNLL files with IOB2 tags to train)",
    output_names=("logits",),
    per_token=True,
    has_labels=True,
    accepts_text=True,
    build=_processor,
    v1_inputs=(str,),
    v1_output=TokenClassificationOutput,
    v2_signature=v2_signature,
)
