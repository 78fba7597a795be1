"""HTTP routes: model list, prediction, health and metrics."""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.batching import BatchError
from service.metrics import UNKNOWN_MODEL
from service.schemas import HealthResponse, ModelInfo, ModelsResponse, PredictRequest, PredictResponse
from service.state import ModelSlot, ServiceState
from service.tasks import InputError, PredictOptions


def _state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


class MeteredRoute(APIRoute):
    """A route that counts requests by model and status and times them, body validation errors included."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def metered(request: Request) -> Response:
            state = _state(request)
            slot = state.slots.get(request.path_params.get("name", ""))
            start = time.perf_counter()
            status = 500
            if slot is not None:
                slot.metrics.inflight.inc()
            try:
                response = await handler(request)
                status = response.status_code
                return response
            except StarletteHTTPException as exc:
                status = exc.status_code
                raise
            except RequestValidationError:
                status = 422
                raise
            finally:
                if slot is None:
                    state.metrics.count_request(UNKNOWN_MODEL, status)
                else:
                    slot.metrics.inflight.dec()
                    slot.metrics.observe_request(status, time.perf_counter() - start)

        return metered


router = APIRouter()
predict_router = APIRouter(route_class=MeteredRoute)


def _model_info(slot: ModelSlot) -> ModelInfo:
    endpoint, card, config = slot.endpoint, slot.endpoint.card, slot.endpoint.config
    return ModelInfo(
        name=endpoint.name,
        task=card.task,
        status=slot.status,
        error=slot.error,
        labels=card.labels,
        engine=slot.engine.name if slot.engine else config.engine,
        engine_info=slot.engine.info() if slot.engine else {},
        max_length=card.max_length,
        truncation=config.truncation,
        max_batch_size=config.max_batch_size,
        max_inputs_per_request=config.max_inputs_per_request,
        architecture=card.architecture,
        precision=card.precision,
        sparsity=card.sparsity,
        metrics=card.metrics,
        description=card.description,
    )


@router.get("/v1/models", response_model=ModelsResponse, tags=["models"])
async def list_models(request: Request) -> ModelsResponse:
    """Every served model with its task, labels, engine and card facts."""
    return ModelsResponse(models=[_model_info(slot) for slot in _state(request).slots.values()])


@predict_router.post(
    "/v1/models/{name}/predict",
    response_model=PredictResponse,
    response_model_exclude_none=True,
    tags=["models"],
    responses={
        404: {"description": "no model of that name is served"},
        413: {"description": "more inputs than the model's max_inputs_per_request"},
        422: {"description": "malformed body, empty text, or (under reject) a text longer than max_length"},
        500: {"description": "the engine failed on the batch holding this request"},
        503: {"description": "the model is not loaded yet, or failed to load"},
    },
)
async def predict(name: str, body: PredictRequest, request: Request) -> PredictResponse:
    """Predict on each input; inputs of concurrent requests are batched together."""
    slot = _state(request).slots.get(name)
    if slot is None:
        raise HTTPException(404, f"model {name!r} is not served; GET /v1/models lists the served models")
    if slot.task is None or slot.batcher is None:
        reason = f"failed to load ({slot.error})" if slot.status == "failed" else f"is {slot.status}"
        raise HTTPException(503, f"model {name!r} {reason}")
    config = slot.endpoint.config
    if len(body.inputs) > config.max_inputs_per_request:
        raise HTTPException(
            413, f"{len(body.inputs)} inputs; model {name!r} takes at most {config.max_inputs_per_request} per request"
        )
    task, metrics = slot.task, slot.metrics
    start = time.perf_counter()
    try:
        items = await run_in_threadpool(task.preprocess, body.inputs)
    except InputError as exc:
        raise HTTPException(422, str(exc)) from exc
    metrics.observe_stage("tokenize", time.perf_counter() - start)
    try:
        outputs = await slot.batcher.submit(items)
    except BatchError as exc:
        raise HTTPException(500, str(exc)) from exc
    start = time.perf_counter()
    options = PredictOptions(top_k=body.top_k)
    answers = [task.postprocess(item, item_outputs, options) for item, item_outputs in zip(items, outputs, strict=True)]
    metrics.observe_stage("postprocess", time.perf_counter() - start)
    return PredictResponse.model_validate({"model": name, "outputs": answers})


@router.get("/health/live", response_model=HealthResponse, tags=["health"])
async def live() -> HealthResponse:
    """200 while the process serves HTTP."""
    return HealthResponse(status="alive")


@router.get(
    "/health/ready",
    response_model=HealthResponse,
    tags=["health"],
    responses={503: {"model": HealthResponse, "description": "a model is loading or failed to load"}},
)
async def ready(request: Request) -> JSONResponse:
    """200 once every model is loaded and warmed up, else 503."""
    state = _state(request)
    statuses: dict[str, str] = {name: slot.status for name, slot in state.slots.items()}
    if state.ready:
        return JSONResponse(HealthResponse(status="ready", models=statuses).model_dump())
    overall = "failed" if "failed" in statuses.values() else "loading"
    return JSONResponse(HealthResponse(status=overall, models=statuses).model_dump(), status_code=503)


@router.get("/metrics", tags=["health"], response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus metrics in the text exposition format."""
    return Response(_state(request).metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
