"""Dynamic batching with a fake engine: one engine call for concurrent requests, splitting, failures, cancellation."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence

import numpy as np
import pytest

from service.runtime.batching import Batcher, BatchError
from service.runtime.metrics import Metrics
from tests.waiting import wait_until_async


class FakeEngine:
    """Multiplies item values by 10; records batches; fails batches holding a poisoned value; can be held.

    `entered` is set when a batch enters the engine; while `release` is cleared, batches wait there for it.
    """

    def __init__(self, poison: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.poison = poison
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
        self.entered.set()
        assert self.release.wait(timeout=10), "the engine was held for 10 s"
        values = inputs["x"].tolist()
        self.batches.append(values)
        if self.poison in values:
            raise RuntimeError("poisoned batch")
        return [inputs["x"] * 10]


def _batcher(engine: FakeEngine, metrics: Metrics, max_batch_size: int, max_wait_ms: float) -> Batcher:
    return Batcher("m", engine.collate, engine.run, metrics.model("m"), max_batch_size, max_wait_ms)


def _values(outputs: list[list[np.ndarray]]) -> list[int]:
    return [int(item[0]) for item in outputs]


def _sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, {"model": "m", **labels})
    return 0.0 if value is None else value


async def _queued(metrics: Metrics, items: int) -> None:
    """Wait until `items` items wait in the queue."""
    await wait_until_async(lambda: _sample(metrics, "oberta_queue_depth") == items, f"{items} queued items", 10)


def test_concurrent_requests_share_one_engine_call() -> None:
    engine, metrics = FakeEngine(), Metrics()

    async def main() -> list[list[int]]:
        batcher = _batcher(engine, metrics, max_batch_size=8, max_wait_ms=2000)
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
    assert _sample(metrics, "oberta_queue_depth") == 0


def test_a_lone_request_waits_at_most_max_wait() -> None:
    engine, metrics = FakeEngine(), Metrics()

    async def main() -> float:
        batcher = _batcher(engine, metrics, max_batch_size=64, max_wait_ms=20)
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
        batcher = _batcher(engine, metrics, max_batch_size=4, max_wait_ms=1)
        batcher.start()
        outputs = await batcher.submit(list(range(10)))
        await batcher.stop()
        return _values(outputs)

    assert asyncio.run(main()) == [value * 10 for value in range(10)]
    assert engine.batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_an_engine_error_fails_only_its_batch() -> None:
    engine, metrics = FakeEngine(poison=99), Metrics()

    async def main() -> tuple[BaseException | list[list[np.ndarray]], ...]:
        batcher = _batcher(engine, metrics, max_batch_size=2, max_wait_ms=200)
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
        batcher = _batcher(engine, metrics, max_batch_size=2, max_wait_ms=1)
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
        batcher = _batcher(engine, metrics, max_batch_size=1, max_wait_ms=1)
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
