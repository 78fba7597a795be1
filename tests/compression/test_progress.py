"""The training bar starts at a resumed run's step and estimates the time left from the sitting's average pace."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from transformers import TrainingArguments
from transformers.trainer_callback import ProgressCallback

from compression import progress as progress_module
from compression.progress import SteadyProgress
from compression.training import DistillationTrainer
from tests.tiny_models import tiny_classifier


def test_a_resumed_run_starts_its_bar_at_the_checkpoint_and_counts_its_pace_from_there() -> None:
    progress = SteadyProgress()
    state = SimpleNamespace(is_world_process_zero=True, global_step=300, max_steps=1000)
    progress.on_train_begin(None, state, None)  # type: ignore[arg-type]
    bar = progress.training_bar
    assert (bar.n, bar.total, bar.initial) == (300, 1000, 300)
    state.global_step = 302
    progress.on_step_end(None, state, None)  # type: ignore[arg-type]
    assert (bar.n, bar.initial) == (302, 300)
    bar.close()


def test_the_distillation_trainer_shows_the_steady_bar_in_place_of_the_default(tmp_path: Path) -> None:
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none")
    trainer = DistillationTrainer(model=tiny_classifier("bert"), args=args)
    bars = [callback for callback in trainer.callback_handler.callbacks if isinstance(callback, ProgressCallback)]
    assert [type(bar) for bar in bars] == [SteadyProgress]
    quiet = DistillationTrainer(model=tiny_classifier("bert"), args=TrainingArguments(
        output_dir=str(tmp_path), report_to="none", disable_tqdm=True))
    assert not any(isinstance(callback, ProgressCallback) for callback in quiet.callback_handler.callbacks)


def test_the_bar_times_the_steps_on_the_awake_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Time the process spent stopped (the awake clock leaves it out) takes nothing off the pace, and the pace counts
    only the steps of this sitting."""
    awake = [1000.0]
    monkeypatch.setattr(progress_module, "awake_seconds", lambda: awake[0])
    progress = SteadyProgress()
    state = SimpleNamespace(is_world_process_zero=True, global_step=300, max_steps=1000)
    progress.on_train_begin(None, state, None)  # type: ignore[arg-type]
    bar = progress.training_bar
    awake[0] = 1020.0  # 10 steps in 20 s awake, however long the wall clock ran
    state.global_step = 310
    progress.on_step_end(None, state, None)  # type: ignore[arg-type]
    assert bar.format_dict["elapsed"] == pytest.approx(20.0)
    assert "310/1000 [00:20<23:00,  2.00s/it]" in str(bar)  # 690 steps left at 0.5 a second
    bar.close()
