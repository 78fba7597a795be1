"""The FastAPI application: endpoints resolved at creation, models loaded in the background at startup."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from service.config import Settings, resolve_endpoints
from service.engines import EngineFactory, load_engine
from service.metrics import Metrics
from service.routes import predict_router, router
from service.state import ServiceState
from service.tasks import TASKS


def create_app(settings: Settings | None = None, *, engine_factory: EngineFactory = load_engine) -> FastAPI:
    """An app serving the endpoints `settings` name (default: from OBERTA_* environment variables).

    Cards are read and checked here, so configuration errors surface before the server starts. Models load and warm
    up in the background once the server runs; /health/ready answers 503 until all are ready.
    """
    settings = settings or Settings.from_env()
    endpoints = resolve_endpoints(settings)
    for endpoint in endpoints:
        if endpoint.card.task not in TASKS:
            raise ValueError(f"model {endpoint.name!r}: task {endpoint.card.task} is not served yet")
    state = ServiceState(settings, endpoints, Metrics(), engine_factory)

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

    app = FastAPI(
        title="oberta",
        description="Compressed BERT-family encoders served on CPUs.",
        lifespan=lifespan,
    )
    app.state.service = state
    app.include_router(router)
    app.include_router(predict_router)
    return app
