"""Stopping a training run on SIGTERM or SIGINT without losing its steps.

A multi-hour CPU run is stopped from outside: a batch scheduler or Kubernetes sends SIGTERM before it kills, a person
presses Ctrl+C, a session ends. Killed outright, the run loses every step since its last checkpoint (up to
`save_steps` of them). While `train_resumably` runs, the first SIGTERM or SIGINT lets the step under way finish, saves
a checkpoint there and stops; `TrainingStopped` then tells where, and rerunning the same command resumes from that
checkpoint. A second signal acts as it would without this (SIGINT raises KeyboardInterrupt, SIGTERM ends the process).
Handlers are installed only in the main thread of a run of one process: the processes of a distributed run (`accelerate
launch`, torchrun) could see the signal at different steps and wait for each other forever, so there the signals act as
usual.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from transformers import Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from service.runtime.errors import ObertaError

log = logging.getLogger(__name__)

STOPPING_SIGNALS = (signal.SIGTERM, signal.SIGINT)
Handler = Callable[[int, FrameType | None], Any] | int | None


class TrainingStopped(ObertaError):
    """Training stopped on a signal after saving a checkpoint; the CLI exits with 128 + the signal's number."""

    def __init__(self, signal_number: int, step: int, max_steps: int, output_dir: str) -> None:
        name = signal.Signals(signal_number).name
        super().__init__(f"stopped by {name} at step {step} of {max_steps}; checkpoint-{step} saved in {output_dir}: "
                         "run the same command again to resume from it")
        self.exit_status = 128 + signal_number


class StopOnSignal(TrainerCallback):
    """Asks the Trainer to checkpoint and stop at the end of the step during which a stopping signal arrived."""

    def __init__(self) -> None:
        self.received: int | None = None  # the first stopping signal's number
        self.stopped_at: int | None = None  # the step checkpointed because of it, unless training had ended anyway
        self._previous: dict[int, Handler] = {}

    def install(self) -> bool:
        """Take over SIGTERM and SIGINT; False (nothing changed) outside the main thread or in a distributed run."""
        if threading.current_thread() is not threading.main_thread() or int(os.environ.get("WORLD_SIZE", "1")) > 1:
            return False
        for number in STOPPING_SIGNALS:
            self._previous[number] = signal.signal(number, self._on_signal)
        return True

    def uninstall(self) -> None:
        """Give SIGTERM and SIGINT back the handlers they had before `install`."""
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()

    def _on_signal(self, number: int, frame: FrameType | None) -> None:
        self.received = number
        log.warning("%s received: finishing this step, saving a checkpoint and stopping (send it again to stop at "
                    "once)", signal.Signals(number).name)
        self.uninstall()  # a second signal is handled as usual

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: Any) -> None:
        if self.received is None or self.stopped_at is not None or state.global_step >= state.max_steps:
            return
        control.should_save = True
        control.should_training_stop = True
        self.stopped_at = state.global_step


def train_resumably(trainer: Trainer, resume: str | None) -> None:
    """``trainer.train`` from ``resume`` (a checkpoint, or None to start afresh) that a first SIGTERM or SIGINT stops
    with a checkpoint at the step under way; raises TrainingStopped after such a stop."""
    stopper = StopOnSignal()
    trainer.add_callback(stopper)
    installed = stopper.install()
    try:
        trainer.train(resume_from_checkpoint=resume)
    finally:
        if installed:
            stopper.uninstall()
        trainer.remove_callback(stopper)
    if stopper.received is not None and stopper.stopped_at is not None:
        raise TrainingStopped(stopper.received, stopper.stopped_at, trainer.state.max_steps,
                              str(trainer.args.output_dir))
