"""The run's Trainer: the student distilled from its teacher over the prepared features, for any training loop."""

from __future__ import annotations

from transformers import PreTrainedModel

from compression.stages.config import Plan
from compression.stages.prepare import Prepared
from compression.training import DistillationTrainer, training_arguments, with_teacher_logits
from compression.training_loop import TrainingLoop


def distillation_trainer(
    plan: Plan, loop: TrainingLoop, output_dir: str, student: PreTrainedModel, teacher: PreTrainedModel | None,
    distils: bool, prepared: Prepared,
) -> DistillationTrainer:
    """A Trainer for ``loop`` with the recipe's distillation; ``teacher`` runs on every batch, or is None where there
    is none or its logits are in the features (``distils`` says whether a teacher teaches at all)."""
    distillation = plan.recipe.distillation
    evaluate = prepared.evaluation.in_trainer
    return DistillationTrainer(
        model=student, args=training_arguments(loop, output_dir=output_dir, seed=plan.data.seed, evaluate=evaluate),
        train_dataset=prepared.train, eval_dataset=prepared.evaluation.features if evaluate else None,
        data_collator=with_teacher_logits(prepared.task.collator(prepared.tokenizer)),
        compute_metrics=prepared.evaluation.trainer_metrics, teacher=teacher,
        hardness=distillation.hardness if distils else 0.0,
        temperature=distillation.temperature, embedding_loss=distillation.embedding_loss,
        token_states_weight=distillation.token_states_weight,
    )
