"""One inference request from admission to answers, shared by the v1 and v2 routes.

Order of checks: model served (404), server not draining and model loaded (503), input count (413), queue place
(503 or 429 with Retry-After), then tokenize, batch and postprocess within the request timeout (504). Invalid inputs
raise InputError, which each protocol maps to its own status; an engine failure on the batch is a 500.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence
from typing import Any

from fastapi import HTTPException
from fastapi.concurrency import run_in_threadpool

from service.runtime.batching import BatchError
from service.runtime.state import ModelSlot, ServiceState
from service.runtime.tasks import InputError, PredictOptions


def serving_slot(state: ServiceState, name: str) -> ModelSlot:
    """The slot of a model that can take requests now; raises 404 or 503 otherwise."""
    slot = state.slots.get(name)
    if slot is None:
        raise HTTPException(404, f"model {name!r} is not served; GET /v1/models lists the served models")
    if state.draining:
        retry = str(state.settings.retry_after_s)
        raise HTTPException(503, "the server is shutting down", {"Retry-After": retry, "Connection": "close"})
    if slot.task is None or slot.batcher is None:
        reason = f"failed to load ({slot.error})" if slot.status == "failed" else f"is {slot.status}"
        raise HTTPException(503, f"model {name!r} {reason}")
    return slot


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list | tuple):
        for part in value:
            yield from _strings(part)
    elif isinstance(value, dict):
        for part in value.values():
            yield from _strings(part)


def check_text(inputs: Sequence[object]) -> None:
    """Refuse strings that cannot be encoded as UTF-8 (lone surrogates, which JSON escapes can carry)."""
    for index, value in enumerate(inputs):
        for text in _strings(value):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise InputError(f"inputs[{index}] is not valid Unicode ({exc.reason})") from exc


async def predict(state: ServiceState, slot: ModelSlot, inputs: Sequence[object], options: PredictOptions) -> list[Any]:
    """Answers for every input, in order; raises HTTPException (413, 429/503, 500, 504) or InputError."""
    config, name = slot.endpoint.config, slot.endpoint.name
    if len(inputs) > config.max_inputs_per_request:
        raise HTTPException(
            413, f"{len(inputs)} inputs; model {name!r} takes at most {config.max_inputs_per_request} per request"
        )
    timeout = state.settings.request_timeout_s
    with slot.admission.admit(len(inputs)):
        try:
            async with asyncio.timeout(timeout):
                return await _run(slot, inputs, options)
        except TimeoutError as exc:
            raise HTTPException(504, f"model {name!r} did not answer within {timeout} s") from exc


async def _run(slot: ModelSlot, inputs: Sequence[object], options: PredictOptions) -> list[Any]:
    task, batcher, metrics = slot.task, slot.batcher, slot.metrics
    assert task is not None and batcher is not None  # serving_slot checked
    check_text(inputs)
    start = time.perf_counter()
    items = await run_in_threadpool(task.preprocess, inputs)
    metrics.observe_stage("tokenize", time.perf_counter() - start)
    try:
        outputs = await batcher.submit(items)
    except BatchError as exc:
        raise HTTPException(500, str(exc)) from exc
    start = time.perf_counter()
    answers = task.answers(items, outputs, options)
    metrics.observe_stage("postprocess", time.perf_counter() - start)
    return answers
