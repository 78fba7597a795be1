"""The run clock: the time of kept work per stage, summed over the sittings that did it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from compression import run_clock
from compression.run_clock import CheckpointClock, RunClock


def test_a_resumed_stage_adds_to_its_earlier_sittings_and_a_fresh_one_starts_over(tmp_path: Path) -> None:
    clock = RunClock(tmp_path)
    clock.start("training", resumed=False)
    clock.add("training", 10.0)
    again = RunClock(tmp_path)  # read back, as a later sitting does
    again.start("training", resumed=True)
    again.add("training", 2.5)
    again.start("teacher_logits", resumed=False)
    assert again.record() == {"seconds": {"training": 12, "teacher_logits": 0},
                              "sittings": {"training": 2, "teacher_logits": 1}}
    fresh = RunClock(tmp_path)
    fresh.start("training", resumed=False)  # nothing kept to resume from: the earlier time is not this run's
    assert RunClock(tmp_path).record()["seconds"]["training"] == 0
    assert RunClock(tmp_path).sittings["training"] == 1


def test_the_time_after_the_last_checkpoint_of_a_killed_sitting_is_not_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [100.0]
    monkeypatch.setattr(run_clock.time, "monotonic", lambda: now[0])
    clock = RunClock(tmp_path)
    callback = CheckpointClock(clock, "training")
    unused: Any = None
    callback.on_train_begin(unused, unused, unused)
    now[0] = 130.0
    callback.on_save(unused, unused, unused)  # a checkpoint after 30 s
    now[0] = 150.0  # killed 20 s later: those steps are trained again
    assert RunClock(tmp_path).seconds["training"] == 30.0
    resumed = CheckpointClock(RunClock(tmp_path), "training")
    now[0] = 500.0
    resumed.on_train_begin(unused, unused, unused)
    now[0] = 540.0
    resumed.on_train_end(unused, unused, unused)
    assert RunClock(tmp_path).seconds["training"] == 70.0


def test_only_the_first_of_several_processes_writes_the_clock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "1")
    other = RunClock(tmp_path)
    other.start("training", resumed=False)
    other.add("training", 5.0)
    assert not (tmp_path / run_clock.CLOCK_FILE).exists() and other.seconds["training"] == 5.0
    monkeypatch.setenv("RANK", "0")
    first = RunClock(tmp_path)
    first.start("training", resumed=False)
    assert (tmp_path / run_clock.CLOCK_FILE).is_file()
