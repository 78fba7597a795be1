"""Shared fixtures of the deployment checks: paths, system tools, and a live `oberta serve` on loopback."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tests.servers import wait_for

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "oberta.json"
LOOPBACK = "127.0.0.1"
MODEL = "tiny"


@cache
def _run_ci_setup() -> str:
    """Run deploy/ci-setup.sh once per session (installs promtool, prometheus and nginx where root and apt allow)."""
    result = subprocess.run(
        ["bash", str(DEPLOY / "ci-setup.sh")], capture_output=True, text=True, timeout=600, check=False
    )
    return (result.stdout + result.stderr).strip()


def require_tool(name: str) -> str:
    """The path of a system tool that deploy/ci-setup.sh installs; installs it first when missing, else skips."""
    path = shutil.which(name)
    if path is None:
        log = _run_ci_setup()
        path = shutil.which(name)
        if path is None:
            pytest.skip(f"{name} is not installed and deploy/ci-setup.sh could not install it: {log}")
    return path


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def http(method: str, url: str, body: Any = None, timeout: float = 10.0) -> tuple[int, bytes]:
    """One HTTP request (loopback only): the status and body, error statuses included."""
    assert url.startswith(f"http://{LOOPBACK}:"), url
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited after `timeout` seconds."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)


@dataclass(frozen=True)
class LiveServer:
    """A running `oberta serve` with one tiny model."""

    url: str
    port: int
    model: str

    def predict(self, texts: list[str]) -> tuple[int, bytes]:
        return http("POST", f"{self.url}/v1/models/{self.model}/predict", {"inputs": texts})


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The real server (`python -m oberta.cli serve`, as in the image) on loopback, serving a tiny random BERT."""
    from tests.tiny_models import make_tiny_model_dir

    models_dir = tmp_path_factory.mktemp("models")
    make_tiny_model_dir(models_dir, arch="bert", name=MODEL)
    port = free_port()
    env = {
        **os.environ,
        "NM_DISABLE_ANALYTICS": "1",
        "OMP_NUM_THREADS": "1",
        "OBERTA_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("OBERTA_CONFIG", None)
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    command = [sys.executable, "-m", "oberta.cli", "serve", "--host", LOOPBACK, "--port", str(port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*command, "--models-dir", str(models_dir)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    url = f"http://{LOOPBACK}:{port}"
    try:
        try:
            wait_for(f"{url}/health/ready", timeout=90.0, process=process)
        except (RuntimeError, TimeoutError) as error:
            raise RuntimeError(f"{error}\n--- server log ---\n{log_path.read_text()[-4000:]}") from error
        yield LiveServer(url=url, port=port, model=MODEL)
    finally:
        stop_process(process)


@pytest.fixture(scope="session")
def exported_samples(live_server: LiveServer) -> set[str]:
    """Every sample name (with _bucket, _sum, _count, _total suffixes) the live server's /metrics exposes."""
    from prometheus_client.parser import text_string_to_metric_families

    status, _ = live_server.predict(["a good movie", "a dull film"])
    assert status == 200
    status, body = http("GET", f"{live_server.url}/metrics")
    assert status == 200
    return {sample.name for family in text_string_to_metric_families(body.decode()) for sample in family.samples}


def load_dashboard() -> dict[str, Any]:
    """The Grafana dashboard JSON."""
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard
