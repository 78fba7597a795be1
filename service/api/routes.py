"""HTTP routes of the v1 API: model list, prediction, health and metrics."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.api.auth import BEARER_SECURITY, check_key, require_health_key, require_key, require_metrics_key
from service.api.bodies import JSONBodyRequest, check_encoding
from service.api.errors import error_status, validation_status
from service.api.metering import RequestMeter
from service.api.schemas import (
    ErrorResponse,
    HealthResponse,
    ModelInfo,
    ModelsResponse,
    PredictRequest,
    PredictResponse,
)
from service.runtime.errors import ObertaError
from service.runtime.inference import predict as run_predict
from service.runtime.inference import serving_slot
from service.runtime.state import ModelSlot, ServiceState
from service.runtime.tasks import PredictOptions

INFERENCE_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "the server has an API key and the request did not send it (Authorization: Bearer)"},
    404: {"description": "no model of that name is served"},
    413: {"description": "body larger than max_body_bytes, or more inputs than the model's max_inputs_per_request"},
    415: {"description": "a compressed body (Content-Encoding other than identity)"},
    429: {"description": "the model's queue is full (when overload_status is 429); see Retry-After"},
    500: {"description": "the engine failed on the batch holding this request"},
    503: {"description": "the model is loading or failed to load, its queue is full, or the server is shutting down"},
    504: {"description": "no answer within request_timeout_s"},
}


def _state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


class MeteredRoute(APIRoute):
    """An inference route: checks the API key and that the body is uncompressed, reads a body it validates as JSON
    whatever its Content-Type (service/api/bodies.py), counts requests by model and status and times them, body
    validation errors included."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        kwargs["openapi_extra"] = {"security": BEARER_SECURITY, **(kwargs.get("openapi_extra") or {})}
        super().__init__(path, endpoint, **kwargs)

    async def model_name(self, request: Request) -> str:
        """The name of the model the request is for: the `name` path parameter."""
        name: str = request.path_params.get("name", "")
        return name

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def metered(request: Request) -> Response:
            if self.body_field is not None:
                request = JSONBodyRequest(request.scope, request.receive)
            with RequestMeter(_state(request)) as meter:
                try:
                    meter.model(await self.model_name(request))
                    await check_key(request)
                    check_encoding(request)
                    response = await handler(request)
                    meter.status = response.status_code
                    return response
                except ObertaError as exc:
                    meter.status = error_status(request, exc)
                    raise
                except StarletteHTTPException as exc:
                    meter.status = exc.status_code
                    raise
                except RequestValidationError:
                    meter.status = validation_status(request)
                    raise

        return metered


models_router = APIRouter(dependencies=[Depends(require_key)])
predict_router = APIRouter(route_class=MeteredRoute)
health_router = APIRouter(dependencies=[Depends(require_health_key)])
metrics_router = APIRouter(dependencies=[Depends(require_metrics_key)])


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
        max_rows_per_request=config.max_rows_per_request,
        max_queue_items=slot.admission.capacity,
        architecture=card.architecture,
        precision=card.precision,
        sparsity=card.sparsity,
        metrics=card.metrics,
        task_settings=card.task_settings,
        description=card.description,
    )


@models_router.get("/v1/models", response_model=ModelsResponse, tags=["models"])
async def list_models(request: Request) -> ModelsResponse:
    """Every served model with its task, labels, engine and card facts."""
    return ModelsResponse(models=[_model_info(slot) for slot in _state(request).slots.values()])


OPTION_NAMES = [field.name for field in dataclasses.fields(PredictOptions) if field.name in PredictRequest.model_fields]


def predict_options(body: PredictRequest) -> PredictOptions:
    """The request's postprocessing options: its fields named like PredictOptions fields."""
    return PredictOptions(**{name: getattr(body, name) for name in OPTION_NAMES})


V1_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {**doc, "model": ErrorResponse}
    for status, doc in {
        **INFERENCE_ERRORS,
        422: {"description": "a malformed body (not JSON, or fields of the wrong shape), an empty text, or (under "
              "reject) a text longer than max_length; `detail` names the field or input at fault"},
    }.items()
}


@predict_router.post(
    "/v1/models/{name}/predict",
    response_model=PredictResponse,
    response_model_exclude_none=True,
    tags=["models"],
    responses=V1_ERRORS,
)
async def predict(name: str, body: PredictRequest, request: Request) -> PredictResponse:
    """Predict on each input; inputs of concurrent requests are batched together."""
    state = _state(request)
    slot = serving_slot(state, name)
    answers = await run_predict(state, slot, body.inputs, predict_options(body))
    return PredictResponse.model_validate({"model": name, "outputs": answers})


@health_router.get("/health/live", response_model=HealthResponse, tags=["health"])
@health_router.head("/health/live", include_in_schema=False)  # probes and load balancers may send HEAD
async def live() -> HealthResponse:
    """200 while the process serves HTTP (HEAD too, without the body)."""
    return HealthResponse(status="alive")


@health_router.get(
    "/health/ready",
    response_model=HealthResponse,
    tags=["health"],
    responses={
        503: {"model": HealthResponse, "description": "a model is loading or failed to load, or the server is draining"}
    },
)
@health_router.head("/health/ready", include_in_schema=False)
async def ready(request: Request) -> JSONResponse:
    """200 once every model is loaded and warmed up, else 503 (also from SIGTERM on, while the server drains; HEAD
    too, without the body)."""
    state = _state(request)
    statuses: dict[str, str] = {name: slot.status for name, slot in state.slots.items()}
    if state.ready:
        return JSONResponse(HealthResponse(status="ready", models=statuses).model_dump())
    overall = "draining" if state.draining else "failed" if "failed" in statuses.values() else "loading"
    return JSONResponse(HealthResponse(status=overall, models=statuses).model_dump(), status_code=503)


@metrics_router.get("/metrics", tags=["health"], response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus metrics in the text exposition format."""
    return Response(_state(request).metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
