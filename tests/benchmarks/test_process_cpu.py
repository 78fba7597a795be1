"""CPU time by thread group, as the HTTP benchmark reads it from /proc."""

from __future__ import annotations

import os
import sys
import time

import pytest

from benchmarks.process_cpu import cpu_seconds, spent


def _busy(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_cpu_of_the_main_thread_and_the_calling_thread() -> None:
    before = cpu_seconds(os.getpid())  # pytest runs tests in the main thread: it is both "server" and caller here
    _busy(0.3)
    used = spent(before, cpu_seconds(os.getpid()))
    assert set(used) == {"server event loop", "server other threads", "load generator"}
    assert used["server event loop"] >= 0.25 and used["load generator"] >= 0.25
    assert used["server other threads"] < 0.1


def test_a_process_that_is_gone_reports_only_the_caller() -> None:
    assert set(cpu_seconds(2**22 + 1)) == {"load generator"}  # above Linux's largest pid
    assert set(cpu_seconds(None)) == {"load generator"}
