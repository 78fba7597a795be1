"""The run's Trainer: the student distilled from its teacher over the prepared features, for any training loop."""

from __future__ import annotations

from transformers import PreTrainedModel

from compression.micro_batches import check_micro_batches
from compression.stages.config import Plan
from compression.stages.prepare import Prepared
from compression.training import DistillationTrainer, EmbeddingTargets, training_arguments, with_teacher_logits
from compression.training_loop import TrainingLoop
from service.runtime.errors import ConfigError
from service.runtime.tasks.sentence_embedding import SPEC as EMBEDDING_SPEC


def distillation_trainer(
    plan: Plan, loop: TrainingLoop, output_dir: str, student: PreTrainedModel, teacher: PreTrainedModel | None,
    distils: bool, prepared: Prepared,
) -> DistillationTrainer:
    """A Trainer for ``loop`` with the recipe's distillation; ``teacher`` runs on every batch, or is None where there
    is none or its logits are in the features (``distils`` says whether a teacher teaches at all)."""
    distillation = plan.recipe.distillation
    evaluate = prepared.evaluation.in_trainer
    check_micro_batches(prepared.task.name, prepared.task.loss_averages_examples, loop.micro_batch_tokens)
    return DistillationTrainer(
        model=student, args=training_arguments(loop, output_dir=output_dir, seed=plan.data.seed, evaluate=evaluate),
        train_dataset=prepared.train, eval_dataset=prepared.evaluation.features if evaluate else None,
        data_collator=with_teacher_logits(prepared.task.collator(prepared.tokenizer)),
        compute_metrics=prepared.evaluation.trainer_metrics, teacher=teacher,
        hardness=distillation.hardness if distils else 0.0,
        temperature=distillation.temperature, embedding=embedding_targets(plan, student, teacher),
        micro_batch_tokens=loop.micro_batch_tokens,
    )


def embedding_targets(plan: Plan, student: PreTrainedModel, teacher: PreTrainedModel | None) -> EmbeddingTargets:
    """The recipe's sentence-embedding targets. Token and layer states and in-batch similarities are for sentence
    embedding only; its teacher must be as wide as the student (its vectors and token states are compared with the
    student's), and for layer states hold the teacher layers the student kept."""
    distillation, layers = plan.recipe.distillation, plan.recipe.student.layers
    targets = EmbeddingTargets(
        loss=distillation.embedding_loss, token_states_weight=distillation.token_states_weight,
        layer_states_weight=distillation.layer_states_weight, similarity_weight=distillation.similarity_weight,
        similarity_temperature=distillation.similarity_temperature,
        teacher_layers=tuple(layers) if layers is not None else None,
    )
    if plan.data.task != EMBEDDING_SPEC.name:
        if targets.token_states_weight or targets.layer_states_weight or targets.similarity_weight:
            raise ConfigError("distillation.token_states_weight, layer_states_weight and similarity_weight are for "
                              f"the sentence-embedding task, not {plan.data.task}")
        return targets
    if teacher is None:
        return targets
    width = (teacher.config.hidden_size, student.config.hidden_size)
    if width[0] != width[1]:
        raise ConfigError(f"sentence-embedding distillation compares vectors and token states, so it needs a teacher "
                          f"as wide as the student ({width[1]}); this one is {width[0]} wide")
    wanted = max(layers) + 1 if layers is not None else student.config.num_hidden_layers
    if targets.needs_hidden_states and teacher.config.num_hidden_layers < wanted:
        raise ConfigError(f"distillation.layer_states_weight needs a teacher with at least {wanted} layers; this one "
                          f"has {teacher.config.num_hidden_layers}")
    return targets
