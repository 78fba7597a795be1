"""Request and response bodies of the HTTP API (they make /docs useful)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidatorFunctionWrapHandler, WrapValidator
from pydantic.config import JsonDict
from pydantic_core import PydanticCustomError
from typing_extensions import is_typeddict

from service.runtime.tasks import TASKS
from service.runtime.tasks.encoding import Truncation

INPUT_KINDS: tuple[Any, ...] = tuple(dict.fromkeys(kind for spec in TASKS.values() for kind in spec.v1_inputs))
if TYPE_CHECKING:
    TaskInput = Any
    TaskOutput = Any
else:  # the unions of every task's v1 input and output types, in registry order
    TaskInput = Union[INPUT_KINDS]  # noqa: UP007
    TaskOutput = Union[tuple(spec.v1_output for spec in TASKS.values())]  # noqa: UP007
TASK_NAMES: JsonDict = {"enum": list(TASKS)}


def _shape(kind: Any) -> str:
    """How messages name a v1 input type: a text, a [text, text] list, a {question, context} object."""
    if is_typeddict(kind):
        return "a {" + ", ".join(kind.__annotations__) + "} object"
    if get_origin(kind) is tuple:
        return "a [" + ", ".join(_shape(part).removeprefix("a ") for part in get_args(kind)) + "] list"
    return "a text" if kind is str else f"a {getattr(kind, '__name__', kind)}"


*_OTHER_SHAPES, _LAST_SHAPE = [_shape(kind) for kind in INPUT_KINDS]
INPUT_SHAPES = f"{', '.join(_OTHER_SHAPES)} or {_LAST_SHAPE}" if _OTHER_SHAPES else _LAST_SHAPE


def _one_shape(value: object, handler: ValidatorFunctionWrapHandler) -> object:
    """One message for an input of none of the shapes, instead of one error per member of the union."""
    try:
        return handler(value)
    except ValidationError:
        raise PydanticCustomError("task_input", f"expected {INPUT_SHAPES}") from None


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

    inputs: list[Annotated[TaskInput, WrapValidator(_one_shape)]] = Field(
        min_length=1,
        description="texts, [text, text_pair] lists of two texts, or (question answering) {question, context} "
        "objects; outputs come back in this order",
    )
    top_k: int | None = Field(
        default=None, ge=1, strict=True,
        description="also return the k most likely labels (at most every label), or the k best answer spans, "
        "with scores",
    )
    max_answer_length: int | None = Field(
        default=None, ge=1, strict=True,
        description="question answering: longest answer in tokens (default: the model card's)",
    )


class PredictResponse(BaseModel):
    """One output per input, in input order."""

    model: str = Field(description="the model that answered")
    outputs: list[TaskOutput] = Field(
        description="one output per input, in order; its shape follows the model's task"
    )


class ErrorResponse(BaseModel):
    """Every v1 error."""

    detail: str = Field(description="what went wrong, naming the field or input at fault")


class ModelInfo(BaseModel):
    """A served model."""

    name: str = Field(description="name in URLs")
    task: str = Field(description="task the model serves", json_schema_extra=TASK_NAMES)
    status: str = Field(description="loading, ready, failed or stopped")
    error: str | None = Field(default=None, description="why loading failed")
    labels: list[str] = Field(description="label names in output order")
    engine: str = Field(description="engine running the model; the configured choice until it is loaded")
    engine_info: dict[str, Any] = Field(
        description="engine details, e.g. DeepSparse's fraction_of_supported_ops, and `selection`: how the engine was "
        "chosen (`configured`, `reason`; under auto with both engines usable, `items_per_second` of each as measured "
        "at load on `measured_shape`)"
    )
    max_length: int = Field(description="maximum sequence length in tokens")
    truncation: Truncation = Field(description="what happens to longer inputs: truncate, or reject with 422")
    max_batch_size: int = Field(description="most inputs per engine call")
    max_inputs_per_request: int = Field(description="most inputs per request; more are refused with 413")
    max_rows_per_request: int = Field(
        description="most engine rows per request after tokenizing (question answering: context windows); more are "
        "refused with 413"
    )
    max_queue_items: int = Field(description="most inputs admitted and not yet answered; more are refused at once")
    architecture: str = Field(description="encoder family")
    precision: str = Field(description="fp32, int8, ...")
    sparsity: float | None = Field(description="measured sparsity of the encoder's Linear weights")
    metrics: dict[str, Any] = Field(description="measured quality and speed from the model card")
    task_settings: dict[str, Any] = Field(
        description="the task's settings from the card, e.g. question answering's windows and answer length, a "
        "sentence encoder's dimension (the most `dimensions` an embeddings request may ask for)"
    )
    description: str = Field(description="free text from the model card")


class ModelsResponse(BaseModel):
    """Every served model."""

    models: list[ModelInfo]


class HealthResponse(BaseModel):
    """Liveness or readiness, with each model's load status."""

    status: str = Field(description="alive, ready, loading, failed or draining")
    models: dict[str, str] = Field(
        default_factory=dict, description="load status per model (readiness only; liveness reports none)"
    )
