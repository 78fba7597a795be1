"""Continuous batching with a fake engine: one engine call for concurrent requests, no wait at an idle engine,
splitting, failures, cancellation; one batch at a time across models, shared fairly."""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from service.runtime.batching import Batcher, BatchError
from service.runtime.metrics import Metrics
from service.runtime.scheduler import EngineScheduler
from tests.waiting import wait_until_async


class FakeEngine:
    """Multiplies item values by 10; records batches; fails batches holding a poisoned value; can be held.

    `entered` is set when a batch enters the engine; while `release` is cleared, batches wait there for it.
    """

    def __init__(self, poison: int | None = None, name: str = "m", log: list[tuple[str, str]] | None = None) -> None:
        self.batches: list[list[int]] = []
        self.poison = poison
        self.name = name
        self.log = [] if log is None else log  # ("enter" or "exit", name) per batch, shareable between engines
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()

    async def wait_entered(self) -> None:
        """Wait (at most 10 s, without blocking the event loop) until a batch has entered the engine."""
        assert await asyncio.to_thread(self.entered.wait, 10), "no batch entered the engine within 10 s"

    @staticmethod
    def collate(items: Sequence[int]) -> dict[str, np.ndarray]:
        return {"x": np.asarray(items, dtype=np.int64)}

    def run(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        self.log.append(("enter", self.name))
        self.entered.set()
        assert self.release.wait(timeout=10), "the engine was held for 10 s"
        values = inputs["x"].tolist()
        self.batches.append(values)
        self.log.append(("exit", self.name))
        if self.poison in values:
            raise RuntimeError("poisoned batch")
        return [inputs["x"] * 10]


@contextlib.asynccontextmanager
async def _scheduler() -> AsyncIterator[EngineScheduler]:
    scheduler = EngineScheduler()
    scheduler.start()
    try:
        yield scheduler
    finally:
        await scheduler.stop()


def _batcher(
    engine: FakeEngine, metrics: Metrics, scheduler: EngineScheduler, max_batch_size: int, max_wait_ms: float
) -> Batcher:
    name = engine.name
    return Batcher(name, engine.collate, engine.run, metrics.model(name), scheduler, max_batch_size, max_wait_ms)


def _values(outputs: list[list[np.ndarray]]) -> list[int]:
    return [int(item[0]) for item in outputs]


def _sample(metrics: Metrics, name: str, model: str = "m", **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, {"model": model, **labels})
    return 0.0 if value is None else value


async def _queued(metrics: Metrics, items: int, model: str = "m") -> None:
    """Wait until `items` items wait in the model's queue."""
    await wait_until_async(lambda: _sample(metrics, "oberta_queue_depth", model) == items, f"{items} queued items", 10)


def test_concurrent_requests_share_one_engine_call() -> None:
    engine, metrics = FakeEngine(), Metrics()

    async def main() -> list[list[int]]:
        async with _scheduler() as scheduler:
            batcher = _batcher(engine, metrics, scheduler, max_batch_size=8, max_wait_ms=2000)
            batcher.start()
            results = await asyncio.gather(*(batcher.submit([value]) for value in range(8)))
            await batcher.stop()
            return [_values(result) for result in results]

    assert asyncio.run(main()) == [[value * 10] for value in range(8)]
    assert engine.batches == [list(range(8))]
    assert _sample(metrics, "oberta_batch_size_count") == 1
    assert _sample(metrics, "oberta_batch_size_sum") == 8
    assert _sample(metrics, "oberta_items_total") == 8
    assert _sample(metrics, "oberta_stage_duration_seconds_count", stage="queue") == 8
    assert _sample(metrics, "oberta_stage_duration_seconds_count", stage="engine") == 1
    assert _sample(metrics, "oberta_engine_seconds_total") > 0
    assert _sample(metrics, "oberta_queue_depth") == 0


def test_a_lone_request_waits_at_most_max_wait() -> None:
    engine, metrics = FakeEngine(), Metrics()

    async def main() -> float:
        async with _scheduler() as scheduler:
            batcher = _batcher(engine, metrics, scheduler, max_batch_size=64, max_wait_ms=20)
            batcher.start()
            loop = asyncio.get_running_loop()
            start = loop.time()
            assert _values(await batcher.submit([1, 2])) == [10, 20]
            elapsed = loop.time() - start
            await batcher.stop()
            return elapsed

    assert asyncio.run(main()) < 1.0
    assert engine.batches == [[1, 2]]


def test_a_large_request_spans_batches_and_keeps_its_order() -> None:
    engine, metrics = FakeEngine(), Metrics()

    async def main() -> list[int]:
        async with _scheduler() as scheduler:
            batcher = _batcher(engine, metrics, scheduler, max_batch_size=4, max_wait_ms=1)
            batcher.start()
            outputs = await batcher.submit(list(range(10)))
            await batcher.stop()
            return _values(outputs)

    assert asyncio.run(main()) == [value * 10 for value in range(10)]
    assert engine.batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_an_engine_error_fails_only_its_batch() -> None:
    engine, metrics = FakeEngine(poison=99), Metrics()

    async def main() -> tuple[BaseException | list[list[np.ndarray]], ...]:
        async with _scheduler() as scheduler:
            batcher = _batcher(engine, metrics, scheduler, max_batch_size=2, max_wait_ms=200)
            batcher.start()
            poisoned = asyncio.create_task(batcher.submit([99, 1]))  # fills the first batch
            healthy = asyncio.create_task(batcher.submit([2]))  # lands in the second
            results = await asyncio.gather(poisoned, healthy, return_exceptions=True)
            after = await batcher.submit([3])
            await batcher.stop()
            return (*results, after)

    poisoned, healthy, after = asyncio.run(main())
    assert isinstance(poisoned, BatchError)
    assert "poisoned batch" in str(poisoned)
    assert not isinstance(healthy, BaseException)
    assert not isinstance(after, BaseException)
    assert _values(healthy) == [20]
    assert _values(after) == [30]
    assert engine.batches == [[99, 1], [2], [3]]


def test_a_cancelled_request_is_dropped_from_later_batches() -> None:
    engine, metrics = FakeEngine(), Metrics()
    engine.release.clear()

    async def main() -> list[int]:
        async with _scheduler() as scheduler:
            batcher = _batcher(engine, metrics, scheduler, max_batch_size=2, max_wait_ms=1)
            batcher.start()
            first = asyncio.create_task(batcher.submit([1, 2]))  # runs first, held in the engine
            await engine.wait_entered()
            gone = asyncio.create_task(batcher.submit([3, 4]))
            await _queued(metrics, 2)
            gone.cancel()
            engine.release.set()
            result = _values(await first) + _values(await batcher.submit([5]))
            await batcher.stop()
            return result

    assert asyncio.run(main()) == [10, 20, 50]
    assert engine.batches == [[1, 2], [5]]
    assert _sample(metrics, "oberta_queue_depth") == 0


def test_stop_fails_waiting_requests_and_submit_needs_a_running_batcher() -> None:
    engine, metrics = FakeEngine(), Metrics()
    engine.release.clear()

    async def main() -> None:
        async with _scheduler() as scheduler:
            batcher = _batcher(engine, metrics, scheduler, max_batch_size=1, max_wait_ms=1)
            with pytest.raises(BatchError, match="not running"):
                await batcher.submit([1])
            batcher.start()
            running = asyncio.create_task(batcher.submit([1]))
            await engine.wait_entered()
            waiting = asyncio.create_task(batcher.submit([2]))
            await _queued(metrics, 1)
            await batcher.stop()
            engine.release.set()
            for task in (running, waiting):
                with pytest.raises(BatchError, match="shutting down"):
                    await task

    asyncio.run(main())
    assert _sample(metrics, "oberta_queue_depth") == 0


def test_a_lone_request_at_an_idle_engine_does_not_wait_for_max_wait() -> None:
    engine, metrics = FakeEngine(), Metrics()

    async def main() -> float:
        async with _scheduler() as scheduler:
            batcher = _batcher(engine, metrics, scheduler, max_batch_size=64, max_wait_ms=10_000)
            batcher.start()
            loop = asyncio.get_running_loop()
            start = loop.time()
            for value in (1, 2, 3):
                assert _values(await batcher.submit([value])) == [value * 10]
            elapsed = loop.time() - start
            await batcher.stop()
            return elapsed

    assert asyncio.run(main()) < 5.0  # three requests in turn, each far sooner than max_wait (10 s)
    assert engine.batches == [[1], [2], [3]]


def test_arrivals_while_the_engine_is_busy_gather_and_a_full_batch_runs_at_once() -> None:
    engine, metrics = FakeEngine(), Metrics()
    engine.release.clear()

    async def main() -> list[list[int]]:
        async with _scheduler() as scheduler:
            batcher = _batcher(engine, metrics, scheduler, max_batch_size=4, max_wait_ms=10_000)
            batcher.start()
            first = asyncio.create_task(batcher.submit([1]))  # at an idle engine: runs at once, held there
            await engine.wait_entered()
            gathered = [asyncio.create_task(batcher.submit([value])) for value in (2, 3)]
            await _queued(metrics, 2)
            engine.release.set()
            await first  # the engine is free; 2 and 3 wait for company, at most max_wait (10 s)
            gathered += [asyncio.create_task(batcher.submit([value])) for value in (4, 5)]  # fill the batch
            results = [_values(await task) for task in gathered]
            await batcher.stop()
            return results

    assert asyncio.run(main()) == [[20], [30], [40], [50]]
    assert engine.batches == [[1], [2, 3, 4, 5]]


def test_two_models_batches_never_run_at_once() -> None:
    log: list[tuple[str, str]] = []
    first, second, metrics = FakeEngine(name="a", log=log), FakeEngine(name="b", log=log), Metrics()
    first.release.clear()

    async def main() -> None:
        async with _scheduler() as scheduler:
            a = _batcher(first, metrics, scheduler, max_batch_size=4, max_wait_ms=1)
            b = _batcher(second, metrics, scheduler, max_batch_size=4, max_wait_ms=1)
            a.start()
            b.start()
            held = asyncio.create_task(a.submit([1]))
            await first.wait_entered()
            waiting = asyncio.create_task(b.submit([2]))
            await _queued(metrics, 1, "b")
            assert not second.entered.is_set(), "model b ran while model a's batch was in the engine"
            first.release.set()
            assert _values(await held) + _values(await waiting) == [10, 20]
            burst = [batcher.submit([value]) for value in range(20) for batcher in (a, b)]
            assert [_values(result) for result in await asyncio.gather(*burst)] == [
                [value * 10] for value in range(20) for _ in (a, b)
            ]
            await a.stop()
            await b.stop()

    asyncio.run(main())
    assert log[:4] == [("enter", "a"), ("exit", "a"), ("enter", "b"), ("exit", "b")]
    assert [event for event, _ in log] == ["enter", "exit"] * (len(log) // 2)  # never two batches inside at once
    assert {name for _, name in log} == {"a", "b"}


def test_a_light_model_is_not_starved_behind_a_busy_ones_queue() -> None:
    log: list[tuple[str, str]] = []
    busy, light, metrics = FakeEngine(name="busy", log=log), FakeEngine(name="light", log=log), Metrics()
    busy.release.clear()

    async def main() -> None:
        async with _scheduler() as scheduler:
            heavy = _batcher(busy, metrics, scheduler, max_batch_size=2, max_wait_ms=1)
            small = _batcher(light, metrics, scheduler, max_batch_size=2, max_wait_ms=1)
            heavy.start()
            small.start()
            running = asyncio.create_task(heavy.submit([0, 1]))
            await busy.wait_entered()
            backlog = [asyncio.create_task(heavy.submit([value, value + 1])) for value in range(2, 22, 2)]
            await _queued(metrics, 20, "busy")
            answer = asyncio.create_task(small.submit([100]))
            await _queued(metrics, 1, "light")
            busy.release.set()
            assert _values(await answer) == [1000]
            await asyncio.gather(running, *backlog)
            await heavy.stop()
            await small.stop()

    asyncio.run(main())
    order = [name for event, name in log if event == "enter"]
    assert len(order) == 12
    assert order.index("light") <= 2, order  # right after the held batch, not behind the 10 queued busy batches


class BrokenLane:
    """A lane whose one batch raises outside the engine (a bug): the scheduler must go on for the others."""

    name = "broken"

    def __init__(self) -> None:
        self.runs = 0

    def due_at(self) -> float | None:
        return -math.inf if self.runs == 0 else None

    async def run_batch(self, executor: ThreadPoolExecutor) -> None:
        self.runs += 1
        raise RuntimeError("a bug")


def test_a_failing_lane_does_not_stop_the_scheduler() -> None:
    engine, metrics, broken = FakeEngine(), Metrics(), BrokenLane()

    async def main() -> list[int]:
        async with _scheduler() as scheduler:
            scheduler.add(broken)
            scheduler.notify(broken, started_waiting=True)
            await wait_until_async(lambda: broken.runs == 1, "the broken lane's batch", 10)
            batcher = _batcher(engine, metrics, scheduler, max_batch_size=4, max_wait_ms=1)
            batcher.start()
            result = _values(await batcher.submit([7]))
            await batcher.stop()
            return result

    assert asyncio.run(main()) == [70]


def test_the_token_budget_keeps_a_long_item_from_padding_short_ones() -> None:
    engine, metrics = FakeEngine(), Metrics()  # an item's value is its length in tokens

    async def main() -> list[int]:
        async with _scheduler() as scheduler:
            batcher = Batcher("m", engine.collate, engine.run, metrics.model("m"), scheduler, max_batch_size=8,
                              max_wait_ms=0, max_batch_tokens=12, item_tokens=lambda item: int(item))
            batcher.start()
            engine.release.clear()
            first = asyncio.ensure_future(batcher.submit([1]))
            await engine.wait_entered()  # the engine is busy: the next request's items gather meanwhile
            second = asyncio.ensure_future(batcher.submit([2, 2, 2, 30, 2, 2]))
            await _queued(metrics, 6)
            engine.release.set()
            await first
            result = _values(await second)
            await batcher.stop()
            return result

    assert asyncio.run(main()) == [20, 20, 20, 300, 20, 20]
    assert engine.batches == [[1], [2, 2, 2], [30], [2, 2]]  # 3 x 2 tokens fit 12; 30 runs alone (over the budget)


def test_max_batch_tokens_needs_a_token_count() -> None:
    engine, metrics = FakeEngine(), Metrics()
    with pytest.raises(ValueError, match="needs item_tokens"):
        Batcher("m", engine.collate, engine.run, metrics.model("m"), EngineScheduler(), max_batch_tokens=10)


def test_work_between_batches_runs_in_the_engine_thread_after_the_running_batch() -> None:
    log: list[tuple[str, str]] = []
    engine, metrics = FakeEngine(log=log), Metrics()
    engine.release.clear()

    def tokenize(text: str) -> str:
        log.append(("work", threading.current_thread().name))
        return text.upper()

    async def main() -> str:
        async with _scheduler() as scheduler:
            batcher = _batcher(engine, metrics, scheduler, max_batch_size=4, max_wait_ms=1)
            batcher.start()
            held = asyncio.create_task(batcher.submit([1]))
            await engine.wait_entered()
            work = asyncio.create_task(scheduler.between_batches(tokenize, "text"))
            await asyncio.sleep(0.05)
            assert not work.done(), "the work ran beside a batch in the engine"
            engine.release.set()
            await held
            result = await work
            await batcher.stop()
            return result

    assert asyncio.run(main()) == "TEXT"
    assert log[:2] == [("enter", "m"), ("exit", "m")]
    assert log[2][0] == "work" and log[2][1].startswith("oberta-engine")


def test_work_between_batches_runs_in_a_thread_of_its_own_without_a_running_scheduler() -> None:
    assert asyncio.run(EngineScheduler().between_batches(sum, [1, 2, 3])) == 6
