"""A training run stopped by SIGTERM or SIGINT checkpoints the step under way, exits 128 + the signal, and resumes."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from compression.interruption import StopOnSignal
from compression.pruning.callback import PruningCallback
from compression.run_clock import CheckpointClock
from oberta.cli import main
from tests.tiny_models import tiny_classifier, tiny_tokenizer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _control() -> SimpleNamespace:
    return SimpleNamespace(should_save=False, should_training_stop=False)


def test_the_first_signal_asks_for_a_checkpoint_and_a_stop_and_the_second_acts_as_usual() -> None:
    stopper = StopOnSignal()
    before = signal.getsignal(signal.SIGTERM)
    assert stopper.install()
    try:
        control = _control()
        stopper.on_step_end(None, SimpleNamespace(global_step=3, max_steps=10), control)  # type: ignore[arg-type]
        assert (control.should_save, control.should_training_stop) == (False, False)
        os.kill(os.getpid(), signal.SIGTERM)
        assert stopper.received == signal.SIGTERM
        assert signal.getsignal(signal.SIGTERM) is before  # a second SIGTERM would end the process as usual
        stopper.on_step_end(None, SimpleNamespace(global_step=4, max_steps=10), control)  # type: ignore[arg-type]
        assert (control.should_save, control.should_training_stop, stopper.stopped_at) == (True, True, 4)
    finally:
        stopper.uninstall()
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_distributed_run_keeps_the_usual_signal_handling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    before = signal.getsignal(signal.SIGTERM)
    assert not StopOnSignal().install()
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_signal_during_the_last_step_lets_training_end_as_it_would() -> None:
    stopper = StopOnSignal()
    stopper.received = signal.SIGINT
    control = _control()
    stopper.on_step_end(None, SimpleNamespace(global_step=10, max_steps=10), control)  # type: ignore[arg-type]
    assert (control.should_save, control.should_training_stop, stopper.stopped_at) == (False, False, None)


def _signal_at_step(number: int, step: int) -> Any:
    """A CheckpointClock.on_step_end that sends ``number`` to this process once, during step ``step``."""
    sent: list[int] = []

    def on_step_end(self: CheckpointClock, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == step and not sent:
            sent.append(step)
            os.kill(os.getpid(), number)

    return on_step_end


def test_finetune_stopped_by_sigterm_saves_that_step_exits_143_and_resumes_to_the_same_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    base = tmp_path / "base"
    tiny_classifier("bert").save_pretrained(base)
    tiny_tokenizer("bert").save_pretrained(base)

    def finetune(run: Path) -> int:
        return main(["finetune", "--model", str(base), "--output", str(run), "--train-file",
                     str(FIXTURES / "sentiment.tsv"), "--epochs", "2", "--batch-size", "8", "--max-length", "16",
                     "--save-steps", "4", "--eval-steps", "100", "--threads", "1"])

    assert finetune(tmp_path / "whole") == 0
    capsys.readouterr()
    with monkeypatch.context() as patch:
        patch.setattr(CheckpointClock, "on_step_end", _signal_at_step(signal.SIGTERM, 5), raising=False)
        assert finetune(tmp_path / "stopped") == 128 + signal.SIGTERM
    last_line = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bars
    expected = "oberta finetune: stopped by SIGTERM at step 5 of 12; checkpoint-5 saved in "
    assert last_line.startswith(expected), last_line
    run = tmp_path / "stopped"
    assert (run / "checkpoint-5").is_dir() and not (run / "final").exists()  # step 5 kept, not only checkpoint-4
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert finetune(run) == 0
    info = json.loads((run / "final" / "oberta_training.json").read_text())
    assert info["wall_clock"]["sittings"]["training"] == 2
    whole = load_file(str(tmp_path / "whole" / "final" / "model.safetensors"))
    resumed = load_file(str(run / "final" / "model.safetensors"))
    for key in whole:
        torch.testing.assert_close(resumed[key], whole[key], rtol=1e-5, atol=1e-6, msg=key)


def test_compress_stopped_by_ctrl_c_keeps_its_pruning_step(
    dense_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "training: {epochs: 2, batch_size: 8, learning_rate: 1.0e-3, save_steps: 3, eval_steps: 100, max_length: 32}\n"
        "pruning: {scorer: magnitude, initial_sparsity: 0.5, final_sparsity: 0.8, end_epoch: 1.5, "
        "update_interval_epochs: 0.5}\n"
        "quantization: {calibration_samples: 16}\n")
    run = tmp_path / "run"
    args = ["compress", "--recipe", str(recipe), "--model", str(dense_dir), "--output", str(run), "--name", "tiny",
            "--train-file", str(FIXTURES / "sentiment.tsv"), "--threads", "1"]
    with monkeypatch.context() as patch:
        patch.setattr(PruningCallback, "on_step_end", _wrapped_step_end(signal.SIGINT, 7))
        assert main(args) == 128 + signal.SIGINT
    assert "stopped by SIGINT at step 7 of" in capsys.readouterr().err
    assert (run / "checkpoint-7").is_dir() and not (run / "trained").exists()
    assert main(args) == 0
    assert (run / "model" / "model.yaml").is_file()


def _wrapped_step_end(number: int, step: int) -> Any:
    """PruningCallback.on_step_end, then ``number`` sent to this process once, during step ``step``."""
    original = PruningCallback.on_step_end
    send = _signal_at_step(number, step)

    def on_step_end(self: PruningCallback, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        original(self, args, state, control, **kwargs)
        send(self, args, state, control)

    return on_step_end
