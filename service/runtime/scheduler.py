"""One engine for all the models of an app: batches run one at a time, in one thread, picked by fair queueing.

Every engine uses every core it is given, so two engines running at once fight over the cores. The scheduler runs one
batch at a time across models, which keeps the cores busy without oversubscribing them. Among the models whose waiting
items are due (see `Lane.due_at`), it picks the one that has used the engine least: each model's virtual time grows by
the seconds its batches held the engine, and a model that starts waiting again begins at the virtual time of the
latest pick, so time spent idle is not saved up to monopolize the engine later.

Other CPU-heavy work of a request (tokenizing many or long texts) also runs in the engine thread, between batches
(`between_batches`): beside a running engine it would take cores from the engine's threads, which wait for each other,
and slow the batch by more than the work itself costs (measured on 2 cores, 16 texts of about 120 tokens a request,
4 clients: a batch took 28 ms with tokenization beside it, 22 ms without).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import ParamSpec, Protocol, TypeVar

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


class Lane(Protocol):
    """A model's queue as the scheduler sees it."""

    name: str

    def due_at(self) -> float | None:
        """None when nothing waits; else the time.monotonic() at which the waiting items should run."""
        ...

    async def run_batch(self, executor: ThreadPoolExecutor) -> None:
        """Take the waiting items into a batch and run it in `executor`, the engine thread."""
        ...


@dataclass(eq=False)
class _LaneState:
    lane: Lane
    virtual_time: float = 0.0


class EngineScheduler:
    """Runs the batches of every lane on one engine thread, one batch at a time, fairly."""

    def __init__(self) -> None:
        self._lanes: dict[str, _LaneState] = {}
        self._clock = 0.0  # the virtual time of the latest pick
        self._wake = asyncio.Event()
        self._idle = True
        self._worker: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None

    @property
    def idle(self) -> bool:
        """True while no batch runs (the scheduler waits for work, or for a gathering batch to come due)."""
        return self._idle

    def start(self) -> None:
        """Start the worker on the running event loop."""
        if self._worker is None:
            self._wake, self._idle = asyncio.Event(), True
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="oberta-engine")
            self._worker = asyncio.get_running_loop().create_task(self._work(self._executor), name="oberta-scheduler")

    async def stop(self) -> None:
        """Stop the worker; the engine thread finishes its batch on its own (the lanes fail their requests)."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None

    async def between_batches(self, work: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run `work` in the engine thread after the batches and work already queued there, before the next batch;
        in a thread of its own when the scheduler is not running."""
        if self._executor is None:
            return await asyncio.to_thread(work, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._executor, lambda: work(*args, **kwargs))

    def add(self, lane: Lane) -> None:
        """Schedule `lane`'s batches from now on."""
        self._lanes[lane.name] = _LaneState(lane, self._clock)

    def remove(self, lane: Lane) -> None:
        """Schedule no more of `lane`'s batches (a batch already running finishes)."""
        self._lanes.pop(lane.name, None)

    def notify(self, lane: Lane, started_waiting: bool) -> None:
        """Items arrived in `lane`; `started_waiting` when none waited before them."""
        state = self._lanes.get(lane.name)
        if state is not None and started_waiting:
            state.virtual_time = max(state.virtual_time, self._clock)
        self._wake.set()

    async def _work(self, executor: ThreadPoolExecutor) -> None:
        while True:
            state = await self._next()
            start = time.perf_counter()
            try:
                await state.lane.run_batch(executor)
            except Exception:  # a bug in one lane must not stop the engine for every model
                logger.exception("model %s: running a batch failed", state.lane.name)
            state.virtual_time += time.perf_counter() - start

    async def _next(self) -> _LaneState:
        """The lane to run next: of those whose items are due, the least virtual time; waits until one is due."""
        while True:
            self._wake.clear()
            now = time.monotonic()
            chosen: _LaneState | None = None
            next_due = math.inf
            for state in self._lanes.values():
                due = state.lane.due_at()
                if due is None:
                    continue
                if due > now:
                    next_due = min(next_due, due)
                elif chosen is None or state.virtual_time < chosen.virtual_time:
                    chosen = state
            if chosen is not None:
                self._idle = False
                self._clock = max(self._clock, chosen.virtual_time)
                return chosen
            self._idle = True
            timeout = None if next_due == math.inf else next_due - now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
