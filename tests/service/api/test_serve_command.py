"""`oberta serve` refuses a user's mistake with one line on stderr and exit status 2, never a traceback."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from oberta.cli import main
from tests.serving import write_config


def _refusal(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err, captured.err
    return captured.err.strip()


def test_a_missing_models_directory(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent"
    assert _refusal(capsys, ["serve", "--models-dir", str(missing)]) == (
        f"oberta serve: error: models directory {missing} not found; pass --models-dir or --config"
    )


def test_a_bad_config_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = write_config(tmp_path / "serve.yaml", [{"model_dir": "m", "max_batch_size": 0}])
    message = _refusal(capsys, ["serve", "--config", str(config)])
    assert message.startswith(f"oberta serve: error: config file {config}: endpoints.0.max_batch_size: ")


def test_an_invalid_setting_from_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OBERTA_OVERLOAD_STATUS", "500")
    message = _refusal(capsys, ["serve"])
    assert message.startswith("oberta serve: error: invalid settings")
    assert "overload_status must be 429 or 503" in message


def test_an_engine_whose_package_is_not_installed(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, bert_dir: Path, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "deepsparse", None)  # as if not installed
    config = write_config(tmp_path / "serve.yaml", [{"model_dir": str(bert_dir), "engine": "deepsparse"}])
    assert _refusal(capsys, ["serve", "--config", str(config)]) == (
        "oberta serve: error: engine deepsparse needs the deepsparse package: pip install 'oberta[deepsparse]'"
    )
