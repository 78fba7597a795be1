"""The quantization-aware training stage: after pruning, the student trains on with fake-quantized INT8 layers
(compression/qat.py), its pruning masks held and distilled as before; saved with its layers' input ranges.

Run layout under the run's output: ``qat/checkpoint-N/`` (a rerun resumes from the newest; each holds the ranges
so far; ``qat/kept_structures.json`` where it trains a structurally pruned student's smaller matrices) and
``qat-trained/`` (the model, full-size again, its tokenizer and ``activation_ranges.json``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel, TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from compression.interruption import train_resumably
from compression.pruning.pruner import ENCODER_LINEARS, Pruner, find_layers
from compression.qat import ACTIVATION_RANGES, FakeQuantization, load_activation_ranges
from compression.run_clock import QAT_STAGE, RunClock, time_training
from compression.stages.config import Plan
from compression.stages.prepare import Prepared, prefixed, score
from compression.stages.record import TRAINED
from compression.stages.trainer import distillation_trainer
from compression.structure_compaction import KeptStructures, compact, expand, supports_compaction
from compression.training import final_evaluation, freeze_embeddings, last_checkpoint
from service.runtime.errors import MissingFile

log = logging.getLogger(__name__)
QAT_CHECKPOINTS = "qat"
QAT_TRAINED = "qat-trained"


@dataclass(frozen=True)
class QatModel:
    """A quantization-aware trained student (plain forward again) and its layers' input ranges by module name."""

    student: PreTrainedModel
    activation_ranges: dict[str, tuple[float, float]]


@dataclass(frozen=True)
class QatResult:
    """The stage's model, its metrics (simulated INT8 and plain FP32) and what the build record keeps of it."""

    model: QatModel
    metrics: dict[str, Any]
    record: dict[str, Any]


class HoldMasksSaveRanges(TrainerCallback):
    """Zero the pruned weights after every optimizer step; save the input ranges into every checkpoint."""

    def __init__(self, pruner: Pruner, quantization: FakeQuantization, checkpoints: Path) -> None:
        self.pruner = pruner
        self.quantization = quantization
        self.checkpoints = checkpoints

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       **kwargs: Any) -> None:
        self.pruner.masks_from_weights()

    def on_optimizer_step(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                          **kwargs: Any) -> None:
        self.pruner.apply_masks()

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self.quantization.save(self.checkpoints / f"checkpoint-{state.global_step}")


def _compaction(student: PreTrainedModel, output: Path, checkpoints: Path, resumed: bool) -> KeptStructures | None:
    """The structures QAT trains compacted (the smaller matrices, as the training stage did; the per-column weight
    scales and input ranges are those of the full-size layers, whose removed rows and columns are zero): the
    training stage's, recorded in ``qat/`` at the first start, so that a resumed run compacts as that start did."""
    if resumed:
        return KeptStructures.load(checkpoints)
    kept = KeptStructures.load(output)
    if kept is None or not supports_compaction(student):
        return None
    checkpoints.mkdir(parents=True, exist_ok=True)
    kept.save(checkpoints)
    return kept


def train_quantization_aware(
    plan: Plan, output: Path, prepared: Prepared, teacher: PreTrainedModel | None, distils: bool, clock: RunClock,
) -> QatResult:
    """Load ``trained/``, train it quantization-aware for the recipe's ``quantization.qat`` and save it; its kept
    work's time goes to the run's clock (stage ``qat``)."""
    recipe = plan.recipe
    settings = recipe.quantization.qat
    student = prepared.task.load_model(str(output / TRAINED))
    if recipe.training.freeze_embeddings:
        freeze_embeddings(student)
    checkpoints = output / QAT_CHECKPOINTS
    resume = last_checkpoint(checkpoints)
    kept = _compaction(student, output, checkpoints, resume is not None)
    if kept is not None:
        compact(student, kept)
    layers = find_layers(student, (ENCODER_LINEARS,))
    quantization = FakeQuantization({layer.name: layer.module for layer in layers}, settings.averaging_constant)
    loop = recipe.training.model_copy(update={
        "epochs": settings.epochs, "learning_rate": settings.learning_rate, "warmup_ratio": 0.0,
        "lr_schedule": "linear",
    })
    trainer = distillation_trainer(plan, loop, str(checkpoints), student, teacher, distils, prepared)
    pruner = Pruner(layers)  # masks the gradients of pruned weights; the callback zeroes the weights themselves
    trainer.add_callback(HoldMasksSaveRanges(pruner, quantization, checkpoints))
    if resume is not None and (Path(resume) / ACTIVATION_RANGES).is_file():
        quantization.restore(Path(resume))
    quantization.attach()
    log.info("quantization-aware training of %d layers for %s epochs", len(layers), settings.epochs)
    time_training(trainer, clock, QAT_STAGE, resumed=resume is not None)
    train_resumably(trainer, resume)
    pruner.remove_hooks()
    simulated = final_evaluation(trainer, resume) or score(prepared, student)
    quantization.detach()
    student = trainer.accelerator.unwrap_model(student, keep_fp32_wrapper=False)
    if kept is not None:
        expand(student, kept)
    folder = output / QAT_TRAINED
    trainer.save_model(str(folder))
    prepared.tokenizer.save_pretrained(str(folder))
    quantization.save(folder)
    metrics = {**prefixed("student_qat_simulated_int8", simulated), **prefixed("student_qat_fp32",
                                                                                 score(prepared, student))}
    record = {**settings.model_dump(mode="json"), "layers": len(layers),
              "training_wall_clock_seconds": round(clock.seconds[QAT_STAGE])}
    return QatResult(QatModel(student, quantization.observed_ranges()), metrics, record)


def load_qat_model(output: Path, prepared: Prepared) -> QatModel:
    """The ``qat-trained/`` model of a finished quantization-aware training stage, with its ranges."""
    folder = output / QAT_TRAINED
    if not (folder / ACTIVATION_RANGES).is_file():
        raise MissingFile(f"{output} holds no finished quantization-aware training ({QAT_TRAINED}/ with "
                          f"{ACTIVATION_RANGES}): run `oberta compress` with --stage train (or all) first")
    return QatModel(prepared.task.load_model(str(folder)), load_activation_ranges(folder))
