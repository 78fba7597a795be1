"""tools/measure_training_precision.py: both precisions train the model and are timed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from tests.tiny_models import tiny_classifier, tiny_tokenizer

SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "measure_training_precision.py"
_spec = importlib.util.spec_from_file_location("measure_training_precision", SCRIPT)
assert _spec is not None and _spec.loader is not None
precision_tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(precision_tool)


def test_each_precision_gets_a_median_step_time(tmp_path: Path) -> None:
    tiny_classifier("bert").save_pretrained(tmp_path)
    tiny_tokenizer("bert").save_pretrained(tmp_path)
    medians = precision_tool.measure(str(tmp_path), batch_size=2, length=6, rounds=1, steps=2)
    assert set(medians) == {"fp32", "bf16"} and all(seconds > 0 for seconds in medians.values())


def test_a_step_changes_the_weights_in_bf16_too() -> None:
    model = tiny_classifier("bert").train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    before = model.classifier.weight.detach().clone()
    batch = {"input_ids": torch.tensor([[2, 5, 6, 3]]), "attention_mask": torch.ones(1, 4, dtype=torch.long),
             "labels": torch.tensor([1])}
    assert precision_tool.step_seconds(model, optimizer, batch, "bf16") > 0
    assert model.classifier.weight.dtype == torch.float32 and not torch.equal(model.classifier.weight, before)
