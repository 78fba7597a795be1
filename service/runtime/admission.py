"""Bounded admission of inputs per model: requests past the model's capacity are refused at once."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from service.runtime.errors import Overloaded


class Admission:
    """Counts a model's inputs admitted and not yet answered, and refuses requests past `capacity` at once.

    Used from the event loop only, so the counter needs no lock.
    """

    def __init__(self, name: str, capacity: int, status: int = 503, retry_after_s: int = 1) -> None:
        self.name = name
        self.capacity = capacity
        self.pending = 0
        self._status = status
        self._retry_after_s = retry_after_s

    @contextlib.contextmanager
    def admit(self, count: int) -> Iterator[None]:
        """Hold `count` places for the duration of the block; raises Overloaded when they are not free."""
        if self.pending + count > self.capacity:
            raise Overloaded(
                f"model {self.name!r} is overloaded ({self.pending} of {self.capacity} inputs queued); retry later",
                status=self._status,
                retry_after_s=self._retry_after_s,
            )
        self.pending += count
        try:
            yield
        finally:
            self.pending -= count
