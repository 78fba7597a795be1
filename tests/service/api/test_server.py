"""The server process: `serve` runs uvicorn, and serving never imports torch or transformers."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from service.runtime.engines.deepsparse_engine import deepsparse_support
from tests.serving import free_port, wait_for_url

REPO = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "NM_DISABLE_ANALYTICS": "1", "OMP_NUM_THREADS": "1"}


def test_serving_imports_neither_torch_nor_transformers(bert_dir: Path) -> None:
    script = textwrap.dedent(
        """
        import sys
        from fastapi.testclient import TestClient
        from service.api.app import create_app
        from service.runtime.config import Settings
        from tests.serving import wait_ready

        with TestClient(create_app(Settings(models_dir=sys.argv[1], threads=1))) as client:
            wait_ready(client, timeout=60)
            assert client.post("/v1/models/tiny/predict", json={"inputs": ["good"]}).status_code == 200
            print(client.get("/v1/models").json()["models"][0]["engine"])
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers")))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(bert_dir.parent)], env=_env(), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    engine, leaked = result.stdout.strip().splitlines()[-2:]
    assert engine in ({"deepsparse", "onnxruntime"} if deepsparse_support()[0] else {"onnxruntime"})  # auto
    assert leaked == "[]"


@pytest.mark.parametrize("access_log", [False, True])
def test_serve_runs_uvicorn_until_terminated(bert_dir: Path, access_log: bool) -> None:
    port = free_port()
    script = f"from service.api.server import serve; serve('127.0.0.1', {port}, None, {str(bert_dir.parent)!r})"
    env = {**_env(), "OBERTA_ACCESS_LOG": str(access_log).lower()}
    server = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for_url(f"http://127.0.0.1:{port}/health/ready", 60, server)
        response = httpx.post(f"http://127.0.0.1:{port}/v1/models/tiny/predict", json={"inputs": ["good", "bad"]})
        assert response.status_code == 200
        assert len(response.json()["outputs"]) == 2
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0].decode()
    assert server.returncode == 0, output
    assert "Application shutdown complete" in output
    assert ('"POST /v1/models/tiny/predict HTTP/1.1" 200' in output) == access_log, output
