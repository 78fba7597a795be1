"""Running the app with uvicorn (`oberta serve`), with a graceful shutdown that exits 0.

On SIGTERM (or SIGINT) the server drains: readiness turns false and new inference requests get 503 at once; after
`shutdown_delay_s` the listening socket closes, requests in flight finish (for at most `shutdown_timeout_s`), the
models stop, and `serve` returns normally. A second signal cuts the wait short.
"""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path
from types import FrameType

import uvicorn
from fastapi import FastAPI

from service.api.app import create_app
from service.runtime.config import load_settings
from service.runtime.state import ServiceState

logger = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    """A uvicorn server that drains the service on the first signal and does not re-raise it afterwards."""

    def __init__(self, config: uvicorn.Config, state: ServiceState) -> None:
        super().__init__(config)
        self._state = state
        self._exit_at: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """First signal: drain, and exit after the shutdown delay; a later one: exit without waiting."""
        if self._exit_at is not None:
            self.should_exit = self.force_exit = True
            return
        delay = self._state.settings.shutdown_delay_s
        logger.info("%s: draining; closing in %.1f s once requests in flight finish", signal.Signals(sig).name, delay)
        self._state.drain()
        self._exit_at = time.monotonic() + delay

    async def on_tick(self, counter: int) -> bool:
        """uvicorn's tick, which also ends the main loop once the shutdown delay has passed."""
        if self._exit_at is not None and time.monotonic() >= self._exit_at:
            self.should_exit = True
        return await super().on_tick(counter)


def run_app(app: FastAPI, host: str, port: int) -> None:
    """Serve `app` (made by create_app) until a signal drains it."""
    state: ServiceState = app.state.service
    settings = state.settings
    config = uvicorn.Config(app, host=host, port=port, timeout_graceful_shutdown=settings.shutdown_timeout_s,
                            access_log=settings.access_log)
    DrainingServer(config, state).run()


def serve(
    host: str | None = None,
    port: int | None = None,
    config_path: str | Path | None = None,
    models_dir: str | Path | None = None,
) -> None:
    """Serve the models of `config_path`, or of every model directory under `models_dir`, until signalled.

    Arguments left as None fall back to the settings from the environment (OBERTA_HOST, OBERTA_PORT, OBERTA_CONFIG,
    OBERTA_MODELS_DIR), then to their defaults (127.0.0.1, 8000, discovery under ./models). Raises an ObertaError
    (ConfigError, MissingFile, MissingPackage) on a bad configuration or a missing model file before the server starts.
    """
    settings = load_settings(host=host, port=port, config=config_path, models_dir=models_dir)
    run_app(create_app(settings), settings.host, settings.port)
