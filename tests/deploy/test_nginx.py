"""The load balancer config: nginx accepts it, and proxies predictions to a live server while hiding /metrics."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.support import DEPLOY, LiveServer, http, require_tool
from tests.serving import LOOPBACK, free_port, stop_process, wait_for_url

NGINX_CONF = DEPLOY / "nginx" / "oberta.conf"


def main_config(tmp_path: Path, server_conf: Path) -> Path:
    """A main nginx.conf around the server block, as the nginx image has, with every path under tmp_path."""
    config = tmp_path / "nginx.conf"
    config.write_text(
        f"""
daemon off;
master_process off;
pid {tmp_path}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp_path}/body;
    proxy_temp_path {tmp_path}/proxy;
    fastcgi_temp_path {tmp_path}/fastcgi;
    uwsgi_temp_path {tmp_path}/uwsgi;
    scgi_temp_path {tmp_path}/scgi;
    include {server_conf};
}}
"""
    )
    return config


def test_nginx_accepts_the_config(tmp_path: Path) -> None:
    nginx = require_tool("nginx")
    config = main_config(tmp_path, NGINX_CONF)
    result = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(config)], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr


@pytest.fixture
def balancer(tmp_path: Path, live_server: LiveServer) -> Iterator[str]:
    """nginx with the shipped server block on loopback, the replicas' DNS name swapped for the live server."""
    nginx = require_tool("nginx")
    port = free_port()
    text = NGINX_CONF.read_text()
    replacements = {
        "listen 8080;": f"listen {LOOPBACK}:{port};",
        "set $oberta_upstream http://oberta:8000;": f"set $oberta_upstream http://{LOOPBACK}:{live_server.port};",
    }
    for old, new in replacements.items():
        assert text.count(old) == 1, f"{old!r} not found once in {NGINX_CONF}"
        text = text.replace(old, new)
    server_conf = tmp_path / "oberta.conf"
    server_conf.write_text(text)
    log_path = tmp_path / "nginx.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [nginx, "-p", str(tmp_path), "-c", str(main_config(tmp_path, server_conf))], stdout=log, stderr=log
        )
    url = f"http://{LOOPBACK}:{port}"
    try:
        try:
            wait_for_url(f"{url}/health/live", timeout=15.0, process=process)
        except (RuntimeError, TimeoutError) as error:
            raise RuntimeError(f"{error}\n--- nginx log ---\n{log_path.read_text()}") from error
        yield url
    finally:
        stop_process(process)


def test_nginx_proxies_predictions_and_hides_metrics(balancer: str, live_server: LiveServer) -> None:
    status, body = http("POST", f"{balancer}/v1/models/{live_server.model}/predict", {"inputs": ["a good movie"]})
    assert status == 200, body
    assert b'"outputs"' in body
    assert http("GET", f"{balancer}/health/ready")[0] == 200
    assert http("GET", f"{balancer}/metrics")[0] == 404
    assert http("GET", f"{live_server.url}/metrics")[0] == 200
