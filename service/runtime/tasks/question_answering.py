"""Extractive question answering: a {"question", "context"} object in, the best answer span of the context out.

Windows: the question, cut to `max_query_length` tokens, leads every window; the context is split into windows of at
most `max_length` tokens that share `doc_stride` tokens with the previous one. Each window is one engine row.

Spans: within a window, start and end probabilities are softmaxes over the context tokens and the first token
([CLS] / <s>); a span's score is P(start) * P(end), for spans of at most `max_answer_length` tokens. Across windows the
best span wins (a span seen in two windows keeps its higher score). The first token stands for "no answer": its score
P(start=first) * P(end=first), the lowest over the windows, ranks among the spans, and when it wins the answer is ""
at offsets 0, 0. Offsets are character positions in the context, end exclusive.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, with_config
from tokenizers import Encoding, Tokenizer
from typing_extensions import TypedDict

from service.runtime.errors import BadInput, ConfigError, ProtocolError
from service.runtime.tasks.base import PredictOptions
from service.runtime.tasks.encoding import (
    NO_TOKENS,
    ascii_twin,
    check_input_names,
    collate_encodings,
    tokenizer_for,
    tokenless_parts,
)
from service.runtime.tasks.signature import Parameters, Signature, TensorSpec, numbers, strings
from service.runtime.tasks.spec import TaskSpec
from service.runtime.tasks.text_classification import softmax

if TYPE_CHECKING:
    from service.runtime.card import ModelCard

SPECIAL_TOKENS_PER_WINDOW = 4  # the most a BERT or RoBERTa template adds around a pair: <s> q </s></s> c </s>


class QuestionAnsweringSettings(BaseModel):
    """How a question-answering model reads long contexts and bounds its answers (in tokens); the card's
    task_settings."""

    model_config = ConfigDict(extra="forbid")

    doc_stride: int = Field(default=128, ge=0, description="tokens shared by consecutive windows of a long context")
    max_query_length: int = Field(default=64, ge=1, description="question tokens kept; longer questions are cut")
    max_answer_length: int = Field(
        default=30, ge=1, description="longest answer in tokens, unless a request sets max_answer_length"
    )


def check_window_settings(max_length: int, doc_stride: int, max_query_length: int) -> None:
    """Raise ConfigError unless windows after a question of `max_query_length` tokens move on through the context."""
    room = max_length - max_query_length - SPECIAL_TOKENS_PER_WINDOW
    if room <= doc_stride:
        raise ConfigError(
            f"max_length {max_length} leaves {room} context tokens per window after a question of {max_query_length} "
            f"tokens; that must be more than doc_stride {doc_stride}"
        )


class QuestionWindows:
    """Tokenizes (question, context) pairs into overlapping windows; training and serving share it."""

    def __init__(self, tokenizer: Tokenizer, max_length: int, doc_stride: int, max_query_length: int) -> None:
        check_window_settings(max_length, doc_stride, max_query_length)
        self.max_query_length = max_query_length
        self._plain = Tokenizer.from_str(tokenizer.to_str())
        self._plain.no_truncation()
        self._plain.no_padding()
        self._paired = Tokenizer.from_str(tokenizer.to_str())
        self._paired.no_padding()
        self._paired.enable_truncation(max_length, stride=doc_stride, strategy="only_second")
        self._plain_ascii, self._paired_ascii = ascii_twin(self._plain), ascii_twin(self._paired)

    def cut_questions(self, questions: Sequence[str]) -> list[str]:
        """Each question cut after its `max_query_length`-th token."""
        plain = tokenizer_for(questions, self._plain, self._plain_ascii)
        encodings = plain.encode_batch(list(questions), add_special_tokens=False)
        limit = self.max_query_length
        return [
            question if len(encoding.offsets) <= limit else question[: encoding.offsets[limit - 1][1]]
            for question, encoding in zip(questions, encodings, strict=True)
        ]

    def encode(self, pairs: Sequence[tuple[str, str]]) -> list[list[Encoding]]:
        """The windows of each (question, context) pair, in context order."""
        questions = self.cut_questions([question for question, _ in pairs])
        contexts = [context for _, context in pairs]
        paired = tokenizer_for(pairs, self._paired, self._paired_ascii)
        encodings = paired.encode_batch(list(zip(questions, contexts, strict=True)))
        return [[encoding, *encoding.overflowing] for encoding in encodings]


def context_tokens(encoding: Encoding) -> np.ndarray:
    """Positions of the context's tokens in a window (the second sequence of the pair)."""
    return np.array([i for i, sequence in enumerate(encoding.sequence_ids) if sequence == 1], dtype=np.int64)


