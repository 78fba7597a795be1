"""Default run directories: outside the work tree, the same for the same command (so a rerun resumes), another for
other settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from oberta.cli import build_parser, main
from oberta.run_dirs import RUNS_DIR_VARIABLE, default_run_dir
from tests.tiny_models import tiny_classifier, tiny_tokenizer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TRAIN = ["--train-file", str(FIXTURES / "sentiment.tsv")]


def _dir(*argv: str) -> Path:
    args = build_parser().parse_args(list(argv))
    return default_run_dir(args.command, args.task, args)


def _compress_dir(*argv: str) -> Path:
    args = build_parser().parse_args(list(argv))
    return default_run_dir(args.command, args.name, args)


def test_the_same_command_finds_the_same_directory_and_other_settings_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(RUNS_DIR_VARIABLE, str(tmp_path / "runs"))
    first = _dir("finetune", *TRAIN, "--learning-rate", "1e-4")
    assert first == _dir("finetune", *TRAIN, "--learning-rate", "1e-4")
    assert first == _dir("finetune", *TRAIN, "--learning-rate", "1e-4", "--threads", "1")  # speed, not result
    assert first != _dir("finetune", *TRAIN, "--learning-rate", "2e-4")
    assert first.parent == tmp_path / "runs" and first.name.startswith("finetune-text-classification-")
    compress = ("compress", "--recipe", "obert-cpu", "--model", "m", "--name", "sentiment", *TRAIN)
    trained_here = _compress_dir(*compress, "--stage", "train")
    assert trained_here == _compress_dir(*compress, "--stage", "export", "--model-dir", "models/sentiment")
    assert trained_here.name.startswith("compress-sentiment-")
    monkeypatch.delenv(RUNS_DIR_VARIABLE)
    assert _dir("finetune", *TRAIN).parent == Path.home() / ".cache" / "oberta" / "runs"


def test_finetune_without_output_runs_in_the_default_directory_and_says_where(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(RUNS_DIR_VARIABLE, str(tmp_path / "runs"))
    model = tmp_path / "base"
    tiny_classifier("bert").save_pretrained(model)
    tiny_tokenizer("bert").save_pretrained(model)
    argv = ["finetune", "--model", str(model), *TRAIN, "--epochs", "1", "--batch-size", "8", "--save-steps", "2",
            "--eval-steps", "50", "--threads", "1", "--max-length", "32"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    (run,) = (tmp_path / "runs").iterdir()
    assert f"run directory: {run} " in printed and f"model in {run}/final" in printed
    assert (run / "final" / "config.json").is_file() and list(run.glob("checkpoint-*"))
