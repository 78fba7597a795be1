"""What the running server knows: every endpoint's load status, engine, task and batcher, and the engine scheduler
they share."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Literal

from service.runtime.admission import Admission
from service.runtime.batching import Batcher
from service.runtime.config import Endpoint, Settings
from service.runtime.engines import DeferredCompilation, Engine, EngineFactory
from service.runtime.loading import load_model
from service.runtime.metrics import Metrics, ModelMetrics
from service.runtime.scheduler import EngineScheduler
from service.runtime.tasks import Task

logger = logging.getLogger(__name__)

LoadStatus = Literal["loading", "ready", "failed", "stopped"]


@dataclass
class ModelSlot:
    """One endpoint; engine, task and batcher are set once it is loaded and warmed up."""

    endpoint: Endpoint
    metrics: ModelMetrics
    admission: Admission
    status: LoadStatus = "loading"
    error: str | None = None
    engine: Engine | None = None
    task: Task | None = None
    batcher: Batcher | None = None


class ServiceState:
    """The endpoints of one app, their loading, and the scheduler that runs their batches one at a time."""

    def __init__(
        self, settings: Settings, endpoints: list[Endpoint], metrics: Metrics, engine_factory: EngineFactory
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.slots = {endpoint.name: self._slot(endpoint) for endpoint in endpoints}
        self.draining = False
        self.scheduler = EngineScheduler()
        self._engine_factory = engine_factory

    def _slot(self, endpoint: Endpoint) -> ModelSlot:
        capacity = endpoint.config.max_queue_items or self.settings.max_queue_items
        admission = Admission(endpoint.name, capacity, self.settings.overload_status, self.settings.retry_after_s)
        return ModelSlot(endpoint, self.metrics.model(endpoint.name), admission)

    @property
    def ready(self) -> bool:
        """True once every model is loaded and warmed up, until shutdown begins."""
        return not self.draining and all(slot.status == "ready" for slot in self.slots.values())

    def drain(self) -> None:
        """Begin shutdown: readiness turns false and new inference requests are refused with 503."""
        self.draining = True

    async def load_all(self) -> None:
        """Load, warm up and start every model in turn; a model that fails is marked failed and logged."""
        self.scheduler.start()
        for slot in self.slots.values():
            endpoint = slot.endpoint
            try:
                engine, task = await asyncio.to_thread(load_model, endpoint, self.settings, self._engine_factory)
            except Exception as exc:
                slot.status, slot.error = "failed", f"{type(exc).__name__}: {exc}"
                logger.error("model %s failed to load and is not served: %s", endpoint.name, slot.error, exc_info=True)
                continue
            batcher = Batcher(
                endpoint.name,
                task.collate,
                engine.run,
                slot.metrics,
                self.scheduler,
                max_batch_size=endpoint.config.max_batch_size,
                max_wait_ms=endpoint.config.max_wait_ms,
                max_batch_tokens=endpoint.config.max_batch_tokens,
                item_tokens=task.tokens,
            )
            batcher.start()
            slot.engine, slot.task, slot.batcher, slot.status = engine, task, batcher, "ready"
            slot.metrics.ready.set(1)
        await self._finish_compiling()

    async def _finish_compiling(self) -> None:
        """Compile the shapes the engines deferred to be ready sooner, one at a time, while the models serve."""
        for slot in self.slots.values():
            engine = slot.engine
            if not isinstance(engine, DeferredCompilation):
                continue
            started = time.perf_counter()
            try:
                while await asyncio.to_thread(engine.compile_next):
                    pass
            except Exception:
                logger.exception("model %s: compiling more shapes failed; it serves on those compiled",
                                 slot.endpoint.name)
                continue
            logger.info("model %s: every shape compiled (%.1f s in the background)", slot.endpoint.name,
                        time.perf_counter() - started)

    async def stop(self) -> None:
        """Stop every batcher, then the scheduler; the models are no longer ready."""
        for slot in self.slots.values():
            slot.metrics.ready.set(0)
            if slot.batcher is not None:
                await slot.batcher.stop()
                slot.batcher = None
            if slot.status == "ready":
                slot.status = "stopped"
        await self.scheduler.stop()
