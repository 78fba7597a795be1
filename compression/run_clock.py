"""How long a run directory's work took, summed over the sittings that did it.

A multi-hour CPU run is stopped and later resumed from its newest checkpoint (or, for the teacher's logits, its newest
kept chunk); what a sitting computed after that point is computed again by the next one. So each stage adds time only
when its work is kept: training at every checkpoint and at its end, the teacher's logits at every kept chunk. The
totals live in the run directory (``wall_clock.json``: seconds per stage, how many sittings worked on each and on
which machines), so the card of a model built over several sittings tells the time its work took, and where it ran.
Time while the process is stopped (SIGSTOP, Ctrl-Z: a shared machine lending its cores to other work) is not counted
(`awake_seconds`).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from service.runtime.cpu import cpu_name

CLOCK_FILE = "wall_clock.json"
TRAINING_STAGE = "training"
"""Fine-tuning (`oberta finetune`) or pruning with distillation (`oberta compress`)."""
LOGITS_STAGE = "teacher_logits"
"""The teacher's logits of every training feature, computed once before the student trains."""
QAT_STAGE = "qat"
"""Quantization-aware training after pruning."""


class AwakeClock:
    """Seconds a process has run, leaving out the time it was stopped: a daemon thread adds up the gaps between its
    ticks (every ``tick`` seconds), and a gap longer than ``stall``, which a running process does not show but a
    stopped one does on waking, counts as one tick. Reading it adds the gap since the last tick the same way."""

    def __init__(self, tick: float = 1.0, stall: float = 30.0,
                 monotonic: Callable[[], float] = time.monotonic, ticking: bool = True) -> None:
        self.tick, self.stall, self._monotonic = tick, stall, monotonic
        self._lock = threading.Lock()
        self._awake, self._last = 0.0, monotonic()
        if ticking:
            threading.Thread(target=self._run, name="awake-clock", daemon=True).start()

    def _run(self) -> None:
        while True:
            time.sleep(self.tick)
            self.seconds()

    def seconds(self) -> float:
        """Seconds awake since the clock started."""
        with self._lock:
            now = self._monotonic()
            gap = now - self._last
            self._awake += gap if gap <= self.stall else self.tick
            self._last = now
            return self._awake


@cache
def _process_clock() -> AwakeClock:
    return AwakeClock()


def awake_seconds() -> float:
    """This process's `AwakeClock` reading (started at the first call): the time base of every stage's seconds."""
    return _process_clock().seconds()


def machine(device: torch.device) -> str:
    """Where a stage runs, as the card names it: the GPU, or the CPU with its INT8 instruction sets and the threads
    torch uses ("AMD EPYC (AVX2, no VNNI), 2 threads")."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()}, {torch.get_num_threads()} threads"


class RunClock:
    """Seconds of kept work, sittings and the machines they ran on, per stage of one run directory, saved at every
    change (by the first process only, where `accelerate launch` or torchrun start several)."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / CLOCK_FILE
        self.writes = int(os.environ.get("RANK", "0")) == 0
        saved = json.loads(self.path.read_text()) if self.path.is_file() else {}
        self.seconds: dict[str, float] = dict(saved.get("seconds", {}))
        self.sittings: dict[str, int] = dict(saved.get("sittings", {}))
        self.machines: dict[str, list[str]] = {stage: list(names) for stage, names in saved.get("machines", {}).items()}

    def start(self, stage: str, resumed: bool, machine: str) -> None:
        """A sitting begins work on ``stage`` on ``machine`` (see `machine`): a fresh start (nothing kept to resume
        from) forgets its earlier time and machines."""
        if not resumed:
            self.seconds[stage], self.sittings[stage], self.machines[stage] = 0.0, 0, []
        self.sittings[stage] = self.sittings.get(stage, 0) + 1
        machines = self.machines.setdefault(stage, [])
        if machine not in machines:
            machines.append(machine)
        self._save()

    def add(self, stage: str, seconds: float) -> None:
        """Count ``seconds`` of kept work for ``stage``."""
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds
        self._save()

    def record(self) -> dict[str, Any]:
        """For the card: whole seconds, sittings and machines per stage."""
        return {"seconds": {stage: round(value) for stage, value in self.seconds.items()},
                "sittings": dict(self.sittings),
                "machines": {stage: list(names) for stage, names in self.machines.items()}}

    def _save(self) -> None:
        if not self.writes:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".partial")
        partial.write_text(json.dumps({"seconds": self.seconds, "sittings": self.sittings, "machines": self.machines},
                                      indent=2))
        partial.replace(self.path)


def time_training(trainer: Trainer, clock: RunClock, stage: str, resumed: bool) -> None:
    """Count a sitting of ``stage`` on the trainer's device; ``trainer`` adds its kept work's time to ``clock``."""
    clock.start(stage, resumed, machine(trainer.args.device))
    trainer.add_callback(CheckpointClock(clock, stage))


class CheckpointClock(TrainerCallback):
    """Adds a training stage's time to the run's clock at every checkpoint and at the end of training: the time
    after the last checkpoint of a killed sitting is not counted, as its steps are trained again."""

    def __init__(self, clock: RunClock, stage: str) -> None:
        self.clock, self.stage = clock, stage
        self._mark = awake_seconds()

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       **kwargs: Any) -> None:
        self._mark = awake_seconds()

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self._tick()

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                     **kwargs: Any) -> None:
        self._tick()

    def _tick(self) -> None:
        now = awake_seconds()
        self.clock.add(self.stage, now - self._mark)
        self._mark = now
