"""tools/measure_tokenizing.py: both ways are timed on the same calls, and give the same tokens."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "measure_tokenizing.py"
_spec = importlib.util.spec_from_file_location("measure_tokenizing", SCRIPT)
assert _spec is not None and _spec.loader is not None
tokenizing_tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tokenizing_tool)

SENTIMENT = Path(__file__).resolve().parents[2] / "models" / "sentiment"


def test_both_ways_are_timed_round_by_round() -> None:
    texts = [f"review {index}: " + "a long and winding plot " * (20 + index) for index in range(12)]
    times = tokenizing_tool.measure(SENTIMENT, texts, batch=4, batches=3, rounds=2)
    assert set(times) == {"served", "whole"} and all(len(values) == 2 for values in times.values())
    assert all(milliseconds > 0 for values in times.values() for milliseconds in values)
