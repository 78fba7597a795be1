"""The training stage: prune with distillation (resuming from the newest checkpoint), save ``trained/`` and the
training result."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel

from compression.base_models import resolve_base_model
from compression.interruption import train_resumably
from compression.pruning.callback import GradientSampler, PruningCallback
from compression.pruning.pruner import ENCODER_LINEARS, Pruner, find_layers
from compression.recipe import StudentRecipe
from compression.run_clock import TRAINING_STAGE, RunClock, time_training
from compression.stages.config import CompressConfig, Plan
from compression.stages.prepare import Prepared, prefixed, prepare, score
from compression.stages.qat import QatModel, train_quantization_aware
from compression.stages.record import TRAINED, BuildRecord, TrainingResult
from compression.stages.teacher import (
    attach_teacher_logits,
    load_teacher,
    precomputes_logits,
    teacher_score,
    teacher_training,
)
from compression.stages.trainer import distillation_trainer
from compression.structure import Removed, keep_layers, prune_structures
from compression.structure_compaction import KeptStructures, compact, expand, kept_structures, supports_compaction
from compression.tasks import task_for
from compression.training import (
    DistillationTrainer,
    final_evaluation,
    freeze_embeddings,
    last_checkpoint,
    validation_curve,
    with_teacher_logits,
)
from service.runtime.errors import ConfigError

STRUCTURE_BATCH = 16


@dataclass(frozen=True)
class Trained:
    """The trained student, the prepared data (for an export in the same run) and the saved result."""

    student: PreTrainedModel
    prepared: Prepared
    result: TrainingResult
    qat: QatModel | None = None  # the quantization-aware trained student, where the recipe asks for one


@dataclass(frozen=True)
class _Compaction:
    """The structures a compacted student trains with, and the weights each of its Linear layers lost."""

    kept: KeptStructures
    removed_weights: dict[str, int]


def _compact_structures(student: PreTrainedModel, output: Path, resumed: bool) -> _Compaction | None:
    """Train only the kept heads and neurons (compression/structure_compaction.py); a resumed run compacts as its
    first start did, and one begun without compaction (its checkpoints hold full-size layers) goes on without."""
    if not supports_compaction(student):
        return None
    if resumed:
        kept = KeptStructures.load(output)
        if kept is None:
            return None
    else:
        kept = kept_structures(student)
        output.mkdir(parents=True, exist_ok=True)
        kept.save(output)
    return _Compaction(kept, compact(student, kept))


def _trainer(
    plan: Plan, output_dir: str, student: PreTrainedModel, teacher: PreTrainedModel | None, distils: bool,
    prepared: Prepared, removed_weights: dict[str, int],
) -> tuple[DistillationTrainer, PruningCallback]:
    """The pruning run's Trainer with the pruning callback attached (see `distillation_trainer`)."""
    recipe, seed = plan.recipe, plan.data.seed
    pruning = recipe.pruning
    collator = with_teacher_logits(prepared.task.collator(prepared.tokenizer))
    pruner = Pruner(
        find_layers(student, pruning.modules or (ENCODER_LINEARS,)),
        scorer=pruning.scorer, group=pruning.group, scope=pruning.scope,
        block_size=pruning.obs.block_size, damp=pruning.obs.damp, removed_weights=removed_weights,
    )
    trainer = distillation_trainer(plan, recipe.training, output_dir, student, teacher, distils, prepared)

    def samplers(draw: int) -> GradientSampler:
        return GradientSampler(
            student, pruner, lambda m, b: trainer.compute_loss(m, b), prepared.train, collator,
            pruning.obs.grad_batch_size, pruning.obs.num_grads, seed * 1_000_003 + draw,
        )

    callback = PruningCallback(pruner, pruning, samplers if pruning.scorer == "obs" else None)
    trainer.add_callback(callback)
    return trainer, callback


def _prune_structures(student: PreTrainedModel, prepared: Prepared, shape: StudentRecipe, seed: int) -> Removed | None:
    """Remove the recipe's heads and neurons, scored on a seeded sample of the training features."""
    if not shape.prunes_structures:
        return None
    sample = random.Random(seed).sample(prepared.train, min(shape.calibration_samples, len(prepared.train)))
    collate = prepared.task.collator(prepared.tokenizer)
    batches = (
        {name: value for name, value in collate(sample[i : i + STRUCTURE_BATCH]).items()
         if name in prepared.input_names}
        for i in range(0, len(sample), STRUCTURE_BATCH)
    )
    return prune_structures(student, batches, shape.heads, shape.neurons)


