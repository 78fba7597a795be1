"""Serving in tests: a free port, an app over test endpoints, and servers in-process or as processes.

Every wait here is bounded (tests/waiting.py): it returns once its condition holds or raises TimeoutError.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.runtime.config import Settings
from service.runtime.engines import EngineFactory, load_engine
from tests.waiting import wait_until, wait_until_async

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def write_config(path: Path, endpoints: list[dict[str, Any]]) -> Path:
    """A YAML config file listing `endpoints`."""
    path.write_text(yaml.safe_dump({"endpoints": endpoints}))
    return path


def make_app(
    tmp_path: Path, endpoints: list[dict[str, Any]], factory: EngineFactory = load_engine, **settings: Any
) -> FastAPI:
    """An app over a config file written to tmp_path, loading engines with `factory`; keywords are Settings fields."""
    config = write_config(tmp_path / "serve.yaml", endpoints)
    return create_app(Settings(config=config, threads=1, **settings), engine_factory=factory)


def wait_ready(client: TestClient, timeout: float = 30.0) -> None:
    """Wait until /health/ready answers 200 (every model loaded and warmed up)."""
    wait_until(lambda: client.get("/health/ready").status_code == 200, "every model to be ready", timeout,
               detail=lambda: client.get("/health/ready").json())


def wait_loaded(client: TestClient, timeout: float = 30.0) -> None:
    """Wait until no model is loading any more: each is ready or failed."""
    wait_until(lambda: "loading" not in client.get("/health/ready").json()["models"].values(),
               "every model to finish loading", timeout, detail=lambda: client.get("/health/ready").json())


@contextlib.asynccontextmanager
async def serving(app: FastAPI, timeout: float = 30.0) -> AsyncIterator[httpx.AsyncClient]:
    """The app's lifespan with every model ready, and a client calling it in-process (in this event loop)."""
    async with app.router.lifespan_context(app):
        await wait_until_async(lambda: app.state.service.ready, "every model to be ready", timeout)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            yield client


@contextlib.contextmanager
def live_server(app: FastAPI, timeout: float = 30.0) -> Iterator[str]:
    """Serve `app` with uvicorn on a free loopback port in a thread; yields its base URL once every model is ready."""
    server = uvicorn.Server(uvicorn.Config(app, host=LOOPBACK, port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, name="oberta-test-server", daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started or not thread.is_alive(), "the test server to start", timeout)
        assert thread.is_alive(), "the test server stopped while starting"
        url = f"http://{LOOPBACK}:{server.servers[0].sockets[0].getsockname()[1]}"
        wait_until(lambda: httpx.get(f"{url}/health/ready").status_code == 200, "every model to be ready", timeout,
                   detail=lambda: httpx.get(f"{url}/health/ready").json())
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=timeout)


def _answers_200(url: str) -> tuple[bool, object]:
    try:
        response = httpx.get(url, timeout=2.0)
    except httpx.HTTPError as error:
        return False, error
    return response.status_code == 200, (response.status_code, response.text[:200])


def wait_for_url(url: str, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until `url` (loopback only) answers 200; fail early, with its output when piped, if `process` exits."""
    assert url.startswith(f"http://{LOOPBACK}:"), url
    last: list[object] = [None]

    def answered() -> bool:
        if process is not None and process.poll() is not None:
            output = process.communicate()[0] if process.stdout is not None else b""
            raise RuntimeError(f"process exited with {process.returncode} before {url} answered:\n"
                               f"{(output or b'').decode(errors='replace')}")
        ok, last[0] = _answers_200(url)
        return ok

    wait_until(answered, f"{url} to answer 200", timeout, interval=0.1, detail=lambda: last[0])


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited after `timeout` seconds."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)

