"""Shared fixtures of the deployment checks: a live `oberta serve` on loopback and the metrics it exports."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.deploy.support import MODEL, ROOT, LiveServer, http
from tests.serving import LOOPBACK, free_port, stop_process, wait_for_url


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
            wait_for_url(f"{url}/health/ready", timeout=90.0, process=process)
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
