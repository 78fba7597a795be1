"""Running the app with uvicorn (`oberta serve`)."""

from __future__ import annotations

import os
from pathlib import Path

import uvicorn

from service.app import create_app
from service.config import Settings


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    config_path: str | Path | None = None,
    models_dir: str | Path | None = None,
) -> None:
    """Serve the models of `config_path`, or of every model directory under `models_dir`, until interrupted.

    Arguments left as None fall back to OBERTA_CONFIG and OBERTA_MODELS_DIR, then to ./models. Raises
    FileNotFoundError or ValueError on a bad configuration before the server starts.
    """
    os.environ.setdefault("NM_DISABLE_ANALYTICS", "1")
    settings = Settings.from_env(config=config_path, models_dir=models_dir)
    uvicorn.run(create_app(settings), host=host, port=port)
