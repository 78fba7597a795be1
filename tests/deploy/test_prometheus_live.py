"""A real Prometheus (the Debian package) on loopback scrapes a live server; latency quantiles come back over its API.

Prometheus runs the shipped scrape job (deploy/prometheus/prometheus.yml) with the DNS discovery of the compose
service swapped for the live server's loopback address and a 1 s interval.
"""

from __future__ import annotations

import json
import math
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.promql import panel_queries, substitute
from tests.deploy.support import DEPLOY, LiveServer, http, load_dashboard, require_tool
from tests.serving import LOOPBACK, free_port, stop_process, wait_for_url
from tests.waiting import wait_until

STAGES = ("tokenize", "queue", "engine", "postprocess")
SCRAPE_INTERVAL = "1s"


@dataclass(frozen=True)
class Prometheus:
    url: str

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector; fails on a query error."""
        status, body = http("GET", f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        answer = json.loads(body)
        assert status == 200 and answer["status"] == "success", (expr, answer)
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def oberta_targets(self) -> list[dict[str, Any]]:
        status, body = http("GET", f"{self.url}/api/v1/targets")
        assert status == 200
        targets: list[dict[str, Any]] = json.loads(body)["data"]["activeTargets"]
        return [target for target in targets if target["labels"]["job"] == "oberta"]


def scrape_config(tmp_path: Path, server_port: int) -> Path:
    """The shipped config, its oberta job pointed at the live server, scraped every second."""
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    config["global"].update(scrape_interval=SCRAPE_INTERVAL, scrape_timeout=SCRAPE_INTERVAL, evaluation_interval="1s")
    config["scrape_configs"] = [job for job in config["scrape_configs"] if job["job_name"] == "oberta"]
    (job,) = config["scrape_configs"]
    discovery = job.pop("dns_sd_configs")[0]
    job["static_configs"] = [{"targets": [f"{LOOPBACK}:{server_port}"]}]
    assert discovery["port"] == 8000  # the container port; here the live server's loopback port stands in
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    check = subprocess.run(
        [require_tool("promtool"), "check", "config", str(path)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    return path


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory, live_server: LiveServer) -> Iterator[Prometheus]:
    binary = require_tool("prometheus")
    tmp_path = tmp_path_factory.mktemp("prometheus")
    port = free_port()
    log_path = tmp_path / "prometheus.log"
    command = [
        binary,
        f"--config.file={scrape_config(tmp_path, live_server.port)}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address={LOOPBACK}:{port}",
        "--log.level=warn",
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log)
    url = f"http://{LOOPBACK}:{port}"
    try:
        try:
            wait_for_url(f"{url}/-/ready", timeout=30.0, process=process)
        except (RuntimeError, TimeoutError) as error:
            raise RuntimeError(f"{error}\n--- prometheus log ---\n{log_path.read_text()[-4000:]}") from error
        yield Prometheus(url)
    finally:
        stop_process(process)


def test_latency_quantile_through_prometheus(prometheus: Prometheus, live_server: LiveServer) -> None:
    # The live server is a target and up.
    wait_until(lambda: any(t["health"] == "up" for t in prometheus.oberta_targets()), "the oberta target to be up",
               interval=0.5)
    # Traffic over a few scrapes (bounded: 16 requests, 0.2 s apart), one bad request among them.
    for index in range(16):
        status, _ = live_server.predict([f"a good movie {index}", "the plot was dull"])
        assert status == 200
        if index == 8:
            assert live_server.predict([])[0] == 422
        time.sleep(0.2)

    model = live_server.model
    by_stage = (
        "histogram_quantile(0.95, sum by (le, stage) "
        f'(rate(oberta_stage_duration_seconds_bucket{{model="{model}"}}[30s])))'
    )

    def stage_quantiles() -> dict[str, float]:
        values = {row["metric"]["stage"]: float(row["value"][1]) for row in prometheus.query(by_stage)}
        return values if set(values) == set(STAGES) and all(math.isfinite(v) for v in values.values()) else {}

    quantiles = wait_until(stage_quantiles, "p95 of every stage", interval=0.5)
    for stage, seconds in quantiles.items():
        assert 0 < seconds < 10, (stage, seconds)

    end_to_end = (
        f'histogram_quantile(0.99, sum by (le) (rate(oberta_request_duration_seconds_bucket{{model="{model}"}}[30s])))'
    )
    (row,) = prometheus.query(end_to_end)
    assert 0 < float(row["value"][1]) < 10
    errors = prometheus.query(f'sum by (status) (oberta_requests_total{{model="{model}", status!~"2.."}})')
    assert {row["metric"]["status"]: float(row["value"][1]) for row in errors}.get("422", 0) >= 1


def test_every_dashboard_query_evaluates(prometheus: Prometheus, live_server: LiveServer) -> None:
    """Each panel query runs without error on the real Prometheus; the core ones return series."""
    wait_until(lambda: prometheus.query("oberta_model_ready"), "a scrape of the live server", interval=0.5)
    assert live_server.predict(["a good movie"])[0] == 200
    empty = []
    for title, expr in panel_queries(load_dashboard()):
        if not prometheus.query(substitute(expr)):
            empty.append(title)
    # Rates need two scrapes after traffic; the gauges and readiness must answer at once.
    for title in ("Ready replicas per model", "Queue depth per model", "In-flight requests per model"):
        assert title not in empty, f"{title} returned no series"
