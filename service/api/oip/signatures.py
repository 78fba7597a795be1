"""Each task's v2 tensors: which BYTES inputs make its request inputs, and which outputs its answers fill.

text-classification: inputs `text` and, for pairs, `text_pair` (as many elements as `text`); outputs `label`
(BYTES), `score` (FP32) and `scores` (FP32 [n, labels], in the order of the metadata's `labels`).
question-answering: inputs `question` and `context`; outputs `answer` (BYTES), `score` (FP32), `start` and `end`
(INT64 character offsets in the context, end exclusive; "" at 0, 0 when there is no answer). The request parameter
`max_answer_length` (tokens) overrides the model's.
token-classification: input `text`; output `entities` (BYTES: per input, a JSON array of its entities, each
{"type", "text", "start", "end", "score"}, as in v1).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.api.oip.codec import OutputTensor, RequestError
from service.api.oip.schemas import InferRequest, Parameters, TensorMetadata
from service.runtime.card import ModelCard
from service.runtime.tasks import PredictOptions

Answers = Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class TensorSpec:
    """A tensor of the signature; inputs are [-1] BYTES, one element per request input."""

    name: str
    datatype: str
    shape: tuple[int, ...] = (-1,)
    optional: bool = False

    def metadata(self) -> TensorMetadata:
        """As listed by GET /v2/models/{name}."""
        return TensorMetadata(name=self.name, datatype=self.datatype, shape=list(self.shape))


@dataclass(frozen=True)
class Signature:
    """A task's tensors and the conversions between them and the task's inputs and answers."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    build_inputs: Callable[[Mapping[str, list[str]]], list[object]]
    build_outputs: Callable[[Answers], dict[str, np.ndarray]]
    build_options: Callable[[Parameters], PredictOptions]

    def task_inputs(self, elements: Mapping[str, list[str]]) -> list[object]:
        """The task's inputs from the request's decoded input tensors; raises RequestError."""
        names = [spec.name for spec in self.inputs]
        unknown = [name for name in elements if name not in names]
        missing = [spec.name for spec in self.inputs if not spec.optional and spec.name not in elements]
        if unknown or missing:
            raise RequestError(f"inputs {sorted(elements)} do not match the model's: {names} (optional: "
                               f"{[spec.name for spec in self.inputs if spec.optional]})")
        sizes = {name: len(values) for name, values in elements.items()}
        if len(set(sizes.values())) > 1:
            raise RequestError(f"every input needs as many elements; got {sizes}")
        if not any(sizes.values()):
            raise RequestError("the inputs hold no elements")
        return self.build_inputs(elements)

    def requested(self, request: InferRequest) -> list[TensorSpec]:
        """The outputs the request asks for (default: all); raises RequestError for unknown names."""
        if request.outputs is None:
            return list(self.outputs)
        specs = {spec.name: spec for spec in self.outputs}
        unknown = [output.name for output in request.outputs if output.name not in specs]
        if unknown:
            raise RequestError(f"unknown outputs {unknown}; the model's outputs are {list(specs)}")
        return [specs[output.name] for output in request.outputs]

    def output_tensors(self, answers: Answers, specs: Sequence[TensorSpec]) -> list[OutputTensor]:
        """The asked-for output tensors from the task's answers."""
        arrays = self.build_outputs(answers)
        return [OutputTensor(spec.name, spec.datatype, arrays[spec.name]) for spec in specs]


def _strings(answers: Answers, key: str) -> np.ndarray:
    return np.array([answer[key] for answer in answers], dtype=object)


def _json(answers: Answers, key: str) -> np.ndarray:
    return np.array([json.dumps(answer[key], ensure_ascii=False) for answer in answers], dtype=object)


def _numbers(answers: Answers, key: str, dtype: type) -> np.ndarray:
    return np.array([answer[key] for answer in answers], dtype=dtype)


def text_classification(card: ModelCard) -> Signature:
    """Texts or text pairs in; label, score and every label's score out."""
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
        return {"label": _strings(answers, "label"), "score": _numbers(answers, "score", np.float32), "scores": scores}

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


def question_answering(_: ModelCard) -> Signature:
    """Question and context in; the best answer span out."""

    def build_inputs(elements: Mapping[str, list[str]]) -> list[object]:
        pairs = zip(elements["question"], elements["context"], strict=True)
        return [{"question": question, "context": context} for question, context in pairs]

    def build_options(parameters: Parameters) -> PredictOptions:
        length = parameters.get("max_answer_length")
        if length is not None and (not isinstance(length, int) or isinstance(length, bool) or length < 1):
            raise RequestError("parameter max_answer_length must be a positive integer")
        return PredictOptions(max_answer_length=length)

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
            "answer": _strings(answers, "answer"),
            "score": _numbers(answers, "score", np.float32),
            "start": _numbers(answers, "start", np.int64),
            "end": _numbers(answers, "end", np.int64),
        },
        build_options=build_options,
    )


def token_classification(_: ModelCard) -> Signature:
    """Texts in; each text's entities, as JSON, out."""
    return Signature(
        inputs=(TensorSpec("text", "BYTES"),),
        outputs=(TensorSpec("entities", "BYTES"),),
        build_inputs=lambda elements: list(elements["text"]),
        build_outputs=lambda answers: {"entities": _json(answers, "entities")},
        build_options=lambda _: PredictOptions(),
    )


SIGNATURES: dict[str, Callable[[ModelCard], Signature]] = {
    "text-classification": text_classification,
    "question-answering": question_answering,
    "token-classification": token_classification,
}


def signature_for(card: ModelCard) -> Signature | None:
    """The v2 signature of the card's task; None for tasks not offered over v2."""
    builder = SIGNATURES.get(card.task)
    return builder(card) if builder else None