@dataclass(frozen=True)
class Span:
    """An answer: its text, score and character offsets [start, end) in the context."""

    answer: str
    score: float
    start: int
    end: int

    def as_dict(self) -> dict[str, Any]:
        """The API's answer object."""
        return {"answer": self.answer, "score": self.score, "start": self.start, "end": self.end}


def window_spans(
    start_logits: np.ndarray, end_logits: np.ndarray, encoding: Encoding, context: str, max_answer_length: int,
    top_k: int,
) -> tuple[list[Span], float]:
    """The `top_k` best spans of one window, best first, and the window's no-answer score.

    Logits may be longer than the window (padding); only the window's own positions are read.
    """
    tokens = context_tokens(encoding)
    positions = np.concatenate([[0], tokens])
    start_p = softmax(np.asarray(start_logits)[positions])
    end_p = softmax(np.asarray(end_logits)[positions])
    no_answer = float(start_p[0] * end_p[0])
    size = len(tokens)
    if size == 0:
        return [], no_answer
    first, last = np.indices((size, size))
    valid = (last >= first) & (last - first < max_answer_length)
    scores = np.where(valid, np.outer(start_p[1:], end_p[1:]), -1.0).ravel()
    count = min(top_k, int(valid.sum()))
    best = np.argpartition(-scores, count - 1)[:count]
    best = best[np.argsort(-scores[best], kind="stable")]
    offsets = encoding.offsets
    spans = []
    for index in best:
        start = offsets[tokens[index // size]][0]
        end = offsets[tokens[index % size]][1]
        spans.append(Span(context[start:end], float(scores[index]), start, end))
    return spans, no_answer


def best_spans(windows: Iterable[tuple[list[Span], float]], top_k: int, allow_empty: bool) -> list[Span]:
    """The `top_k` best answers over a question's windows, best first.

    The empty answer (the lowest no-answer score over the windows) ranks among them when `allow_empty`, and stands
    alone when no window has a span.
    """
    best: dict[tuple[int, int], Span] = {}
    no_answer = 1.0
    for spans, window_no_answer in windows:
        no_answer = min(no_answer, window_no_answer)
        for span in spans:
            key = (span.start, span.end)
            if key not in best or span.score > best[key].score:
                best[key] = span
    ranked = list(best.values())
    if allow_empty or not ranked:
        ranked.append(Span("", no_answer, 0, 0))
    ranked.sort(key=lambda span: -span.score)
    return ranked[:top_k]


@dataclass(frozen=True)
class Window:
    """One engine row: the question with one stretch of its context, and which request input it belongs to."""

    input_index: int
    context: str
    encoding: Encoding


def _check_input(index: int, value: object) -> tuple[str, str]:
    if not isinstance(value, Mapping) or set(value) != {"question", "context"}:
        raise BadInput(f'inputs[{index}] must be a {{"question": str, "context": str}} object')
    for key in ("question", "context"):
        text = value[key]
        if not isinstance(text, str):
            raise BadInput(f"inputs[{index}].{key} must be a string")
        if not text.strip():
            raise BadInput(f"inputs[{index}].{key} is empty")
    return value["question"], value["context"]


class QuestionAnswering:
    """Answer spans from start and end logits, over windows of long contexts."""

    def __init__(
        self, tokenizer: Tokenizer, pad_id: int, input_names: Sequence[str], max_length: int,
        settings: QuestionAnsweringSettings,
    ) -> None:
        self._windows = QuestionWindows(tokenizer, max_length, settings.doc_stride, settings.max_query_length)
        self._pad_id = pad_id
        self._input_names = check_input_names(input_names)
        self._max_answer_length = settings.max_answer_length

    def preprocess(self, inputs: Sequence[object]) -> list[Window]:
        """Validate {"question", "context"} objects and cut each into windows; raises BadInput."""
        pairs = [_check_input(index, value) for index, value in enumerate(inputs)]
        windows = self._windows.encode(pairs)
        for index, encodings in enumerate(windows):
            missing = tokenless_parts(encodings[0], 2)
            if missing:
                raise BadInput(f"inputs[{index}].{('question', 'context')[missing[0]]} {NO_TOKENS}")
        return [
            Window(index, context, encoding)
            for index, ((_, context), encodings) in enumerate(zip(pairs, windows, strict=True))
            for encoding in encodings
        ]

    def tokens(self, item: Window) -> int:
        """The window's length in tokens."""
        return len(item.encoding.ids)

    def collate(self, items: Sequence[Window]) -> dict[str, np.ndarray]:
        """Pad a batch of windows to its longest."""
        return collate_encodings([item.encoding for item in items], self._input_names, self._pad_id)

    def answers(
        self, items: Sequence[Window], outputs: Sequence[Sequence[np.ndarray]], options: PredictOptions
    ) -> list[dict[str, Any]]:
        """The best span of each input over its windows; with top_k, also the k best spans."""
        top_k = options.top_k or 1
        max_answer_length = options.max_answer_length or self._max_answer_length
        answers = []
        rows = zip(items, outputs, strict=True)
        for _, group in itertools.groupby(rows, key=lambda row: row[0].input_index):
            windows = []
            for window, logits in group:
                if len(logits) != 2:
                    raise ValueError(f"the model has {len(logits)} outputs; question answering needs start and end")
                windows.append(
                    window_spans(logits[0], logits[1], window.encoding, window.context, max_answer_length, top_k)
                )
            spans = best_spans(windows, top_k, allow_empty=True)
            answer = spans[0].as_dict()
            if options.top_k is not None:
                answer["answers"] = [span.as_dict() for span in spans]
            answers.append(answer)
        return answers

    def example_inputs(self) -> list[object]:
        """One question."""
        return [{"question": "what is warmed up?", "context": "oberta warm-up context"}]


@with_config(ConfigDict(extra="forbid"))
class QuestionInput(TypedDict):
    """A question about a context (one v1 input)."""

    question: str
    context: str


class AnswerSpan(BaseModel):
    """An answer span of a context."""

    answer: str = Field(description="the answer text; empty when the model finds no answer")
    score: float = Field(description="P(start) * P(end) within the best window")
    start: int = Field(description="character offset of the answer in the context")
    end: int = Field(description="character offset just past the answer (0, 0 for no answer)")


class QuestionAnsweringOutput(AnswerSpan):
    """The answer for one question-answering input."""

    answers: list[AnswerSpan] | None = Field(default=None, description="the top_k spans, best first, when asked for")


def settings_of(card: ModelCard) -> QuestionAnsweringSettings:
    """The card's window and answer settings."""
    return QuestionAnsweringSettings.model_validate(card.task_settings)


def _processor(card: ModelCard, tokenizer: Tokenizer, pad_id: int, input_names: Sequence[str]) -> QuestionAnswering:
    return QuestionAnswering(tokenizer, pad_id, input_names, card.max_length, settings_of(card))


def _v2_options(parameters: Parameters) -> PredictOptions:
    length = parameters.get("max_answer_length")
    if length is not None and (not isinstance(length, int) or isinstance(length, bool) or length < 1):
        raise ProtocolError("parameter max_answer_length must be a positive integer")
    return PredictOptions(max_answer_length=length)


def v2_signature(_: ModelCard) -> Signature:
    """Inputs `question` and `context`; outputs `answer` (BYTES), `score` (FP32), `start` and `end` (INT64 character
    offsets in the context, end exclusive; "" at 0, 0 when there is no answer). The request parameter
    `max_answer_length` (tokens) overrides the model's."""

    def build_inputs(elements: Mapping[str, list[str]]) -> list[object]:
        pairs = zip(elements["question"], elements["context"], strict=True)
        return [{"question": question, "context": context} for question, context in pairs]

    return Signature(
        inputs=(TensorSpec("question", "BYTES"), TensorSpec("context", "BYTES")),
        outputs=(
            TensorSpec("answer", "BYTES"),
            TensorSpec("score", "FP32"),
            TensorSpec("start", "INT64"),
            TensorSpec("end", "INT64"),
        ),
        build_inputs=build_inputs,
        build_outputs=lambda answers: {
            "answer": strings(answers, "answer"),
            "score": numbers(answers, "score", np.float32),
            "start": numbers(answers, "start", np.int64),
            "end": numbers(answers, "end", np.int64),
        },
        build_options=_v2_options,
    )


SPEC = TaskSpec(
    name="question-answering",
    summary="a {question, context} object in, the best answer span of the context out (SQuAD v1.1 JSON to train)",
    output_names=("start_logits", "end_logits"),
    per_token=True,
    has_labels=False,
    accepts_text=False,
    build=_processor,
    v1_inputs=(QuestionInput,),
    v1_output=QuestionAnsweringOutput,
    v2_signature=v2_signature,
    settings=QuestionAnsweringSettings,
    options=frozenset({"top_k", "max_answer_length"}),
)
