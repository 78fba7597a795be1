"""`POST /v1/embeddings`, OpenAI's embeddings API over the sentence-embedding models.

Requests take the same path as v1 and v2 predictions (admission, batching, the shared engine, metrics under the
model's name); errors answer in OpenAI's shape (service/api/errors.py).
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request

from service.api.errors import OPENAI_EMBEDDINGS_PATH, InvalidParameter
from service.api.openai.schemas import (
    Embedding,
    EmbeddingRequest,
    EmbeddingResponse,
    ErrorBody,
    Usage,
    encoded,
)
from service.api.routes import INFERENCE_ERRORS, MeteredRoute
from service.runtime.errors import BadInput
from service.runtime.inference import predict, serving_slot
from service.runtime.state import ModelSlot, ServiceState
from service.runtime.tasks import PredictOptions
from service.runtime.tasks.sentence_embedding import SPEC as SENTENCE_EMBEDDING

DIMENSIONS = "dimensions"
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {**doc, "model": ErrorBody}
    for status, doc in {
        **INFERENCE_ERRORS,
        400: {"description": "an invalid body or input, dimensions out of range, or a model that does not embed"},
        "default": {"description": "any other error (e.g. 405); also in OpenAI's shape, never FastAPI's 422"},
    }.items()
}


class EmbeddingsRoute(MeteredRoute):
    """A metered route whose model is named in the JSON body."""

    async def model_name(self, request: Request) -> str:
        """The body's `model` ("" when the body is not a JSON object with a string `model`). Starlette keeps the
        parsed body, so the route's validation does not parse it again."""
        try:
            body = await request.json()
        except ValueError:
            return ""
        model = body.get("model") if isinstance(body, dict) else None
        return model if isinstance(model, str) else ""


router = APIRouter(tags=["openai"], route_class=EmbeddingsRoute)


def _state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


def embedding_slot(state: ServiceState, name: str) -> ModelSlot:
    """The slot of a sentence-embedding model that can take requests now; InvalidParameter for a model of another
    task, else serving_slot's errors."""
    slot = state.slots.get(name)
    if slot is not None and slot.endpoint.card.task != SENTENCE_EMBEDDING.name:
        raise InvalidParameter(
            f"model {name!r} serves {slot.endpoint.card.task}, not {SENTENCE_EMBEDDING.name}; GET /v1/models lists "
            "each model's task",
            param="model",
        )
    return serving_slot(state, name)


def in_openai_terms(error: BadInput) -> InvalidParameter:
    """A runtime refusal of an embeddings request, naming the field at fault as `param`: `dimensions` when its message
    is about them, else `input` (the runtime's `inputs[i]` read as OpenAI's `input[i]`)."""
    if error.message.startswith(DIMENSIONS):
        return InvalidParameter(error.message, param=DIMENSIONS)
    return InvalidParameter(re.sub(r"^inputs\[", "input[", error.message), param="input")


@router.post(OPENAI_EMBEDDINGS_PATH, response_model=EmbeddingResponse, responses=ERRORS)
async def create_embeddings(body: EmbeddingRequest, request: Request) -> EmbeddingResponse:
    """Embed each input; inputs of concurrent requests (v1 and v2 ones included) are batched together."""
    state = _state(request)
    slot = embedding_slot(state, body.model)
    try:
        answers = await predict(state, slot, body.task_inputs(), PredictOptions(dimensions=body.dimensions))
    except BadInput as exc:
        raise in_openai_terms(exc) from exc
    data = [
        Embedding(index=index, embedding=encoded(answer["embedding"], body.encoding_format))
        for index, answer in enumerate(answers)
    ]
    tokens = sum(answer["tokens"] for answer in answers)
    return EmbeddingResponse(data=data, model=body.model, usage=Usage(prompt_tokens=tokens, total_tokens=tokens))