def train(config: CompressConfig, plan: Plan) -> Trained:
    """Prune with distillation, save ``trained/`` and ``training_result.json`` in the output directory."""
    resume = last_checkpoint(config.output_dir)
    recipe = plan.recipe
    student_path = resolve_base_model(config.model)
    task = task_for(plan.data.task)
    student = task.load_model(student_path)
    if recipe.student.layers is not None:
        try:
            keep_layers(student, recipe.student.layers)
        except ValueError as exc:
            raise ConfigError(f"recipe student.layers: {exc}") from exc
    prepared = prepare(plan.data, student_path, student)
    removed = _prune_structures(student, prepared, recipe.student, plan.data.seed)
    output = Path(config.output_dir)
    compaction = _compact_structures(student, output, resume is not None) if removed is not None else None
    teacher_path = config.teacher or recipe.distillation.teacher
    if teacher_path is None and task.needs_teacher:
        raise ConfigError(f"{task.name} has no labels and learns from a teacher: name one (--teacher, or the dense "
                          "--model itself, the default without --no-teacher)")
    teacher = load_teacher(task, teacher_path, prepared) if teacher_path else None
    teacher_logits = None  # how the teacher's logits were put into the features, where they were
    if teacher is not None and precomputes_logits(task):
        teacher_logits = attach_teacher_logits(teacher, prepared, plan.data, recipe.training.precision, output)
    if recipe.training.freeze_embeddings:
        freeze_embeddings(student)

    live_teacher = teacher.model if teacher is not None and teacher_logits is None else None
    trainer, callback = _trainer(plan, config.output_dir, student, live_teacher, teacher is not None, prepared,
                                 compaction.removed_weights if compaction is not None else {})
    clock = RunClock(output)
    time_training(trainer, clock, TRAINING_STAGE, resumed=resume is not None)
    train_resumably(trainer, resume)
    callback.pruner.remove_hooks()
    # Mixed precision wraps the model's forward in autocast; the export traces the plain fp32 forward.
    student = trainer.accelerator.unwrap_model(student, keep_fp32_wrapper=False)
    if compaction is not None:
        expand(student, compaction.kept)
    trainer.save_model(str(output / TRAINED))
    prepared.tokenizer.save_pretrained(str(output / TRAINED))

    fp32 = final_evaluation(trainer, resume) or score(prepared, student)
    metrics: dict[str, Any] = {"validation_examples": len(prepared.data.validation), **prefixed("student_fp32", fp32)}
    if teacher is not None:
        metrics.update(prefixed("teacher", teacher_score(teacher, prepared, plan.data)))
    record = BuildRecord(
        command=config.command,
        recipe=config.recipe_source,
        recipe_settings=recipe.model_dump(mode="json"),
        overrides=plan.overrides,
        model=config.model,
        teacher=teacher_path,
        teacher_training=teacher_training(teacher_path) if teacher_path else None,
        teacher_logits=teacher_logits,
        data=asdict(plan.data),
        validation=prepared.data.record,
        train_examples=len(prepared.data.train),
        train_features=len(prepared.train),
        pruning_history=callback.history,
        validation_curve=validation_curve(trainer),
        pytorch_sparsity=callback.pruner.sparsity(),
        student_layers=recipe.student.layers,
        removed_heads=removed.heads if removed is not None else None,
        training_device=str(student.device),
        training_wall_clock_seconds=round(clock.seconds[TRAINING_STAGE]),
        wall_clock=clock.record(),
    )
    result = TrainingResult(metrics=metrics, build=record)
    result.save(output)
    if recipe.quantization.method != "qat":
        return Trained(student, prepared, result)
    qat = train_quantization_aware(plan, output, prepared, live_teacher, teacher is not None, clock)
    result = TrainingResult(metrics={**metrics, **qat.metrics},
                            build=record.model_copy(update={"qat": qat.record, "wall_clock": clock.record()}))
    result.save(output)
    return Trained(student, prepared, result, qat.model)
