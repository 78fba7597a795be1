"""Optional API-key auth: `Authorization: Bearer <key>` when the server has an api_key.

Inference and model routes always need the key when one is set; health routes and /metrics only when the
auth_health and auth_metrics settings say so. OpenAPI docs stay open.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.api.errors import Unauthorized
from service.runtime.config import Settings

_bearer = HTTPBearer(auto_error=False, description="the server's API key (OBERTA_API_KEY)")


def _check(settings: Settings, credentials: HTTPAuthorizationCredentials | None) -> None:
    if settings.api_key is None:
        return
    expected = settings.api_key.get_secret_value().encode()
    if credentials is None or not secrets.compare_digest(credentials.credentials.encode(), expected):
        reason = "missing" if credentials is None else "invalid"
        message = f"{reason} API key: send Authorization: Bearer <key>"
        raise Unauthorized(message, headers={"WWW-Authenticate": "Bearer"})


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.service.settings
    return settings


async def require_key(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]
) -> None:
    """Dependency of model routes (async: FastAPI would run a plain function in a worker thread)."""
    _check(_settings(request), credentials)


async def check_key(request: Request) -> None:
    """The key check of inference routes, called by their route class: as a dependency, FastAPI's dependency
    resolution took a tenth of the event loop's time per short request."""
    settings = _settings(request)
    if settings.api_key is not None:
        _check(settings, await _bearer(request))


# The OpenAPI security requirement of routes that check the key themselves.
BEARER_SECURITY: list[dict[str, list[str]]] = [{_bearer.scheme_name: []}]


async def require_health_key(request: Request) -> None:
    """Dependency of health routes: checks the key only under auth_health (not marked as secured in OpenAPI)."""
    settings = _settings(request)
    if settings.auth_health:
        _check(settings, await _bearer(request))


async def require_metrics_key(request: Request) -> None:
    """Dependency of /metrics: checks the key only under auth_metrics (not marked as secured in OpenAPI)."""
    settings = _settings(request)
    if settings.auth_metrics:
        _check(settings, await _bearer(request))
