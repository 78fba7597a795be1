"""promtool accepts the Prometheus configuration."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.deploy.support import DEPLOY, require_tool

PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("promtool"), *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


def test_promtool_check_config_passes() -> None:
    result = promtool("check", "config", PROMETHEUS_CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_promtool_rejects_a_broken_config(tmp_path: Path) -> None:
    """The check has teeth: a scrape timeout longer than the interval is refused."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    config["scrape_configs"][0]["scrape_interval"] = "5s"
    config["scrape_configs"][0]["scrape_timeout"] = "10s"
    broken = tmp_path / "prometheus.yml"
    broken.write_text(yaml.safe_dump(config))
    assert promtool("check", "config", broken).returncode != 0
