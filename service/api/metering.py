"""Per-request metrics of inference routes: requests by model and status, latency, and the in-flight gauge."""

from __future__ import annotations

import time
from types import TracebackType

from service.runtime.metrics import UNKNOWN_MODEL
from service.runtime.state import ModelSlot, ServiceState


class RequestMeter:
    """Context manager around one inference request: once `model` names the model, keeps its in-flight gauge; on
    exit, counts the request under `status` (set it before leaving; 500 if never set) and times it. Requests for no
    served model (or that failed before naming one) are counted under the `unknown` model, untimed."""

    def __init__(self, state: ServiceState) -> None:
        self._state = state
        self._slot: ModelSlot | None = None
        self.status = 500
        self._start = 0.0

    def __enter__(self) -> RequestMeter:
        self._start = time.perf_counter()
        return self

    def model(self, name: str) -> None:
        """The request is for the model `name`."""
        self._slot = self._state.slots.get(name)
        if self._slot is not None:
            self._slot.metrics.inflight.inc()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._slot is None:
            self._state.metrics.count_request(UNKNOWN_MODEL, self.status)
        else:
            self._slot.metrics.inflight.dec()
            self._slot.metrics.observe_request(self.status, time.perf_counter() - self._start)
