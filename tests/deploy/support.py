"""Helpers of the deployment checks: paths, system tools, loopback HTTP, the live server's handle, the dashboard."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tests.serving import LOOPBACK

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "oberta.json"
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


@dataclass(frozen=True)
class LiveServer:
    """A running `oberta serve` with one tiny model."""

    url: str
    port: int
    model: str

    def predict(self, texts: list[str]) -> tuple[int, bytes]:
        return http("POST", f"{self.url}/v1/models/{self.model}/predict", {"inputs": texts})


def load_dashboard() -> dict[str, Any]:
    """The Grafana dashboard JSON."""
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard
