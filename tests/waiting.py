"""Bounded waits: poll a condition until it holds, or raise TimeoutError naming what was awaited."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def _timed_out(what: str, timeout: float, detail: Callable[[], object] | None) -> TimeoutError:
    message = f"timed out after {timeout:g} s waiting for {what}"
    return TimeoutError(message if detail is None else f"{message} (now: {detail()!r})")


def wait_until(
    condition: Callable[[], T | None], what: str, timeout: float = 30.0, interval: float = 0.02,
    detail: Callable[[], object] | None = None,
) -> T:
    """Call `condition` every `interval` seconds until it returns something truthy, and return that.

    Raises TimeoutError naming `what` (and `detail()`, when given) after `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() >= deadline:
            raise _timed_out(what, timeout, detail)
        time.sleep(interval)
    return value


async def wait_until_async(
    condition: Callable[[], T | None], what: str, timeout: float = 30.0, interval: float = 0.01,
    detail: Callable[[], object] | None = None,
) -> T:
    """`wait_until` inside an event loop: sleeps with asyncio, so the loop's other tasks go on meanwhile."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() >= deadline:
            raise _timed_out(what, timeout, detail)
        await asyncio.sleep(interval)
    return value
