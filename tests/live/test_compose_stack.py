"""The compose stack for real: the project's image, 3 replicas behind nginx, Prometheus, on a local Docker engine.

Run by deploy/live/run.sh (its own CI stage), which installs Docker, builds the images and sets OBERTA_LIVE_DOCKER=1;
skipped otherwise. docker-compose.yml is used as users get it, through deploy/live/compose.live.yml (local images,
one model per replica, loopback ports, Grafana left out). Everything is checked over loopback: the API and
Prometheus through their published loopback ports, a replica's own endpoints from inside its container.
What it measures (start-up, failover counts) goes to $OBERTA_LIVE_RESULTS as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serving import LOOPBACK, free_port
from tests.waiting import wait_until

pytestmark = pytest.mark.skipif(
    os.environ.get("OBERTA_LIVE_DOCKER") != "1",
    reason="the live Docker stage: run deploy/live/run.sh (it builds the images and sets OBERTA_LIVE_DOCKER=1)",
)

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "oberta-live"
FILES = "docker-compose.yml:deploy/live/compose.live.yml"
REPLICAS = 3
MODEL = "sentiment"
PREDICT = f"/v1/models/{MODEL}/predict"
BODY = {"inputs": ["a gorgeous, witty, seductive movie.", "a dull, lifeless and tedious film."]}
RESULTS = Path(os.environ.get("OBERTA_LIVE_RESULTS", ROOT / "runs" / "live" / "results.json"))
# Bounds: the whole stack healthy (3 replicas loading one model each on 2 cores took ~45 s by hand), a replica back.
UP_TIMEOUT_S = 240
REPLICA_TIMEOUT_S = 180


def record(key: str, value: Any) -> None:
    """Add a measurement to the results file (read by deploy/run.sh and quoted in deploy/README.md)."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[key] = value
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"live: {key} = {json.dumps(value)}")


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120.0, check: bool = True) -> str:
    result = subprocess.run(
        list(args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result.stdout


@dataclass
class Stack:
    env: dict[str, str]
    api: str
    prometheus: str

    def compose(self, *args: str, timeout: float = 120.0) -> str:
        return run("docker", "compose", *args, env=self.env, timeout=timeout)

    def replicas(self) -> list[str]:
        """Container ids of the running server replicas, in replica-number order."""
        ids = self.compose("ps", "-q", "oberta").split()
        return sorted(ids, key=lambda cid: inspect(cid, "{{.Name}}"))

    def save_logs(self) -> None:
        """Every container's log, while the stack is up, to compose.log beside the results (CI keeps it)."""
        logs = run("docker", "compose", "logs", "--no-color", "--timestamps", env=self.env, check=False)
        if logs:
            (RESULTS.parent / "compose.log").write_text(logs)

    def up(self) -> float:
        """Bring the stack to REPLICAS healthy replicas, nginx and Prometheus; the seconds it took."""
        start = time.monotonic()
        self.compose("up", "-d", "--no-build", "--wait", "--wait-timeout", str(UP_TIMEOUT_S), timeout=UP_TIMEOUT_S + 30)
        return time.monotonic() - start


def inspect(container: str, template: str) -> str:
    return run("docker", "inspect", "-f", template, container).strip()


def health(container: str) -> str:
    return inspect(container, "{{if .State.Health}}{{.State.Health.Status}}{{end}}")


def in_container(container: str, method: str, path: str) -> tuple[int, dict[str, Any]]:
    """A request to the replica's own port over the container's loopback: (status, JSON body), (0, {}) if none."""
    probe = (
        "import json, sys, urllib.request, urllib.error\n"
        f"data = {json.dumps(json.dumps(BODY)) if method == 'POST' else None}\n"
        f"req = urllib.request.Request('http://127.0.0.1:8000{path}', data=data and data.encode(), method='{method}',"
        " headers={'Content-Type': 'application/json'})\n"
        "try:\n    r = urllib.request.urlopen(req, timeout=5); print(r.status, r.read().decode())\n"
        "except urllib.error.HTTPError as e:\n    print(e.code, e.read().decode())\n"
        "except OSError:\n    print(0, '{}')\n"
    )
    result = subprocess.run(
        ["docker", "exec", container, "python", "-c", probe], capture_output=True, text=True, timeout=30, check=False
    )
    if result.returncode != 0 or not result.stdout.strip():
        return 0, {}  # the container is not running (yet) or the process not answering
    status, _, body = result.stdout.strip().partition(" ")
    return int(status), json.loads(body or "{}")


def prometheus_query(stack: Stack, query: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{stack.prometheus}/api/v1/query", params={"query": query}, timeout=10)
    response.raise_for_status()
    result: list[dict[str, Any]] = response.json()["data"]["result"]
    return result


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    env = {
        **os.environ,
        "COMPOSE_PROJECT_NAME": PROJECT,
        "COMPOSE_FILE": FILES,
        "OBERTA_REPLICAS": str(REPLICAS),
        "OBERTA_LIVE_API_PORT": str(free_port()),
        "OBERTA_LIVE_PROMETHEUS_PORT": str(free_port()),
    }
    stack = Stack(
        env=env,
        api=f"http://{LOOPBACK}:{env['OBERTA_LIVE_API_PORT']}",
        prometheus=f"http://{LOOPBACK}:{env['OBERTA_LIVE_PROMETHEUS_PORT']}",
    )
    stack.compose("down", "-v", "--remove-orphans")  # leftovers of an interrupted run
    print("live: grafana is left out (profile 'grafana'): no Debian, PyPI or npm package to build a local image from")
    try:
        record("startup_s_3_replicas_healthy", round(stack.up(), 1))
        yield stack
    finally:
        stack.save_logs()
        stack.compose("down", "-v", "--remove-orphans")


def test_predictions_through_nginx_reach_every_replica_and_prometheus_scrapes_each(stack: Stack) -> None:
    sent = 90
    with httpx.Client(base_url=stack.api, timeout=30) as client:
        for _ in range(sent):
            response = client.post(PREDICT, json=BODY)
            assert response.status_code == 200, response.text
            assert [output["label"] for output in response.json()["outputs"]] == ["positive", "negative"]
        # Per-replica metrics are not exposed through the balancer.
        assert client.get("/metrics").status_code == 404
        assert client.get("/health/ready").status_code == 200

    addresses = {f"{inspect(cid, '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}')}:8000"
                 for cid in stack.replicas()}
    assert len(addresses) == REPLICAS

    def targets_up() -> bool:
        response = httpx.get(f"{stack.prometheus}/api/v1/targets", params={"state": "active"}, timeout=10)
        targets = [t for t in response.json()["data"]["activeTargets"] if t["labels"]["job"] == "oberta"]
        return {t["labels"]["instance"] for t in targets if t["health"] == "up"} == addresses

    # Service discovery and scrapes every 15 s (deploy/prometheus/prometheus.yml): within two rounds.
    wait_until(targets_up, "Prometheus to scrape every replica", timeout=60, interval=1)

    query = f'sum by (instance) (oberta_requests_total{{job="oberta",model="{MODEL}",status="200"}})'

    def every_request_counted() -> dict[str, float] | None:
        counts = {series["metric"]["instance"]: float(series["value"][1]) for series in prometheus_query(stack, query)}
        return counts if set(counts) == addresses and sum(counts.values()) == sent else None

    counts = wait_until(every_request_counted, f"Prometheus to count {sent} predictions over {REPLICAS} replicas",
                        timeout=60, interval=1, detail=lambda: prometheus_query(stack, query))
    assert all(count > 0 for count in counts.values()), counts
    record("predictions_per_replica", sorted(int(count) for count in counts.values()))


def test_readiness_is_honest_while_a_replica_loads(stack: Stack) -> None:
    """A restarted replica answers 503 "loading" to readiness and to predictions until its model is warm, and is not
    reported healthy before; then 200, and healthy."""
    replica = stack.replicas()[0]
    assert in_container(replica, "GET", "/health/ready")[0] == 200
    start = time.monotonic()
    run("docker", "restart", "-t", "30", replica, timeout=60)
    seen: Counter[str] = Counter()

    def ready() -> bool:
        status, body = in_container(replica, "GET", "/health/ready")
        if status == 503:
            assert body.get("status") == "loading", body
            assert health(replica) != "healthy"
            predict_status, _ = in_container(replica, "POST", PREDICT)
            seen[f"ready 503, predict {predict_status}"] += 1
            if predict_status == 200:  # the model finished loading between the two calls: readiness must say so now
                assert in_container(replica, "GET", "/health/ready")[0] == 200
            else:
                assert predict_status in (0, 503), predict_status  # 0: the process went away between the calls
        elif status == 0:
            seen["not listening"] += 1
        return status == 200

    wait_until(ready, "the restarted replica to be ready", timeout=REPLICA_TIMEOUT_S, interval=0.25)
    ready_s = time.monotonic() - start
    assert seen["ready 503, predict 503"] > 0, f"never saw the replica loading: {dict(seen)}"
    wait_until(lambda: health(replica) == "healthy", "Docker to report the replica healthy", timeout=60, interval=0.5)
    record("replica_restart", {"ready_s": round(ready_s, 1), "healthy_s": round(time.monotonic() - start, 1),
                               "polls": dict(seen)})


@dataclass
class Load:
    """A closed loop through nginx: `clients` threads, each sending its next prediction when the last one answered."""

    url: str
    clients: int = 4
    pause_s: float = 0.02  # between a client's answer and its next request: leaves the 2 cores to restarting replicas
    outcomes: list[tuple[float, str]] = field(default_factory=list)  # (time sent, "200" or what failed)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _client(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self._stop.is_set():
                sent = time.monotonic()
                try:
                    response = client.post(PREDICT, json=BODY)
                    ok = response.status_code == 200 and len(response.json()["outputs"]) == len(BODY["inputs"])
                    outcome = "200" if ok else f"{response.status_code} {response.text[:200]}"
                except httpx.HTTPError as error:
                    outcome = type(error).__name__
                self.outcomes.append((sent, outcome))
                self._stop.wait(self.pause_s)

    def __enter__(self) -> Load:
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(self.clients)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=40)

    def counts(self, since: float = 0.0, until: float = float("inf")) -> dict[str, Any]:
        outcomes = [outcome for sent, outcome in self.outcomes if since <= sent < until]
        failures = Counter(outcome for outcome in outcomes if outcome != "200")
        return {"sent": len(outcomes), "failed": sum(failures.values()), "failures": dict(failures)}

    def wait_for(self, requests: int, seconds: float = 0.0, timeout: float = 60) -> None:
        """Until `requests` more requests were sent and at least `seconds` passed."""
        target, until = len(self.outcomes) + requests, time.monotonic() + seconds
        wait_until(lambda: len(self.outcomes) >= target and time.monotonic() >= until,
                   f"{requests} more requests under load", timeout + seconds, 0.1)


def test_rolling_restart_as_the_readme_recommends_loses_nothing(stack: Stack) -> None:
    with Load(stack.api) as load:
        load.wait_for(50)
        start = time.monotonic()
        output = run("bash", "deploy/rolling-restart.sh", env=stack.env, timeout=REPLICAS * REPLICA_TIMEOUT_S + 60)
        seconds = time.monotonic() - start
        load.wait_for(50)
    lines = output.strip().splitlines()
    assert len(lines) == REPLICAS and all("healthy again" in line for line in lines), output
    results = {"seconds": round(seconds, 1), **load.counts(), "restarts": lines}
    record("rolling_restart", results)
    assert results["failed"] == 0, results
    assert all(health(replica) == "healthy" for replica in stack.replicas())


def test_failover_under_load_sigterm_then_sigkill_loses_nothing(stack: Stack) -> None:
    """Runs after the rolling restart: it leaves one replica of three (plus the killed one, if Docker restarted it)."""
    first, second, _ = stack.replicas()
    with Load(stack.api) as load:
        load.wait_for(50)
        t_term = time.monotonic()
        run("docker", "stop", "-t", "30", first, timeout=60)  # SIGTERM: drains, exits 0
        # Longer than nginx caches the replicas' addresses (resolver valid=5s in deploy/nginx/oberta.conf).
        load.wait_for(50, seconds=8)
        t_kill = time.monotonic()
        run("docker", "kill", "--signal", "KILL", second, timeout=60)
        # One replica of three left (`docker kill` counts as a manual stop: restart: unless-stopped leaves it down).
        load.wait_for(100, seconds=12)
        t_end = time.monotonic()
    assert inspect(first, "{{.State.ExitCode}}") == "0", "a SIGTERM'd replica should drain and exit 0"
    results = {
        "clients": load.clients,
        "before": load.counts(until=t_term),
        "sigterm": load.counts(since=t_term, until=t_kill),
        "sigkill": load.counts(since=t_kill, until=t_end),
        "total": load.counts(),
        "killed_replica_restarts_by_docker": int(inspect(second, "{{.RestartCount}}")),
    }
    record("failover", results)
    assert results["total"]["failed"] == 0, results


def test_down_removes_every_container_network_and_volume(stack: Stack) -> None:
    label = f"label=com.docker.compose.project={PROJECT}"
    assert run("docker", "volume", "ls", "-q", "--filter", label).split(), "the stack has a volume to remove"
    stack.save_logs()
    stack.compose("down", "-v", "--remove-orphans")
    leftovers = {
        kind: run("docker", *command, "-q", "--filter", label).split()
        for kind, command in {"containers": ["ps", "-a"], "networks": ["network", "ls"],
                              "volumes": ["volume", "ls"]}.items()
    }
    assert leftovers == {"containers": [], "networks": [], "volumes": []}
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{stack.api}/health/live", timeout=5)
