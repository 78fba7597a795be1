"""CPU time spent during a measurement: the server's event loop (its main thread), the server's other threads
(engine, tokenizer and engine worker threads), and the load generator's own thread.

Per request, these tell where a short request's CPU goes on a machine that the server shares with its clients,
a figure that stays put when a noisy host moves throughput. Linux only (/proc); elsewhere there is nothing to report.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
CpuSeconds = dict[str, float]  # "server event loop", "server other threads", "load generator" → CPU seconds


def _stat_seconds(path: Path) -> float | None:
    """utime + stime of a /proc stat file, in seconds; None when it cannot be read."""
    try:
        text = path.read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_SECOND


def cpu_seconds(server_pid: int | None) -> CpuSeconds:
    """CPU seconds used so far by the server's main thread and its other threads (those that exited included), and
    by the calling thread; only what can be read."""
    usage = resource.getrusage(resource.RUSAGE_THREAD)
    sample = {"load generator": usage.ru_utime + usage.ru_stime}
    if server_pid is not None:
        # The main thread first: what it runs between the two reads then counts toward the process, not against the
        # other threads. Both are whole clock ticks, each scaled by the kernel on its own, so the other threads'
        # share of a short window can still be off by a tick or two.
        main = _stat_seconds(Path(f"/proc/{server_pid}/task/{server_pid}/stat"))
        process = _stat_seconds(Path(f"/proc/{server_pid}/stat"))
        if process is not None and main is not None:
            sample["server event loop"] = main
            sample["server other threads"] = process - main
    return sample


def process_cpu_seconds() -> float:
    """CPU seconds used so far by every thread of this process."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def spent(before: CpuSeconds, after: CpuSeconds) -> CpuSeconds:
    """CPU seconds between two samples, for what both hold."""
    return {key: after[key] - before[key] for key in before if key in after}
