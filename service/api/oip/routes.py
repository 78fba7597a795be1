"""The v2 REST endpoints. Every error answers {"error": message}, as v2 clients such as tritonclient expect."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from service.api.auth import require_health_key, require_key
from service.api.oip.codec import HEADER_LENGTH, OutputTensor, binary_outputs, encode_response, parse_request
from service.api.oip.input_names import in_tensor_terms
from service.api.oip.schemas import (
    ErrorBody,
    InferRequest,
    InferResponse,
    ModelMetadata,
    ModelReady,
    ServerLive,
    ServerMetadata,
    ServerReady,
    TensorMetadata,
    inline_schema,
)
from service.api.routes import INFERENCE_ERRORS, MeteredRoute
from service.runtime.errors import BadInput
from service.runtime.inference import predict, serving_slot
from service.runtime.state import ModelSlot, ServiceState
from service.runtime.tasks import task_spec
from service.runtime.tasks.signature import Signature, TensorSpec

EXTENSIONS = ["binary_tensor_data"]
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {**doc, "model": ErrorBody}
    for status, doc in {
        **INFERENCE_ERRORS,
        400: {"description": "the request does not follow the protocol or the model's tensors, or an input is invalid"},
        "default": {"description": "any other error (e.g. 405), also {\"error\"}; v2 never answers FastAPI's 422"},
    }.items()
}

health_router = APIRouter(prefix="/v2", tags=["v2"], dependencies=[Depends(require_health_key)])
models_router = APIRouter(prefix="/v2", tags=["v2"], dependencies=[Depends(require_key)])
infer_router = APIRouter(prefix="/v2", tags=["v2"], route_class=MeteredRoute)


def _state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


def _slot(request: Request, name: str) -> ModelSlot:
    """The model's slot, ready or not; for a model not served, serving_slot's ModelNotServed (its first check), so
    every route says the same."""
    state = _state(request)
    slot = state.slots.get(name)
    return slot if slot is not None else serving_slot(state, name)


def _signature(slot: ModelSlot) -> Signature:
    card = slot.endpoint.card
    return task_spec(card.task).v2_signature(card)


def _metadata(spec: TensorSpec) -> TensorMetadata:
    return TensorMetadata(name=spec.name, datatype=spec.datatype, shape=list(spec.shape))


def _server_version() -> str:
    try:
        return version("oberta")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


@health_router.get("", response_model=ServerMetadata)
async def server_metadata() -> ServerMetadata:
    """Server name, version and the protocol extensions it supports."""
    return ServerMetadata(name="oberta", version=_server_version(), extensions=EXTENSIONS)


@health_router.get("/health/live", response_model=ServerLive)
async def server_live() -> ServerLive:
    """200 while the process serves HTTP."""
    return ServerLive(live=True)


@health_router.get("/health/ready", response_model=ServerReady, responses={503: {"model": ServerReady}})
async def server_ready(request: Request) -> JSONResponse:
    """200 once every model is ready, else 503 (also while the server drains after SIGTERM)."""
    ready = _state(request).ready
    return JSONResponse(ServerReady(ready=ready).model_dump(), status_code=200 if ready else 503)


@health_router.get(
    "/models/{name}/ready",
    response_model=ModelReady,
    responses={404: ERRORS[404], 503: {"model": ModelReady}, "default": ERRORS["default"]},
)
async def model_ready(name: str, request: Request) -> JSONResponse:
    """200 when the model is loaded and the server is not draining, else 503."""
    slot = _slot(request, name)
    ready = slot.status == "ready" and not _state(request).draining
    return JSONResponse(ModelReady(name=name, ready=ready).model_dump(), status_code=200 if ready else 503)


@models_router.get(
    "/models/{name}",
    response_model=ModelMetadata,
    responses={401: ERRORS[401], 404: ERRORS[404], "default": ERRORS["default"]},
)
async def model_metadata(name: str, request: Request) -> ModelMetadata:
    """The model's input and output tensors, task and labels."""
    slot = _slot(request, name)
    signature = _signature(slot)
    card = slot.endpoint.card
    return ModelMetadata(
        name=name,
        platform=slot.engine.name if slot.engine else slot.endpoint.config.engine,
        inputs=[_metadata(spec) for spec in signature.inputs],
        outputs=[_metadata(spec) for spec in signature.outputs],
        task=card.task,
        labels=card.labels,
    )


@infer_router.post(
    "/models/{name}/infer",
    response_model=InferResponse,
    responses=ERRORS,
    openapi_extra={
        "parameters": [
            {
                "name": HEADER_LENGTH,
                "in": "header",
                "required": False,
                "schema": {"type": "integer", "minimum": 0},
                "description": "binary tensor data extension: bytes of JSON before the binary data",
            }
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": inline_schema(InferRequest)},
                "application/octet-stream": {
                    "schema": {"type": "string", "format": "binary"},
                    "description": f"JSON header of {HEADER_LENGTH} bytes, then the binary tensor data",
                },
            },
        }
    },
)
async def infer(name: str, request: Request) -> Response:
    """Run the model on the input tensors; JSON or binary tensor data both ways."""
    state = _state(request)
    slot = serving_slot(state, name)
    signature = _signature(slot)
    parsed = parse_request(await request.body(), request.headers.get(HEADER_LENGTH))
    asked = parsed.request.outputs
    specs = signature.requested(None if asked is None else [output.name for output in asked])
    binary = binary_outputs(parsed.request, [spec.name for spec in specs])
    inputs = signature.task_inputs(parsed.elements)
    options = signature.build_options(parsed.request.parameters)
    try:
        answers = await predict(state, slot, inputs, options)
    except BadInput as exc:
        tensors = [spec.name for spec in signature.inputs if spec.name in parsed.elements]
        raise BadInput(in_tensor_terms(exc.message, tensors)) from exc
    outputs = [OutputTensor(spec.name, spec.datatype, data) for spec, data in signature.output_arrays(answers, specs)]
    content, headers, media_type = encode_response(name, parsed.request.id, outputs, binary)
    return Response(content, media_type=media_type, headers=headers)
