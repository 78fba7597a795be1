"""Dynamic batching: requests queue their items, one worker per model runs them through the engine in batches.

The worker takes up to `max_batch_size` items, waiting for more until `max_wait_ms` after the first arrived, runs the
batch in a thread of its own (the event loop never blocks) and resolves one future per request. A request with several
inputs contributes several items and may span batches. An engine error fails only the requests with items in that batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.runtime.errors import EngineFailed
from service.runtime.metrics import ModelMetrics

logger = logging.getLogger(__name__)

ItemOutputs = list[np.ndarray]  # one item's row of every engine output
Collate = Callable[[Sequence[Any]], dict[str, np.ndarray]]
RunEngine = Callable[[Mapping[str, np.ndarray]], list[np.ndarray]]


class BatchError(EngineFailed):
    """The engine failed on a batch (or the batcher stopped); every request with items in it fails (500)."""


@dataclass(eq=False)
class _Job:
    """One request's items on their way through the batches."""

    items: Sequence[Any]
    future: asyncio.Future[list[ItemOutputs]]
    enqueued: float
    results: list[ItemOutputs]
    taken: int = 0
    finished: int = 0


class Batcher:
    """Collects the items of concurrent requests for one model into engine batches."""

    def __init__(
        self,
        name: str,
        collate: Collate,
        run: RunEngine,
        metrics: ModelMetrics,
        max_batch_size: int = 16,
        max_wait_ms: float = 5.0,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self.name = name
        self._collate = collate
        self._run_engine = run
        self._metrics = metrics
        self._max_batch_size = max_batch_size
        self._max_wait = max_wait_ms / 1000
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._partial: _Job | None = None  # a job whose remaining items did not fit in the last batch
        self._running: list[_Job] = []
        self._worker: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"oberta-engine-{name}")

    def start(self) -> None:
        """Start the worker on the running event loop."""
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._work(), name=f"oberta-batcher-{self.name}")

    async def stop(self) -> None:
        """Stop the worker and fail every request still waiting."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        waiting = [*self._running, *([self._partial] if self._partial else [])]
        while not self._queue.empty():
            waiting.append(self._queue.get_nowait())
        self._fail(waiting, BatchError(f"model {self.name} is shutting down"))
        self._metrics.queue_depth.dec(sum(len(job.items) - job.taken for job in waiting))
        self._partial = None
        self._running = []
        self._executor.shutdown(wait=False)

    async def submit(self, items: Sequence[Any]) -> list[ItemOutputs]:
        """Queue a request's items; returns each item's engine outputs, in order. Raises BatchError."""
        if self._worker is None:
            raise BatchError(f"model {self.name} is not running")
        if not items:
            return []
        future: asyncio.Future[list[ItemOutputs]] = asyncio.get_running_loop().create_future()
        job = _Job(items=items, future=future, enqueued=time.monotonic(), results=[[] for _ in items])
        self._queue.put_nowait(job)
        self._metrics.queue_depth.inc(len(items))
        return await future

    async def _work(self) -> None:
        while True:
            batch = await self._collect()
            if batch:
                await self._run_batch(batch)

    async def _collect(self) -> list[tuple[_Job, int]]:
        """Items for the next batch: at most max_batch_size, gathered until max_wait after the first job arrived."""
        job = self._partial or await self._queue.get()
        self._partial = None
        deadline = job.enqueued + self._max_wait
        batch: list[tuple[_Job, int]] = []
        while True:
            self._take(job, batch)
            if job.taken < len(job.items):
                self._partial = job
                return batch
            if len(batch) >= self._max_batch_size:
                return batch
            try:
                job = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return batch
                try:
                    job = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    return batch

    def _take(self, job: _Job, batch: list[tuple[_Job, int]]) -> None:
        """Move as many of the job's items into the batch as fit; drop those of requests that went away."""
        if job.future.done():  # cancelled, e.g. the client disconnected
            count = len(job.items) - job.taken
            job.taken = len(job.items)
        else:
            count = min(self._max_batch_size - len(batch), len(job.items) - job.taken)
            if job.taken == 0:
                self._metrics.observe_stage("queue", time.monotonic() - job.enqueued)
            batch.extend((job, index) for index in range(job.taken, job.taken + count))
            job.taken += count
        self._metrics.queue_depth.dec(count)

    async def _run_batch(self, batch: list[tuple[_Job, int]]) -> None:
        jobs = list(dict.fromkeys(job for job, _ in batch))
        self._running = jobs
        items = [job.items[index] for job, index in batch]
        self._metrics.observe_batch(len(items))
        try:  # when stop() cancels this await, the jobs stay in self._running for stop() to fail
            outputs = await asyncio.get_running_loop().run_in_executor(self._executor, self._execute, items)
        except Exception as exc:
            self._running = []
            logger.exception("model %s: engine failed on a batch of %d items", self.name, len(items))
            self._fail(jobs, BatchError(f"the engine failed on a batch of {len(items)} items: {exc}"))
            return
        self._running = []
        for row, (job, index) in enumerate(batch):
            if job.future.done():
                continue
            job.results[index] = [output[row] for output in outputs]
            job.finished += 1
            if job.finished == len(job.items):
                job.future.set_result(job.results)

    def _execute(self, items: list[Any]) -> list[np.ndarray]:
        """Collate and run one batch (in the engine thread)."""
        inputs = self._collate(items)
        start = time.perf_counter()
        outputs = self._run_engine(inputs)
        self._metrics.observe_stage("engine", time.perf_counter() - start)
        for output in outputs:
            if output.shape[0] != len(items):
                raise ValueError(f"engine returned {output.shape[0]} rows for {len(items)} items")
        return outputs

    @staticmethod
    def _fail(jobs: Sequence[_Job], error: BatchError) -> None:
        for job in jobs:
            if not job.future.done():
                job.future.set_exception(error)
