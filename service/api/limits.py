"""The request body size limit, an ASGI middleware (the admission of inputs per model is the runtime's)."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodySizeLimit:
    """ASGI middleware: 413 for bodies over `max_bytes`, by Content-Length up front or by counting as they stream.

    The refusal is raised as an HTTPException when the app reads the body, so the app's exception handlers render it
    in the protocol of the route (v1 `detail`, v2 `error`); FastAPI's body reading turns any other exception into a
    400, so it cannot be an ObertaError.
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
