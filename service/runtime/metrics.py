"""Prometheus metrics, in a registry of their own per app. Dashboards depend on these names: do not rename."""

from __future__ import annotations

from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

Stage = Literal["tokenize", "queue", "engine", "postprocess"]
STAGES: tuple[Stage, ...] = ("tokenize", "queue", "engine", "postprocess")
UNKNOWN_MODEL = "_unknown"  # the model label of requests for a model that is not served

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class ModelMetrics:
    """The metrics of one model, with the model label bound."""

    def __init__(self, metrics: Metrics, model: str) -> None:
        self._metrics = metrics
        self._model = model
        self.inflight = metrics.inflight_requests.labels(model=model)
        self.queue_depth = metrics.queue_depth.labels(model=model)
        self.ready = metrics.model_ready.labels(model=model)
        self.engine_seconds = metrics.engine_seconds.labels(model=model)
        self._items = metrics.items.labels(model=model)
        self._batch_size = metrics.batch_size.labels(model=model)
        self._request_duration = metrics.request_duration.labels(model=model)
        self._stages = {stage: metrics.stage_duration.labels(model=model, stage=stage) for stage in STAGES}

    def observe_stage(self, stage: Stage, seconds: float) -> None:
        """Time spent in one stage: tokenize and postprocess per request, queue per request, engine per batch."""
        self._stages[stage].observe(seconds)

    def observe_batch(self, size: int) -> None:
        """One engine call over `size` items."""
        self._batch_size.observe(size)
        self._items.inc(size)

    def observe_request(self, status: int, seconds: float) -> None:
        """A finished request: its HTTP status and end-to-end duration."""
        self._metrics.count_request(self._model, status)
        self._request_duration.observe(seconds)


class Metrics:
    """All oberta metrics in a dedicated CollectorRegistry (so several apps can live in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.requests = Counter(
            "oberta_requests_total", "Prediction requests by HTTP status", ["model", "status"], registry=registry
        )
        self.request_duration = Histogram(
            "oberta_request_duration_seconds",
            "End-to-end prediction request duration",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.stage_duration = Histogram(
            "oberta_stage_duration_seconds",
            "Time per stage: tokenize, queue (waiting for a batch), engine (per batch), postprocess",
            ["model", "stage"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "oberta_batch_size", "Items per engine call", ["model"], buckets=BATCH_BUCKETS, registry=registry
        )
        self.items = Counter(
            "oberta_items_total", "Items (inputs) run through the engine", ["model"], registry=registry
        )
        self.inflight_requests = Gauge(
            "oberta_inflight_requests", "Prediction requests being served", ["model"], registry=registry
        )
        self.queue_depth = Gauge("oberta_queue_depth", "Items waiting for a batch", ["model"], registry=registry)
        self.engine_seconds = Counter(
            "oberta_engine_seconds",
            "Seconds the model's batches held the engine thread (collate and run); models share one, a batch at a time",
            ["model"],
            registry=registry,
        )
        self.model_ready = Gauge(
            "oberta_model_ready", "1 when the model is loaded and warmed up", ["model"], registry=registry
        )

    def count_request(self, model: str, status: int) -> None:
        """Count a finished request; `model` is UNKNOWN_MODEL for names that are not served."""
        self.requests.labels(model=model, status=str(status)).inc()

    def model(self, name: str) -> ModelMetrics:
        """The metrics of one model (series appear at zero right away)."""
        return ModelMetrics(self, name)

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric."""
        return generate_latest(self.registry)
