"""Error bodies by protocol: v1 routes answer {"detail": ...} (FastAPI's shape), v2 routes {"error": ...}."""

from __future__ import annotations

import math

from fastapi import FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException


def is_v2(request: Request) -> bool:
    """Whether the request is for the v2 protocol."""
    path = request.url.path
    return path == "/v2" or path.startswith("/v2/")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if is_v2(request):
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)
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
    return JSONResponse({"error" if is_v2(request) else "detail": message}, status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    """Render HTTP and validation errors in each protocol's shape, and unexpected exceptions as a JSON 500 (logged by
    the server)."""
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _internal_error)
