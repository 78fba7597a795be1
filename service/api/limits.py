"""Request limits: the body size (an ASGI middleware) and the bounded admission of inputs per model."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class Overloaded(HTTPException):
    """A request refused at once because its model's queue is full; carries Retry-After."""

    def __init__(self, status_code: int, detail: str, retry_after_s: int) -> None:
        super().__init__(status_code, detail, headers={"Retry-After": str(retry_after_s)})


class Admission:
    """Counts a model's inputs admitted and not yet answered, and refuses requests past `capacity` at once.

    Used from the event loop only, so the counter needs no lock.
    """

    def __init__(self, name: str, capacity: int, status_code: int = 503, retry_after_s: int = 1) -> None:
        self.name = name
        self.capacity = capacity
        self.pending = 0
        self._status_code = status_code
        self._retry_after_s = retry_after_s

    @contextlib.contextmanager
    def admit(self, count: int) -> Iterator[None]:
        """Hold `count` places for the duration of the block; raises Overloaded when they are not free."""
        if self.pending + count > self.capacity:
            raise Overloaded(
                self._status_code,
                f"model {self.name!r} is overloaded ({self.pending} of {self.capacity} inputs queued); retry later",
                self._retry_after_s,
            )
        self.pending += count
        try:
            yield
        finally:
            self.pending -= count


class BodySizeLimit:
    """ASGI middleware: 413 for bodies over `max_bytes`, by Content-Length up front or by counting as they stream.

    The refusal is raised as an HTTPException when the app reads the body, so the app's exception handlers render it
    in the protocol of the route (v1 `detail`, v2 `error`).
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        too_large = HTTPException(413, f"request body larger than {self.max_bytes} bytes")
        received = 0

        async def limited() -> Message:
            nonlocal received
            if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
                raise too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise too_large
            return message

        await self.app(scope, limited, send)
