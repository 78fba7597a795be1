"""The FastAPI application: endpoints resolved at creation, models loaded in the background at startup."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp

from service.api import oip, openai
from service.api.direct_predict import DirectPredict
from service.api.errors import install_error_handlers
from service.api.limits import BodySizeLimit
from service.api.routes import health_router, metrics_router, models_router, predict_router
from service.runtime.config import Settings, load_settings, resolve_endpoints
from service.runtime.engines import EngineFactory, load_engine, require_engine_package
from service.runtime.errors import ConfigError
from service.runtime.metrics import Metrics
from service.runtime.state import ServiceState
from service.runtime.tasks import TASKS

CORS_HEADERS = ["Authorization", "Content-Type", oip.HEADER_LENGTH]
logger = logging.getLogger(__name__)


class ObertaApp(FastAPI):
    """FastAPI with the v1 prediction route's common case answered outside its middleware stack
    (service/api/direct_predict.py)."""

    def build_middleware_stack(self) -> ASGIApp:
        return DirectPredict(super().build_middleware_stack())


def create_app(settings: Settings | None = None, *, engine_factory: EngineFactory = load_engine) -> FastAPI:
    """An app serving the endpoints `settings` name (default: from OBERTA_* environment variables).

    Cards are read, and the files they name and the engine packages configured checked, here, so configuration
    errors (ConfigError, MissingFile, MissingPackage) surface before the server starts. Models load and warm up in the
    background once the server runs; /health/ready answers 503 until all are ready, and a model that fails to load
    stays not ready while the others serve.
    """
    settings = settings or load_settings()
    endpoints = resolve_endpoints(settings)
    for endpoint in endpoints:
        require_engine_package(endpoint.config.engine)
        if endpoint.card.task not in TASKS:
            raise ConfigError(f"model {endpoint.name!r}: task {endpoint.card.task} is not served yet")
    state = ServiceState(settings, endpoints, Metrics(), engine_factory)
    logger.info(
        "API key %s; CORS %s; bodies up to %d bytes; requests time out after %.1f s",
        "required" if settings.api_key else "off",
        ", ".join(settings.cors_origins) or "off",
        settings.max_body_bytes,
        settings.request_timeout_s,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        loading = asyncio.create_task(state.load_all(), name="oberta-load-models")
        try:
            yield
        finally:
            loading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loading
            await state.stop()

    app = ObertaApp(
        title="oberta",
        description="Compressed BERT-family encoders served on CPUs: the v1 API, the Open Inference Protocol (v2) and "
        "OpenAI's embeddings API.",
        lifespan=lifespan,
    )
    app.state.service = state
    for router in (models_router, predict_router, health_router, metrics_router):
        app.include_router(router)
    for router in (oip.health_router, oip.models_router, oip.infer_router):
        app.include_router(router)
    app.include_router(openai.router)
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=CORS_HEADERS,
            expose_headers=[oip.HEADER_LENGTH, "Retry-After"],
        )
    return app
