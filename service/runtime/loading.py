"""Loading one model: tokenizer, engine and task, checked end to end by a warm-up batch."""

from __future__ import annotations

import logging
import time

from service.runtime.config import Endpoint, Settings
from service.runtime.engines import Engine, EngineFactory, EngineOptions
from service.runtime.tasks import PredictOptions, Task, build_task
from service.runtime.tasks.encoding import load_tokenizer

logger = logging.getLogger(__name__)


def engine_options(endpoint: Endpoint, settings: Settings) -> EngineOptions:
    """Engine options from the endpoint's config, its card and the server settings."""
    config = endpoint.config
    return EngineOptions(
        max_length=endpoint.card.max_length,
        max_batch_size=config.max_batch_size,
        threads=config.threads or settings.threads,
        sequence_buckets=tuple(config.sequence_buckets) if config.sequence_buckets else None,
        batch_buckets=tuple(config.batch_buckets) if config.batch_buckets else None,
    )


def warm_up(task: Task, engine: Engine) -> None:
    """Run the task's example inputs through preprocess, engine and answers once."""
    items = task.preprocess(task.example_inputs())
    outputs = engine.run(task.collate(items))
    task.answers(items, [[output[row] for output in outputs] for row in range(len(items))], PredictOptions(top_k=1))


def load_model(endpoint: Endpoint, settings: Settings, engine_factory: EngineFactory) -> tuple[Engine, Task]:
    """Engine and task for an endpoint, warmed up (blocking: call it from a thread in async code)."""
    start = time.perf_counter()
    card, config = endpoint.card, endpoint.config
    tokenizer, pad_id = load_tokenizer(endpoint.model_dir / card.tokenizer, card.max_length, config.truncation)
    engine = engine_factory(config.engine, endpoint.model_dir, card, engine_options(endpoint, settings))
    task = build_task(card, tokenizer, pad_id, engine.input_names)
    warm_up(task, engine)
    logger.info("model %s: loaded and warmed up in %.1f s", endpoint.name, time.perf_counter() - start)
    return engine, task
