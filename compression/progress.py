"""The training bar's estimate of the time left, from this sitting's average pace.

The Trainer's own bar smooths its rate over the last few steps. With batches grouped by length a step takes from under
one to several seconds, and pruning steps and evaluations stop the bar for minutes, so its estimate of a multi-hour run
swung between 2 and 11 hours within a minute; on a resumed run the jump to the checkpoint's step read as thousands of
steps done at once. `SteadyProgress` starts the bar at the resumed step and divides the steps left by the average pace
of the steps this sitting has trained, pruning and evaluation included; its clock leaves out the time the process was
stopped (SIGSTOP, Ctrl-Z: `compression.run_clock.awake_seconds`), which no step took.
"""

from __future__ import annotations

from typing import Any

from tqdm.auto import tqdm
from transformers import Trainer, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_callback import ProgressCallback

from compression.run_clock import awake_seconds


class AwakeBar(tqdm):
    """A tqdm bar whose elapsed time and pace are read on the awake clock, through `format_dict` (tqdm's public
    view of a bar, which its display reads); its own clock still paces the redraws."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.awake_start = awake_seconds()
        super().__init__(*args, **kwargs)

    @property
    def format_dict(self) -> dict[str, Any]:
        numbers = super().format_dict  # a new dict at each call
        numbers["elapsed"] = awake_seconds() - self.awake_start
        numbers["rate"] = None  # tqdm then divides the steps of this sitting, n - initial, by that elapsed time
        return numbers


class SteadyProgress(ProgressCallback):
    """ProgressCallback whose bar starts at the resumed step and estimates from the sitting's average pace."""

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       **kwargs: Any) -> None:
        if state.is_world_process_zero:
            bar: tqdm = AwakeBar(total=state.max_steps, initial=state.global_step, dynamic_ncols=True)
            self.training_bar = bar  # transformers declares the attribute None until a bar is set
        self.current_step = state.global_step


def use_steady_progress(trainer: Trainer) -> None:
    """Put `SteadyProgress` in place of the Trainer's bar, where it shows one (not under ``disable_tqdm``)."""
    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(SteadyProgress())
