"""The run clock: the time of kept work per stage, summed over the sittings that did it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from compression import run_clock
from compression.run_clock import AwakeClock, CheckpointClock, RunClock


def test_a_resumed_stage_adds_to_its_earlier_sittings_and_a_fresh_one_starts_over(tmp_path: Path) -> None:
    clock = RunClock(tmp_path)
    clock.start("training", resumed=False, machine="CPU A")
    clock.add("training", 10.0)
    again = RunClock(tmp_path)  # read back, as a later sitting does
    again.start("training", resumed=True, machine="GPU B")
    again.add("training", 2.5)
    again.start("teacher_logits", resumed=False, machine="GPU B")
    RunClock(tmp_path).start("training", resumed=True, machine="CPU A")  # a third sitting, back on the first
    assert RunClock(tmp_path).record() == {"seconds": {"training": 12, "teacher_logits": 0},
                                           "sittings": {"training": 3, "teacher_logits": 1},
                                           "machines": {"training": ["CPU A", "GPU B"], "teacher_logits": ["GPU B"]}}
    fresh = RunClock(tmp_path)
    fresh.start("training", resumed=False, machine="CPU C")  # nothing kept to resume from: not this run's time
    assert RunClock(tmp_path).record()["seconds"]["training"] == 0
    assert RunClock(tmp_path).sittings["training"] == 1
    assert RunClock(tmp_path).machines["training"] == ["CPU C"]


def test_a_clock_written_before_machines_were_recorded_reads_back(tmp_path: Path) -> None:
    (tmp_path / run_clock.CLOCK_FILE).write_text('{"seconds": {"training": 5.0}, "sittings": {"training": 1}}')
    clock = RunClock(tmp_path)
    clock.start("training", resumed=True, machine="CPU A")
    assert clock.record() == {"seconds": {"training": 5}, "sittings": {"training": 2},
                              "machines": {"training": ["CPU A"]}}


def test_a_cpu_machine_names_the_cpu_and_the_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_clock, "cpu_name", lambda: "AMD EPYC (AVX2, no VNNI)")
    monkeypatch.setattr(run_clock.torch, "get_num_threads", lambda: 2)
    assert run_clock.machine(torch.device("cpu")) == "AMD EPYC (AVX2, no VNNI), 2 threads"


def test_the_time_after_the_last_checkpoint_of_a_killed_sitting_is_not_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [100.0]
    monkeypatch.setattr(run_clock, "awake_seconds", lambda: now[0])
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
    other.start("training", resumed=False, machine="CPU A")
    other.add("training", 5.0)
    assert not (tmp_path / run_clock.CLOCK_FILE).exists() and other.seconds["training"] == 5.0
    monkeypatch.setenv("RANK", "0")
    first = RunClock(tmp_path)
    first.start("training", resumed=False, machine="CPU A")
    assert (tmp_path / run_clock.CLOCK_FILE).is_file()


def test_the_awake_clock_counts_a_gap_longer_than_a_stall_as_one_tick() -> None:
    now = [0.0]
    clock = AwakeClock(tick=1.0, stall=30.0, monotonic=lambda: now[0], ticking=False)
    now[0] = 0.8
    assert clock.seconds() == pytest.approx(0.8)
    now[0] = 25.8  # a slow tick of a busy process still counts
    assert clock.seconds() == pytest.approx(25.8)
    now[0] = 3625.8  # an hour stopped: one tick
    assert clock.seconds() == pytest.approx(26.8)
    now[0] = 3626.3
    assert clock.seconds() == pytest.approx(27.3)


AWAKE_CHILD = """
import sys, time
from compression.run_clock import AwakeClock
clock = AwakeClock(tick=0.05, stall=1.0)
start = time.monotonic()
print("ready", flush=True)
for _ in range(60):  # 3 s of sleep in short steps: a stop in one of them adds to the wall time
    time.sleep(0.05)
print(clock.seconds(), time.monotonic() - start, flush=True)
"""


def test_a_stopped_process_does_not_count_the_time_it_was_stopped() -> None:
    child = subprocess.Popen([sys.executable, "-c", AWAKE_CHILD], stdout=subprocess.PIPE, text=True,
                             cwd=Path(__file__).resolve().parents[2])
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    child.send_signal(signal.SIGSTOP)
    time.sleep(2.0)
    child.send_signal(signal.SIGCONT)
    awake, wall = (float(value) for value in child.stdout.readline().split())
    assert child.wait(timeout=30) == 0
    assert wall >= 4.5  # its 3 s of sleep, and the 2 s it was stopped
    assert 2.0 <= awake <= wall - 1.5  # about 3 s: the stop counts as one tick
