"""Error bodies by protocol: v1 routes answer {"detail": ...} (FastAPI's shape), v2 routes {"error": ...}, and the
OpenAI-compatible route {"error": {"message", "type", "param", "code"}} (OpenAI's shape, which its clients read).

Domain errors (ObertaError) are mapped here once, with their status and headers; the one status that differs by
protocol is BadInput's: 422 on v1, 400 on v2 and on the OpenAI route (where invalid bodies are 400 too). HTTPException
remains for what the framework raises itself (unknown routes, wrong methods) and for the body-size limit, which
FastAPI's body reading only lets through as HTTPException.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from service.runtime.errors import BadInput, ObertaError

V2_BAD_INPUT_STATUS = 400
OPENAI_EMBEDDINGS_PATH = "/v1/embeddings"
OPENAI_CODES = {401: "invalid_api_key", 404: "model_not_found", 429: "rate_limit_exceeded"}
MAX_PROBLEMS = 5  # validation errors named in one message


class Unauthorized(ObertaError):
    """The server has an API key and the request did not send it, or sent another."""

    status = 401


class UnsupportedMediaType(ObertaError):
    """A request body the server cannot read, such as a compressed one."""

    status = 415


class InvalidParameter(BadInput):
    """A request parameter the server refuses; OpenAI-shaped bodies name it as their `param`."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


def is_v2(request: Request) -> bool:
    """Whether the request is for the v2 protocol."""
    path = request.url.path
    return path == "/v2" or path.startswith("/v2/")


def is_openai(request: Request) -> bool:
    """Whether the request is for the OpenAI-compatible API."""
    return request.url.path == OPENAI_EMBEDDINGS_PATH


def error_status(request: Request, exc: ObertaError) -> int:
    """The HTTP status of `exc` in the protocol of `request`."""
    if (is_v2(request) or is_openai(request)) and isinstance(exc, BadInput):
        return V2_BAD_INPUT_STATUS
    return exc.status


def validation_status(request: Request) -> int:
    """The HTTP status of a body that fails validation: FastAPI's 422, or 400 on the OpenAI route (as OpenAI's)."""
    return V2_BAD_INPUT_STATUS if is_openai(request) else 422


def openai_error(message: str, status: int, param: str | None = None) -> dict[str, object]:
    """OpenAI's error body: type invalid_request_error for client errors (rate_limit_error for 429), server_error
    for 5xx; code model_not_found (404), invalid_api_key (401) or rate_limit_exceeded (429), else null."""
    kind = "server_error" if status >= 500 else "rate_limit_error" if status == 429 else "invalid_request_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": OPENAI_CODES.get(status)}}


def _error_response(
    request: Request, message: str, status: int, headers: Mapping[str, str] | None, param: str | None = None
) -> Response:
    if is_openai(request):
        return JSONResponse(openai_error(message, status, param), status_code=status, headers=headers)
    key = "error" if is_v2(request) else "detail"
    return JSONResponse({key: message}, status_code=status, headers=headers)


async def _oberta_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ObertaError)
    param = exc.param if isinstance(exc, InvalidParameter) else None
    return _error_response(request, exc.message, error_status(request, exc), exc.headers, param)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if is_v2(request) or is_openai(request):
        return _error_response(request, str(exc.detail), exc.status_code, exc.headers)
    return await http_exception_handler(request, exc)


def _field(loc: Sequence[str | int]) -> str:
    """A body field as messages name it: inputs[0], inputs[0].question ("body" for the body itself)."""
    name = ""
    for part in loc[1:]:
        name += f"[{part}]" if isinstance(part, int) else f".{part}" if name else part
    return name or "body"


def _problem(error: Mapping[str, Any]) -> str:
    """One validation error as a message naming its field (FastAPI's JSON decode error gives its reason instead)."""
    if error["type"] == "json_invalid":
        return f"body is not valid JSON: {error['ctx']['error']}"
    return f"{_field(error['loc'])}: {error['msg']}"


def _validation_message(exc: RequestValidationError) -> str:
    """The body's first few validation errors in one message, each naming its field."""
    return "; ".join(_problem(error) for error in exc.errors()[:MAX_PROBLEMS])


async def _validation_error(request: Request, exc: Exception) -> Response:
    """Invalid bodies: a 422 whose `detail` is one message naming the fields at fault (no input echoed), or on the
    OpenAI route a 400 that also names the first invalid field as `param`."""
    assert isinstance(exc, RequestValidationError)
    fields = [error["loc"][1] for error in exc.errors() if len(error["loc"]) > 1 and error["type"] != "json_invalid"]
    param = fields[0] if fields and isinstance(fields[0], str) else None
    return _error_response(request, _validation_message(exc), validation_status(request), None, param)


async def _internal_error(request: Request, exc: Exception) -> Response:
    message = f"internal error ({type(exc).__name__}); the server logs say more"
    return _error_response(request, message, 500, None)


async def error_response(request: Request, exc: Exception) -> Response:
    """What the app's handlers answer for `exc`, for code that runs outside them: an ObertaError in the protocol's
    shape, anything else a JSON 500."""
    if isinstance(exc, ObertaError):
        return await _oberta_error(request, exc)
    return await _internal_error(request, exc)


def install_error_handlers(app: FastAPI) -> None:
    """Render domain, HTTP and validation errors in each protocol's shape, and unexpected exceptions as a JSON 500
    (logged by the server)."""
    app.add_exception_handler(ObertaError, _oberta_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _internal_error)
