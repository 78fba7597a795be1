"""The Kubernetes manifests validate against the Kubernetes schemas and hang together."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.support import DEPLOY

K8S = DEPLOY / "k8s"
KUSTOMIZATION = K8S / "kustomization.yaml"
# The oldest Kubernetes release supported upstream when this was written, and the newest schema available.
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())


def resource_files() -> list[Path]:
    return sorted(path for path in K8S.glob("*.yaml") if path != KUSTOMIZATION)


def resources() -> dict[str, dict[str, Any]]:
    """Every resource by kind (one of each kind here)."""
    found: dict[str, dict[str, Any]] = {}
    for path in resource_files():
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                assert document["kind"] not in found, f"two {document['kind']} resources"
                found[document["kind"]] = document
    return found


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", resource_files(), ids=lambda path: path.name)
def test_manifest_validates_against_the_kubernetes_schema(path: Path, version: str) -> None:
    """Strict: unknown or misspelt fields are errors, not silently dropped."""
    for document in yaml.safe_load_all(path.read_text()):
        if document:
            kubernetes_validate.validate(document, version, strict=True)


def test_the_schema_rejects_a_misspelt_field() -> None:
    deployment = resources()["Deployment"]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load(KUSTOMIZATION.read_text())
    assert sorted(kustomization["resources"]) == [path.name for path in resource_files()]


def test_kubectl_kustomize_renders() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (it is not a Debian or PyPI package); the manifests are checked above")
    result = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    kinds = {document["kind"] for document in yaml.safe_load_all(result.stdout) if document}
    assert kinds == set(resources())


def test_deployment_probes_resources_and_scrape_annotations() -> None:
    deployment = resources()["Deployment"]
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] in ports
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert int(annotations["prometheus.io/port"]) == ports["http"]
    env = {item["name"]: item for item in container["env"]}
    assert int(env["OBERTA_PORT"]["value"]) == ports["http"]
    assert env["OBERTA_MODELS_DIR"]["value"] == "/models"
    assert env["OBERTA_THREADS"]["valueFrom"]["resourceFieldRef"]["resource"] == "limits.cpu"
    security = pod["spec"]["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] != 0
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_service_hpa_and_budget_select_the_deployment() -> None:
    found = resources()
    deployment, service = found["Deployment"], found["Service"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    assert found["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == "http"
    target = found["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    hpa = found["HorizontalPodAutoscaler"]["spec"]
    assert 1 <= hpa["minReplicas"] <= hpa["maxReplicas"]
