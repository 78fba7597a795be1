"""Continuous batching: requests queue their items; the app's engine scheduler runs each model's batches in turn.

A request's items wait in its model's queue. When the engine is idle, they run at once; while it is busy, arrivals
gather into the model's next batch, of at most `max_batch_size` items. Once the engine is free, a batch that is not
full and whose first item arrived while the engine was busy may wait for company until `max_wait_ms` after that item
arrived; a request arriving at an idle engine never waits. The scheduler (service/runtime/scheduler.py) runs one batch
at a time across models, in its engine thread, and resolves one future per request. A request with several inputs
contributes several items and may span batches. An engine error fails only the requests with items in that batch.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.runtime.errors import EngineFailed
from service.runtime.metrics import ModelMetrics
from service.runtime.scheduler import EngineScheduler

logger = logging.getLogger(__name__)

ItemOutputs = list[np.ndarray]  # one item's row of every engine output
Collate = Callable[[Sequence[Any]], dict[str, np.ndarray]]
RunEngine = Callable[[Mapping[str, np.ndarray]], list[np.ndarray]]
ItemTokens = Callable[[Any], int]


class BatchError(EngineFailed):
    """The engine failed on a batch (or the batcher stopped); every request with items in it fails (500)."""


@dataclass(eq=False)
class _Job:
    """One request's items on their way through the batches."""

    items: Sequence[Any]
    future: asyncio.Future[list[ItemOutputs]]
    enqueued: float
    eager: bool  # arrived while the engine was idle: runs without waiting for company
    results: list[ItemOutputs]
    taken: int = 0
    finished: int = 0


