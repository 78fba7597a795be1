"""A user's mistake in the offline commands is one line on stderr and exit status 2, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from oberta.cli import main

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _one_error_line(capsys: pytest.CaptureFixture[str], command: str) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"oberta {command}: error: "), lines
    return lines[0]


def test_export_of_a_missing_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["export", "--model", str(tmp_path / "missing"), "--output", str(tmp_path / "out"), "--name", "m"]
    assert main(args) == 2
    assert "cannot load a model or tokenizer from" in _one_error_line(capsys, "export")


def test_compress_with_a_recipe_typo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("training:\n  epochz: 3\n")
    args = ["compress", "--recipe", str(recipe), "--model", "m", "--output", str(tmp_path / "run"), "--name", "m",
            "--train-file", str(FIXTURES / "sentiment.tsv")]
    assert main(args) == 2
    assert "training.epochz" in _one_error_line(capsys, "compress")


def test_finetune_with_another_tasks_setting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["finetune", "--doc-stride", "8", "--train-file", str(FIXTURES / "sentiment.tsv"),
            "--output", str(tmp_path / "run")]
    assert main(args) == 2
    assert "--doc-stride do not apply to --task text-classification" in _one_error_line(capsys, "finetune")
