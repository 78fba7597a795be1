"""docker-compose.yml validates against the Compose Specification schema and wires the stack together."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy.support import ROOT

COMPOSE = ROOT / "docker-compose.yml"
_VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?::?-(?P<default>[^}]*))?\}")


def compose_schema() -> dict[str, Any]:
    """The Compose Specification schema vendored by check-jsonschema (no network at test time)."""
    schema_file = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema: dict[str, Any] = json.loads(schema_file.read_text(encoding="utf-8"))
    return schema


def interpolate(text: str, environ: dict[str, str]) -> str:
    """Compose's ${VAR} and ${VAR:-default} interpolation, as `docker compose config` does before validating."""
    return _VARIABLE.sub(lambda m: environ.get(m.group("name")) or (m.group("default") or ""), text)


def load_compose(environ: dict[str, str] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(interpolate(COMPOSE.read_text(), environ or {}))
    return data


@pytest.mark.parametrize(
    "environ",
    [{}, {"OBERTA_REPLICAS": "3", "OBERTA_THREADS": "2", "OBERTA_MODELS": "/srv/models", "OBERTA_PUBLISH": "80"}],
    ids=["defaults", "scaled"],
)
def test_compose_file_validates_against_the_compose_spec(environ: dict[str, str]) -> None:
    schema = compose_schema()
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(load_compose(environ)), key=lambda error: list(error.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)


def test_compose_file_raw_validates_too() -> None:
    """Before interpolation as well (what editors and check-jsonschema see)."""
    jsonschema.validate(yaml.safe_load(COMPOSE.read_text()), compose_schema(), cls=jsonschema.Draft202012Validator)


def test_services_and_scale_out() -> None:
    services = load_compose()["services"]
    assert set(services) == {"oberta", "lb", "prometheus", "grafana"}
    server = services["oberta"]
    # Replicas must not publish host ports (they would collide); the load balancer publishes the API.
    assert "ports" not in server
    assert server["deploy"]["replicas"] == 1
    assert load_compose({"OBERTA_REPLICAS": "4"})["services"]["oberta"]["deploy"]["replicas"] == 4
    assert services["lb"]["depends_on"]["oberta"]["condition"] == "service_healthy"
    assert services["lb"]["ports"] == ["8000:8080"]
    # Observability UIs listen on loopback only.
    for name in ("prometheus", "grafana"):
        assert all(port.startswith("127.0.0.1:") for port in services[name]["ports"]), name


def test_server_is_configured_by_environment_with_models_read_only() -> None:
    server = load_compose()["services"]["oberta"]
    environment = server["environment"]
    assert environment["OBERTA_HOST"] == "0.0.0.0"
    assert environment["OBERTA_PORT"] == "8000"
    assert environment["OBERTA_MODELS_DIR"] == "/models"
    # Unset unless the shell sets them: an empty OBERTA_THREADS would not parse as a number.
    assert environment["OBERTA_THREADS"] is None
    (models,) = [volume for volume in server["volumes"] if volume["target"] == "/models"]
    assert models["read_only"] is True


def test_bind_mounted_config_files_exist() -> None:
    for name, service in load_compose()["services"].items():
        for volume in service.get("volumes", []):
            if isinstance(volume, str) and volume.startswith("./"):
                source = volume.split(":")[0]
                assert (ROOT / source).exists(), f"{name}: {source} is mounted but missing"
                assert volume.endswith(":ro"), f"{name}: mount {volume} should be read-only"


def test_prometheus_scrapes_the_service_the_compose_file_names() -> None:
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "oberta"]
    assert job["metrics_path"] == "/metrics"
    (discovery,) = job["dns_sd_configs"]
    assert discovery["names"] == ["oberta"] and discovery["type"] == "A"
    assert str(discovery["port"]) == load_compose()["services"]["oberta"]["environment"]["OBERTA_PORT"]


def test_grafana_provisioning_points_at_prometheus_and_the_dashboards() -> None:
    grafana = load_compose()["services"]["grafana"]
    mounts = dict(volume.split(":")[:2] for volume in grafana["volumes"] if volume.startswith("./"))
    provisioning = ROOT / "deploy/grafana/provisioning"
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    datasources = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())["datasources"]
    assert datasources[0]["type"] == "prometheus" and datasources[0]["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((provisioning / "dashboards/oberta.yml").read_text())["providers"]
    dashboards_path = providers[0]["options"]["path"]
    assert mounts["./deploy/grafana/dashboards"] == dashboards_path
    assert Path(ROOT / "deploy/grafana/dashboards/oberta.json").is_file()
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{dashboards_path}/oberta.json"


def test_interpolation_uses_the_environment_over_defaults() -> None:
    assert interpolate("${A:-1} ${B:-2} ${C}", {"A": "9"}) == "9 2 "


def test_the_schema_rejects_a_broken_compose_file() -> None:
    """The check has teeth: a misspelt key and a wrong type are errors."""
    broken = load_compose()
    broken["services"]["oberta"]["deploy"]["replica"] = 2
    broken["services"]["lb"]["ports"] = "8000:8080"
    validator = jsonschema.Draft202012Validator(compose_schema())
    assert len(list(validator.iter_errors(broken))) >= 2
