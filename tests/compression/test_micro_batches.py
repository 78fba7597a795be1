"""A batch trained in parts of rows gives the whole batch's loss and gradients; tasks where it would not are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from transformers import TrainingArguments

from compression.micro_batches import split_rows
from compression.training import DistillationTrainer, eval_batch_size
from compression.training_loop import TrainingLoop
from oberta.cli import main
from tests.tiny_models import tiny_question_answering

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _batch(rows: int, length: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(rows * 1000 + length)
    mask = torch.ones(rows, length, dtype=torch.long)
    mask[::3, length - 3 :] = 0  # some rows padded
    return {
        "input_ids": torch.randint(5, 20, (rows, length), generator=generator),
        "attention_mask": mask,
        "start_positions": torch.randint(1, length - 3, (rows,), generator=generator),
        "end_positions": torch.randint(1, length - 3, (rows,), generator=generator),
    }


def test_rows_are_cut_into_consecutive_parts_within_the_token_budget() -> None:
    batch = {**_batch(7, 10), "scale": torch.tensor(2.0)}
    parts = split_rows(batch, 30)  # 3 rows of 10 tokens a part
    assert [len(part["input_ids"]) for part in parts] == [3, 3, 1]
    for name in ("input_ids", "attention_mask", "start_positions"):
        assert torch.equal(torch.cat([part[name] for part in parts]), batch[name])
    assert all(part["scale"] is batch["scale"] for part in parts)  # not a row tensor: every part gets it whole
    assert split_rows(batch, 5)[0]["input_ids"].shape == (1, 10)  # at least one row a part
    assert split_rows(batch, 70) == [batch] and split_rows(batch, None) == [batch]


def _gradients(micro_batch_tokens: int | None, batch: dict[str, torch.Tensor], tmp_path: Path) -> tuple[float, dict]:
    model = tiny_question_answering()
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0  # the parts draw other dropout masks than the whole batch
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    trainer = DistillationTrainer(model=model, args=args, micro_batch_tokens=micro_batch_tokens)
    trainer.create_optimizer()
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop, which this calls into directly
    loss = trainer.training_step(model, {name: value.clone() for name, value in batch.items()})
    return float(loss), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def test_a_batch_trained_in_parts_has_the_whole_batchs_loss_and_gradients(tmp_path: Path) -> None:
    batch = _batch(8, 12)
    whole_loss, whole = _gradients(None, batch, tmp_path)
    parts_loss, parts = _gradients(36, batch, tmp_path)  # 3 rows a part: 3 + 3 + 2
    assert parts_loss == pytest.approx(whole_loss, rel=1e-5)
    assert whole.keys() == parts.keys() and whole
    for name in whole:
        torch.testing.assert_close(parts[name], whole[name], rtol=1e-4, atol=1e-6, msg=name)


def test_evaluation_batches_follow_the_parts_size() -> None:
    assert eval_batch_size(TrainingLoop(batch_size=32, max_length=384)) == 64
    assert eval_batch_size(TrainingLoop(batch_size=32, max_length=384, micro_batch_tokens=2048)) == 5


def test_tasks_whose_losses_average_over_tokens_refuse_parts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["finetune", "--task", "token-classification", "--train-file", str(FIXTURES / "conll_tiny.txt"),
            "--micro-batch-tokens", "256", "--output", str(tmp_path / "run")]
    assert main(args) == 2
    assert "training.micro_batch_tokens is for tasks whose losses average over examples" in capsys.readouterr().err