class Batcher:
    """Collects the items of concurrent requests for one model into engine batches; a lane of the engine scheduler."""

    def __init__(
        self,
        name: str,
        collate: Collate,
        run: RunEngine,
        metrics: ModelMetrics,
        scheduler: EngineScheduler,
        max_batch_size: int = 16,
        max_wait_ms: float = 5.0,
        max_batch_tokens: int | None = None,
        item_tokens: ItemTokens | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        if max_batch_tokens is not None and item_tokens is None:
            raise ValueError("max_batch_tokens needs item_tokens to count an item's tokens")
        self.name = name
        self._collate = collate
        self._run_engine = run
        self._metrics = metrics
        self._scheduler = scheduler
        self._max_batch_size = max_batch_size
        self._max_wait = max_wait_ms / 1000
        self._max_batch_tokens = max_batch_tokens
        self._item_tokens = item_tokens
        self._jobs: deque[_Job] = deque()  # the first may have items in earlier batches already
        self._waiting = 0  # items in self._jobs not yet taken
        self._running: list[_Job] = []
        self._started = False

    def start(self) -> None:
        """Take requests and have the scheduler run their batches."""
        if not self._started:
            self._scheduler.add(self)
            self._started = True

    async def stop(self) -> None:
        """Leave the scheduler and fail every request still waiting or running."""
        if self._started:
            self._scheduler.remove(self)
            self._started = False
        self._fail([*self._running, *self._jobs], BatchError(f"model {self.name} is shutting down"))
        self._metrics.queue_depth.dec(self._waiting)
        self._jobs.clear()
        self._waiting = 0
        self._running = []

    async def submit(self, items: Sequence[Any]) -> list[ItemOutputs]:
        """Queue a request's items; returns each item's engine outputs, in order. Raises BatchError."""
        if not self._started:
            raise BatchError(f"model {self.name} is not running")
        if not items:
            return []
        future: asyncio.Future[list[ItemOutputs]] = asyncio.get_running_loop().create_future()
        job = _Job(items, future, time.monotonic(), self._scheduler.idle, results=[[] for _ in items])
        started_waiting = not self._jobs
        self._jobs.append(job)
        self._waiting += len(items)
        self._metrics.queue_depth.inc(len(items))
        self._scheduler.notify(self, started_waiting)
        return await future

    def due_at(self) -> float | None:
        """When the waiting items should run: at once when the first arrived at an idle engine or a batch is full,
        else max_wait after the first arrived; None when nothing waits."""
        if not self._jobs:
            return None
        first = self._jobs[0]
        if first.eager or self._waiting >= self._max_batch_size:
            return -math.inf
        return first.enqueued + self._max_wait

    async def run_batch(self, executor: ThreadPoolExecutor) -> None:
        """Run the waiting items (at most max_batch_size) in `executor` and hand each request its outputs."""
        batch = self._take()
        if not batch:
            return
        jobs = list(dict.fromkeys(job for job, _ in batch))
        self._running = jobs
        items = [job.items[index] for job, index in batch]
        self._metrics.observe_batch(len(items))
        try:
            outputs = await asyncio.get_running_loop().run_in_executor(executor, self._execute, items)
        except Exception as exc:
            self._running = []
            logger.exception("model %s: engine failed on a batch of %d items", self.name, len(items))
            self._fail(jobs, BatchError(f"the engine failed on a batch of {len(items)} items: {exc}"))
            return
        self._running = []
        for row, (job, index) in enumerate(batch):
            if job.future.done():  # cancelled, or failed by stop()
                continue
            job.results[index] = [output[row] for output in outputs]
            job.finished += 1
            if job.finished == len(job.items):
                job.future.set_result(job.results)

    def _fitting(self, job: _Job, batch: list[tuple[_Job, int]], longest: int) -> tuple[int, int]:
        """How many of the job's next items join the batch, within max_batch_size and the token budget (the batch
        padded to its longest item), and the batch's longest item then; the first item of a batch always joins."""
        room = min(self._max_batch_size - len(batch), len(job.items) - job.taken)
        if self._max_batch_tokens is None or self._item_tokens is None:
            return room, longest
        count = 0
        while count < room:
            tokens = max(longest, self._item_tokens(job.items[job.taken + count]))
            if (batch or count) and (len(batch) + count + 1) * tokens > self._max_batch_tokens:
                break
            longest, count = tokens, count + 1
        return count, longest

    def _take(self) -> list[tuple[_Job, int]]:
        """Move waiting items into a batch, at most max_batch_size items and max_batch_tokens padded tokens; drop
        those of requests that went away."""
        batch: list[tuple[_Job, int]] = []
        longest = 0
        while self._jobs and len(batch) < self._max_batch_size:
            job = self._jobs[0]
            if job.future.done():  # cancelled, e.g. the client disconnected
                count = len(job.items) - job.taken
            else:
                count, longest = self._fitting(job, batch, longest)
                if count == 0:  # the token budget is spent: the rest waits for the next batch
                    break
                if job.taken == 0:
                    self._metrics.observe_stage("queue", time.monotonic() - job.enqueued)
                batch.extend((job, index) for index in range(job.taken, job.taken + count))
            job.taken += count
            self._waiting -= count
            self._metrics.queue_depth.dec(count)
            if job.taken == len(job.items):
                self._jobs.popleft()
        return batch

    def _execute(self, items: list[Any]) -> list[np.ndarray]:
        """Collate and run one batch (in the engine thread); the engine stage times the engine, engine seconds both."""
        start = time.perf_counter()
        try:
            inputs = self._collate(items)
            engine_start = time.perf_counter()
            outputs = self._run_engine(inputs)
            self._metrics.observe_stage("engine", time.perf_counter() - engine_start)
        finally:
            self._metrics.engine_seconds.inc(time.perf_counter() - start)
        for output in outputs:
            if output.shape[0] != len(items):
                raise ValueError(f"engine returned {output.shape[0]} rows for {len(items)} items")
        return outputs

    @staticmethod
    def _fail(jobs: Sequence[_Job], error: BatchError) -> None:
        for job in jobs:
            if not job.future.done():
                job.future.set_exception(error)
