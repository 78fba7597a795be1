"""Graceful shutdown: on SIGTERM readiness turns false, new requests get 503, requests in flight finish, exit 0."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.serving import free_port, wait_for_url
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
ENGINE_SECONDS = 2.0  # every engine call of the served model takes this long
SHUTDOWN_DELAY = 1.5  # room for the checks made while the server drains

SCRIPT = textwrap.dedent(
    """
    import logging, sys, time
    from service.api.app import create_app
    from service.runtime.config import Settings
    from service.runtime.engines import load_engine
    from service.api.server import run_app

    class SlowEngine:
        def __init__(self, inner):
            self.inner, self.name = inner, inner.name

        @property
        def input_names(self):
            return self.inner.input_names

        def run(self, inputs):
            time.sleep(float(sys.argv[3]))
            return self.inner.run(inputs)

        def info(self):
            return self.inner.info()

    logging.basicConfig(level=logging.INFO)  # as `oberta serve` does
    settings = Settings(config=sys.argv[1], threads=1, shutdown_delay_s=float(sys.argv[4]))
    app = create_app(settings, engine_factory=lambda *args: SlowEngine(load_engine(*args)))
    run_app(app, "127.0.0.1", int(sys.argv[2]))
    """
)


def _sample(url: str, name: str) -> float:
    """The value of the served model's sample `name` on the server's /metrics (0 when absent)."""
    families = text_string_to_metric_families(httpx.get(f"{url}/metrics").text)
    values = [s.value for f in families for s in f.samples if s.name == name and s.labels.get("model") == "tiny"]
    return values[0] if values else 0.0


def _not_ready(url: str) -> httpx.Response | None:
    response = httpx.get(f"{url}/health/ready")
    return response if response.status_code != 200 else None


def test_sigterm_drains_in_flight_requests_and_exits_0(bert_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "serve.yaml"
    endpoint = {"model_dir": str(bert_dir), "engine": "onnxruntime", "max_wait_ms": 0}
    config.write_text(yaml.safe_dump({"endpoints": [endpoint]}))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(REPO), "NM_DISABLE_ANALYTICS": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-c", SCRIPT, str(config), str(port), str(ENGINE_SECONDS), str(SHUTDOWN_DELAY)]
    server = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    in_flight: list[httpx.Response] = []
    try:
        wait_for_url(f"{url}/health/ready", 60, server)

        def send(path: str, body: dict[str, object]) -> None:
            in_flight.append(httpx.post(f"{url}{path}", json=body, timeout=30))

        v2_body = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["in flight"]}]}
        senders = [
            threading.Thread(target=send, args=("/v1/models/tiny/predict", {"inputs": ["in flight"]})),
            threading.Thread(target=send, args=("/v2/models/tiny/infer", v2_body)),
        ]
        senders[0].start()
        wait_until(lambda: _sample(url, "oberta_batch_size_count") == 1, "the v1 request to enter the engine")
        senders[1].start()
        wait_until(lambda: _sample(url, "oberta_queue_depth") == 1, "the v2 request to queue behind it")
        server.send_signal(signal.SIGTERM)
        ready = wait_until(lambda: _not_ready(url), "readiness to turn false after SIGTERM")
        refused = httpx.post(f"{url}/v1/models/tiny/predict", json={"inputs": ["too late"]})
        v2_ready = httpx.get(f"{url}/v2/health/ready")
        for sender in senders:
            sender.join(timeout=30)
        output = server.communicate(timeout=30)[0].decode()
    finally:
        if server.poll() is None:
            server.kill()
    assert (ready.status_code, ready.json()["status"]) == (503, "draining")
    assert (refused.status_code, refused.json()["detail"]) == (503, "the server is shutting down")
    assert (refused.headers["retry-after"], refused.headers["connection"]) == ("1", "close")
    assert (v2_ready.status_code, v2_ready.json()) == (503, {"ready": False})
    assert [response.status_code for response in in_flight] == [200, 200], [r.text for r in in_flight]
    assert server.returncode == 0, output
    assert "SIGTERM: draining" in output
    assert "Application shutdown complete" in output
