"""Request and response bodies of the HTTP API (they make /docs useful)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, with_config
from typing_extensions import TypedDict

from service.runtime.card import Task
from service.runtime.config import Truncation


@with_config(ConfigDict(extra="forbid"))
class QuestionInput(TypedDict):
    """A question about a context (question-answering models)."""

    question: str
    context: str


class PredictRequest(BaseModel):
    """Inputs to predict on, one output each."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"inputs": ["a gorgeous, witty movie", ["a premise", "a hypothesis"]]},
                {"inputs": [{"question": "Where is the Eiffel Tower?", "context": "The Eiffel Tower is in Paris."}]},
            ]
        },
    )

    inputs: list[str | tuple[str, str] | QuestionInput] = Field(
        min_length=1,
        description="texts, [text, text_pair] lists of two texts, or (question answering) {question, context} "
        "objects; outputs come back in this order",
    )
    top_k: int | None = Field(
        default=None, ge=1,
        description="also return the k most likely labels (at most every label), or the k best answer spans, "
        "with scores",
    )
    max_answer_length: int | None = Field(
        default=None, ge=1, description="question answering: longest answer in tokens (default: the model card's)"
    )


class LabelScore(BaseModel):
    """A label and its probability."""

    label: str = Field(description="label name from the model card")
    score: float = Field(description="softmax probability")


class ClassificationOutput(BaseModel):
    """The answer for one text-classification input."""

    label: str = Field(description="most likely label")
    score: float = Field(description="its softmax probability")
    labels: list[LabelScore] | None = Field(default=None, description="the top_k labels, best first, when asked for")


class AnswerSpan(BaseModel):
    """An answer span of a context."""

    answer: str = Field(description="the answer text; empty when the model finds no answer")
    score: float = Field(description="P(start) * P(end) within the best window")
    start: int = Field(description="character offset of the answer in the context")
    end: int = Field(description="character offset just past the answer (0, 0 for no answer)")


class QuestionAnsweringOutput(AnswerSpan):
    """The answer for one question-answering input."""

    answers: list[AnswerSpan] | None = Field(default=None, description="the top_k spans, best first, when asked for")


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


class PredictResponse(BaseModel):
    """One output per input, in input order."""

    model: str = Field(description="the model that answered")
    outputs: list[ClassificationOutput | QuestionAnsweringOutput | TokenClassificationOutput] = Field(
        description="one output per input, in order; its shape follows the model's task"
    )


class ModelInfo(BaseModel):
    """A served model."""

    name: str = Field(description="name in URLs")
    task: Task = Field(description="task the model serves")
    status: str = Field(description="loading, ready, failed or stopped")
    error: str | None = Field(default=None, description="why loading failed")
    labels: list[str] = Field(description="label names in output order")
    engine: str = Field(description="engine running the model; the configured choice until it is loaded")
    engine_info: dict[str, Any] = Field(description="engine details, e.g. DeepSparse's fraction_of_supported_ops")
    max_length: int = Field(description="maximum sequence length in tokens")
    truncation: Truncation = Field(description="what happens to longer inputs: truncate, or reject with 422")
    max_batch_size: int = Field(description="most inputs per engine call")
    max_inputs_per_request: int = Field(description="most inputs per request; more are refused with 413")
    max_queue_items: int = Field(description="most inputs admitted and not yet answered; more are refused at once")
    architecture: str = Field(description="encoder family")
    precision: str = Field(description="fp32, int8, ...")
    sparsity: float | None = Field(description="measured sparsity of the encoder's Linear weights")
    metrics: dict[str, Any] = Field(description="measured quality and speed from the model card")
    description: str = Field(description="free text from the model card")


class ModelsResponse(BaseModel):
    """Every served model."""

    models: list[ModelInfo]


class HealthResponse(BaseModel):
    """Liveness or readiness, with each model's load status."""

    status: str = Field(description="alive, ready, loading, failed or draining")
    models: dict[str, str] = Field(default_factory=dict, description="load status per model")
