"""One inference request from admission to answers, shared by the v1, v2 and OpenAI-compatible routes.

Order of checks: model served (ModelNotServed), server not draining (ShuttingDown) and model loaded (ModelNotReady),
options the task reads (BadInput), input count (TooManyInputs), queue place (Overloaded), then tokenize, engine rows
(TooManyInputs), batch and postprocess within the request timeout (InferenceTimeout). Invalid inputs raise BadInput;
an engine failure on the batch raises BatchError, an EngineFailed.
The HTTP layer maps each error to its protocol's status and body.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence
from typing import Any

from service.runtime.errors import (
    BadInput,
    InferenceTimeout,
    ModelNotReady,
    ModelNotServed,
    ShuttingDown,
    TooManyInputs,
)
from service.runtime.scheduler import EngineScheduler
from service.runtime.state import ModelSlot, ServiceState
from service.runtime.tasks import PredictOptions, task_spec

INLINE_TOKENIZE_CHARS = 1000  # requests up to this size are tokenized on the event loop (tens of microseconds)


def serving_slot(state: ServiceState, name: str) -> ModelSlot:
    """The slot of a model that can take requests now; raises ModelNotServed, ShuttingDown or ModelNotReady."""
    slot = state.slots.get(name)
    if slot is None:
        raise ModelNotServed(f"model {name!r} is not served; GET /v1/models lists the served models")
    if state.draining:
        raise ShuttingDown(state.settings.retry_after_s)
    if slot.task is None or slot.batcher is None:
        reason = f"failed to load ({slot.error})" if slot.status == "failed" else f"is {slot.status}"
        raise ModelNotReady(f"model {name!r} {reason}")
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


def check_text(inputs: Sequence[object]) -> int:
    """Refuse strings that cannot be encoded as UTF-8 (lone surrogates, which JSON escapes can carry); returns the
    inputs' size in characters."""
    size = 0
    for index, value in enumerate(inputs):
        for text in _strings(value):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise BadInput(f"inputs[{index}] is not valid Unicode ({exc.reason})") from exc
            size += len(text)
    return size


async def predict(state: ServiceState, slot: ModelSlot, inputs: Sequence[object], options: PredictOptions) -> list[Any]:
    """Answers for every input, in order; raises BadInput (also for an option the task does not read),
    TooManyInputs, Overloaded, EngineFailed or InferenceTimeout."""
    config, name = slot.endpoint.config, slot.endpoint.name
    task_spec(slot.endpoint.card.task).check_options(options)
    if len(inputs) > config.max_inputs_per_request:
        raise TooManyInputs(
            f"{len(inputs)} inputs; model {name!r} takes at most {config.max_inputs_per_request} per request"
        )
    timeout = state.settings.request_timeout_s
    with slot.admission.admit(len(inputs)):
        try:
            async with asyncio.timeout(timeout):
                return await _run(state.scheduler, slot, inputs, options)
        except TimeoutError as exc:
            raise InferenceTimeout(f"model {name!r} did not answer within {timeout} s") from exc


async def _run(
    scheduler: EngineScheduler, slot: ModelSlot, inputs: Sequence[object], options: PredictOptions
) -> list[Any]:
    task, batcher, metrics = slot.task, slot.batcher, slot.metrics
    assert task is not None and batcher is not None  # serving_slot checked
    size = check_text(inputs)
    start = time.perf_counter()
    if size <= INLINE_TOKENIZE_CHARS:  # a thread hop costs more than tokenizing a few sentences
        items = task.preprocess(inputs)
    else:  # between the engine's batches, not beside them (service/runtime/scheduler.py says why)
        items = await scheduler.between_batches(task.preprocess, inputs)
    metrics.observe_stage("tokenize", time.perf_counter() - start)
    limit = slot.endpoint.config.max_rows_per_request
    if len(items) > limit:
        raise TooManyInputs(
            f"the inputs make {len(items)} engine rows (a long question-answering context is cut into several "
            f"windows); model {slot.endpoint.name!r} takes at most {limit} per request"
        )
    outputs = await batcher.submit(items)
    start = time.perf_counter()
    answers = task.answers(items, outputs, options)
    metrics.observe_stage("postprocess", time.perf_counter() - start)
    return answers
