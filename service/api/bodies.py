"""How the inference routes read request bodies: uncompressed only, and JSON whatever the Content-Type says.

Every protocol answers a compressed body with the same 415 (`check_encoding`, called by the inference route class).
FastAPI parses a body as JSON only when its Content-Type says so (curl -d sends form-urlencoded) and answers an
undecodable one (invalid UTF-8, nesting too deep) with a bare 400; `JSONBodyRequest` reads every body as JSON, as v2
reads its own, and makes each failure a JSON decode error, which the routes answer in their protocol's shape.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.datastructures import Headers
from starlette.requests import Request

from service.api.errors import UnsupportedMediaType

IDENTITY = "identity"


def check_encoding(request: Request) -> None:
    """Raise UnsupportedMediaType (415) unless the body is uncompressed (no Content-Encoding, or identity)."""
    encoding = request.headers.get("content-encoding", IDENTITY)
    if encoding.strip().lower() != IDENTITY:
        raise UnsupportedMediaType(
            f"Content-Encoding {encoding!r} is not supported: send the request body uncompressed"
        )


class JSONBodyRequest(Request):
    """A request whose body FastAPI reads as JSON whatever its Content-Type, failing only with JSON decode errors."""

    @property
    def headers(self) -> Headers:
        """The request's headers with Content-Type application/json, the one FastAPI parses as JSON."""
        raw = [(name, value) for name, value in self.scope["headers"] if name != b"content-type"]
        return Headers(raw=[*raw, (b"content-type", b"application/json")])

    async def json(self) -> Any:
        """The body parsed once; a body that is not UTF-8 or is nested too deeply raises json.JSONDecodeError."""
        if not hasattr(self, "_parsed"):
            body = await self.body()
            try:
                self._parsed = json.loads(body)
            except UnicodeDecodeError as exc:
                raise json.JSONDecodeError(f"not UTF-8 ({exc.reason})", "", exc.start) from exc
            except RecursionError as exc:
                raise json.JSONDecodeError("nested too deeply", "", 0) from exc
        return self._parsed
