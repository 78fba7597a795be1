"""Error bodies by protocol: v1 routes answer {"detail": ...} (FastAPI's shape), v2 routes {"error": ...}.

Domain errors (ObertaError) are mapped here once, with their status and headers; the one status that differs by
protocol is BadInput's: 422 on v1, 400 on v2. HTTPException remains for what the framework raises itself (unknown
routes, wrong methods) and for the body-size limit, which FastAPI's body reading only lets through as HTTPException.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from fastapi import FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from service.runtime.errors import BadInput, ObertaError

V2_BAD_INPUT_STATUS = 400


class Unauthorized(ObertaError):
    """The server has an API key and the request did not send it, or sent another."""

    status = 401


class UnsupportedMediaType(ObertaError):
    """A request body the server cannot read, such as a compressed one."""

    status = 415


def is_v2(request: Request) -> bool:
    """Whether the request is for the v2 protocol."""
    path = request.url.path
    return path == "/v2" or path.startswith("/v2/")


def error_status(request: Request, exc: ObertaError) -> int:
    """The HTTP status of `exc` in the protocol of `request`."""
    if is_v2(request) and isinstance(exc, BadInput):
        return V2_BAD_INPUT_STATUS
    return exc.status


def _error_response(request: Request, message: str, status: int, headers: Mapping[str, str] | None) -> Response:
    key = "error" if is_v2(request) else "detail"
    return JSONResponse({key: message}, status_code=status, headers=headers)


async def _oberta_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ObertaError)
    return _error_response(request, exc.message, error_status(request, exc), exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if is_v2(request):
        return _error_response(request, str(exc.detail), exc.status_code, exc.headers)
    return await http_exception_handler(request, exc)


def _json_safe(value: object) -> object:
    """`value` with what JSON in UTF-8 cannot carry made printable: non-finite floats as strings, lone surrogates
    (which JSON escapes such as \\ud800 produce) backslash-escaped."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, list):
        return [_json_safe(item) for item in value]
    if isinstance(value, dict):
        return {_json_safe(key): _json_safe(item) for key, item in value.items()}
    return value


async def _validation_error(request: Request, exc: Exception) -> Response:
    """FastAPI's 422, safe for the inputs it echoes: 1e400 or NaN (parsed to inf and nan) and lone surrogates."""
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": _json_safe(jsonable_encoder(exc.errors()))}, status_code=422)


async def _internal_error(request: Request, exc: Exception) -> Response:
    message = f"internal error ({type(exc).__name__}); the server logs say more"
    return _error_response(request, message, 500, None)


def install_error_handlers(app: FastAPI) -> None:
    """Render domain, HTTP and validation errors in each protocol's shape, and unexpected exceptions as a JSON 500
    (logged by the server)."""
    app.add_exception_handler(ObertaError, _oberta_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _internal_error)
