"""bf16 training runs in fp32 on a machine that would only emulate bfloat16, and says so."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from compression.precision import runnable_precision
from compression.recipe import load_recipe
from compression.stages.config import CompressConfig, plan
from compression.tasks import DataConfig
from oberta.cli import main
from tests.tiny_models import tiny_classifier, tiny_tokenizer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _without_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("compression.precision.native_bf16", lambda: False)


def test_bf16_stays_where_native_and_falls_back_to_fp32_with_a_warning_elsewhere(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("compression.precision.native_bf16", lambda: True)
    assert runnable_precision("bf16") == "bf16"
    _without_bf16(monkeypatch)
    assert runnable_precision("fp32") == "fp32" and not caplog.records
    with caplog.at_level(logging.WARNING, logger="compression.precision"):
        assert runnable_precision("bf16") == "fp32"
    assert "no bfloat16 arithmetic" in caplog.text


def test_a_bf16_recipe_plans_fp32_training_without_calling_it_a_command_line_override(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _without_bf16(monkeypatch)
    recipe = load_recipe("obert-cpu-squad-small")
    assert recipe.training.precision == "bf16"
    config = CompressConfig(recipe=recipe, recipe_source="obert-cpu-squad-small", model="m",
                            data=DataConfig(train_file="unused"), output_dir=str(tmp_path), name="qa")
    settings = plan(config)
    assert settings.recipe.training.precision == "fp32" and settings.overrides == {}
    assert settings.recipe.training.model_copy(update={"precision": "bf16"}) == recipe.training  # nothing else moved


def test_finetune_asked_for_bf16_records_the_fp32_it_ran(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _without_bf16(monkeypatch)
    base = tmp_path / "base"
    tiny_classifier("bert").save_pretrained(base)
    tiny_tokenizer("bert").save_pretrained(base)
    run = tmp_path / "run"
    assert main(["finetune", "--model", str(base), "--output", str(run), "--train-file",
                 str(FIXTURES / "sentiment.tsv"), "--epochs", "1", "--batch-size", "8", "--max-length", "16",
                 "--precision", "bf16", "--threads", "1"]) == 0
    info = json.loads((run / "final" / "oberta_training.json").read_text())
    assert info["settings"]["precision"] == "fp32"
