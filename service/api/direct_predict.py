"""The v1 prediction route's common case, answered before FastAPI: an ASGI middleware outside the app's stack.

py-spy on the server under 64 clients sending one short sentence each: FastAPI's middleware stack, routing, body
parsing, validation and response serialization took about half of the event loop's time per request, which on two
cores is time the engine does not get. This middleware answers a well-formed `POST /v1/models/{name}/predict` itself,
with the same runtime calls, metrics, body and errors as the route. Anything else goes to the app, with the body
replayed when it was read: other routes and methods, requests with an Origin header (CORS) or an Authorization the
server does not accept, bodies that are chunked, compressed, not declared as JSON, over max_body_bytes, or that fail
validation. The app answers those exactly as before.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.auth import check_key
from service.api.errors import Unauthorized, error_response
from service.api.metering import RequestMeter
from service.api.routes import predict_options
from service.api.schemas import PredictRequest, PredictResponse
from service.runtime.errors import ObertaError
from service.runtime.inference import predict, serving_slot
from service.runtime.state import ServiceState

logger = logging.getLogger(__name__)
PREFIX, SUFFIX = "/v1/models/", "/predict"


def model_of(scope: Scope) -> str | None:
    """The model named by a `POST /v1/models/{name}/predict`, else None."""
    if scope["type"] != "http" or scope["method"] != "POST":
        return None
    path: str = scope["path"]
    if not (path.startswith(PREFIX) and path.endswith(SUFFIX)):
        return None
    name = path[len(PREFIX) : -len(SUFFIX)]
    return name if name and "/" not in name else None


def plain_json(headers: dict[bytes, bytes], max_body_bytes: int) -> bool:
    """A JSON body of declared size within the limit, uncompressed, without CORS."""
    length = headers.get(b"content-length", b"")
    if not length.isdigit() or int(length) > max_body_bytes:
        return False
    if not headers.get(b"content-type", b"").lower().startswith(b"application/json"):
        return False
    return headers.get(b"content-encoding", b"identity").lower() == b"identity" and b"origin" not in headers


async def key_accepted(request: Request) -> bool:
    """Whether the inference routes' key check (service/api/auth.py) lets the request through."""
    try:
        await check_key(request)
    except Unauthorized:
        return False
    return True


async def read_body(receive: Receive, max_bytes: int) -> tuple[bytes, list[Message], bool]:
    """The request body, the messages it came in, and whether it is complete within `max_bytes` (False when the
    client went away or sent more)."""
    messages: list[Message] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return b"", messages, False
        size += len(message.get("body", b""))
        if size > max_bytes:
            return b"", messages, False
        if not message.get("more_body", False):
            return b"".join(part.get("body", b"") for part in messages), messages, True


def replaying(messages: list[Message], receive: Receive) -> Callable[[], Awaitable[Message]]:
    """A receive that gives `messages` again, then what `receive` gives."""
    pending = list(messages)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay


class DirectPredict:
    """ASGI middleware: well-formed v1 predictions answered here, everything else by `app` (module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        name = model_of(scope)
        state: ServiceState | None = getattr(scope["app"].state, "service", None) if name is not None else None
        if (name is None or state is None or not plain_json(dict(scope["headers"]), state.settings.max_body_bytes)
                or not await key_accepted(Request(scope))):
            await self.app(scope, receive, send)
            return
        body, messages, complete = await read_body(receive, state.settings.max_body_bytes)
        try:
            request = PredictRequest.model_validate_json(body) if complete else None
        except ValidationError:
            request = None
        if request is None:
            await self.app(scope, replaying(messages, receive), send)
            return
        response = await self._answer(scope, state, name, request)
        await response(scope, receive, send)

    @staticmethod
    async def _answer(scope: Scope, state: ServiceState, name: str, body: PredictRequest) -> Response:
        with RequestMeter(state) as meter:
            meter.model(name)
            try:
                answers = await predict(state, serving_slot(state, name), body.inputs, predict_options(body))
                content = PredictResponse.model_validate({"model": name, "outputs": answers})
                response = Response(content.model_dump_json(exclude_none=True), media_type="application/json")
            except ObertaError as exc:
                response = await error_response(Request(scope), exc)
            except Exception as exc:
                logger.exception("model %s: a prediction failed", name)
                response = await error_response(Request(scope), exc)
            meter.status = response.status_code
            return response
