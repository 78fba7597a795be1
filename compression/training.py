"""Shared training pieces: the Trainer's arguments, embedding freezing, a length-grouped sampler and a Trainer
with optional distillation."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Sampler, SequentialSampler
from transformers import PreTrainedModel, Trainer, TrainingArguments
from transformers.modeling_outputs import (
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from transformers.trainer_pt_utils import get_length_grouped_indices
from transformers.trainer_utils import get_last_checkpoint
from transformers.utils import is_torch_tf32_available

from compression.embedding_model import SentenceEmbeddingOutput
from compression.micro_batches import row_count, split_rows
from compression.progress import use_steady_progress
from compression.recipe import EmbeddingLoss
from compression.training_loop import TrainingLoop

IGNORED_LABEL = -100
TEACHER_LOGITS = "teacher_logits"  # a training feature's teacher logits, computed before training
MASKED_LOGIT = -1e4  # far below any logit, yet finite, so masked positions get probability 0 without NaNs


def eval_batch_size(loop: TrainingLoop) -> int:
    """Rows per evaluation batch: at least 64, or where the loop trains in parts, the rows of a part at its maximum
    length (forward passes slow down with the batch's size too: the 5-layer QA student took 39 ms a 384-token window
    in batches of 64 and 21 ms in batches of 5, 2 Zen 4 cores, bf16)."""
    if loop.micro_batch_tokens is not None:
        return max(1, loop.micro_batch_tokens // loop.max_length)
    return max(64, loop.batch_size)


def training_arguments(loop: TrainingLoop, *, output_dir: str, seed: int, evaluate: bool = True) -> TrainingArguments:
    """The Trainer's arguments for a loop, shared by fine-tuning and compression runs; without ``evaluate`` the
    Trainer never evaluates (the task scores the model after training)."""
    return TrainingArguments(
        output_dir=output_dir,
        num_train_epochs=loop.epochs,
        learning_rate=loop.learning_rate,
        lr_scheduler_type=loop.lr_schedule,
        per_device_train_batch_size=loop.batch_size,
        per_device_eval_batch_size=eval_batch_size(loop),
        warmup_steps=loop.warmup_ratio,  # a float below 1 is a share of the steps
        weight_decay=loop.weight_decay,
        eval_strategy="steps" if evaluate else "no",
        eval_steps=loop.eval_steps,
        save_strategy="steps",
        save_steps=loop.save_steps,
        save_total_limit=2,
        logging_steps=50,
        train_sampling_strategy="group_by_length",
        report_to="none",
        seed=seed,
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),  # page-locked batches help only a copy to a GPU
        tf32=True if is_torch_tf32_available() else None,  # TF32 matmuls on GPUs that have them (Ampere on)
        bf16=loop.precision == "bf16",
        use_cpu=loop.precision == "bf16" and not torch.cuda.is_available(),  # transformers' CPU autocast needs it
    )


def freeze_embeddings(model: PreTrainedModel) -> int:
    """Stop gradients to the embedding layer; returns the number of frozen parameters."""
    frozen = 0
    for parameter in model.get_input_embeddings().parameters():
        parameter.requires_grad_(False)
        frozen += parameter.numel()
    base = getattr(model, model.base_model_prefix, model)
    embeddings = getattr(base, "embeddings", None)
    if embeddings is not None:
        for parameter in embeddings.parameters():
            if parameter.requires_grad:
                parameter.requires_grad_(False)
                frozen += parameter.numel()
    return frozen


def distillation_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """KL(teacher || student) on temperature-softened distributions, scaled by T^2."""
    student = F.log_softmax(student_logits / temperature, dim=-1)
    teacher = F.log_softmax(teacher_logits / temperature, dim=-1)
    return F.kl_div(student, teacher, log_target=True, reduction="batchmean") * temperature**2


@dataclass(frozen=True)
class EmbeddingTargets:
    """What a sentence-embedding student learns of its teacher's outputs besides the vectors.

    ``teacher_layers`` names the teacher layer each student layer started from (a student with dropped layers); None
    means the same index. Layer states need ``output_hidden_states`` from both models (`needs_hidden_states`).
    """

    loss: EmbeddingLoss = "cosine"
    token_states_weight: float = 0.0
    layer_states_weight: float = 0.0
    similarity_weight: float = 0.0
    similarity_temperature: float = 0.05
    teacher_layers: tuple[int, ...] | None = None

    @property
    def needs_hidden_states(self) -> bool:
        """Whether the loss reads every layer's token states."""
        return self.layer_states_weight > 0


def token_cosine_loss(student: torch.Tensor, teacher: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """1 - cosine similarity of each kept token's state [batch, sequence, hidden], averaged."""
    return (1.0 - F.cosine_similarity(student[kept], teacher[kept], dim=-1)).mean()


def layer_states_loss(
    student: tuple[torch.Tensor, ...], teacher: tuple[torch.Tensor, ...], kept: torch.Tensor,
    teacher_layers: tuple[int, ...] | None,
) -> torch.Tensor:
    """`token_cosine_loss` of every student layer's output against the output of the teacher layer it started from,
    averaged over the layers (the tuples are ``hidden_states``: the embeddings' output, then each layer's)."""
    layers = teacher_layers if teacher_layers is not None else tuple(range(len(student) - 1))
    if len(layers) != len(student) - 1 or max(layers) >= len(teacher) - 1:
        raise ValueError(f"{len(student) - 1} student layers cannot learn from teacher layers {list(layers)} "
                         f"of {len(teacher) - 1}")
    losses = [token_cosine_loss(student[position + 1], teacher[layer + 1], kept)
              for position, layer in enumerate(layers)]
    return torch.stack(losses).mean()


def similarity_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) of each text's softmax over its cosine similarities to the batch's other texts
    (vectors [batch, dim], a text's similarity to itself left out); 0 for a batch of one."""
    if len(student) < 2:
        return student.new_zeros(())
    itself = torch.eye(len(student), dtype=torch.bool, device=student.device)

    def similarities(vectors: torch.Tensor) -> torch.Tensor:
        unit = F.normalize(vectors.float(), dim=-1)
        return (unit @ unit.T / temperature).masked_fill(itself, MASKED_LOGIT)

    return distillation_loss(similarities(student), similarities(teacher), 1.0)


def embedding_distillation_loss(
    student: Any, teacher: Any, attention_mask: torch.Tensor, targets: EmbeddingTargets
) -> torch.Tensor:
    """Sentence vectors: 1 - cosine similarity of the served (pooled, maybe normalised) vectors, or the mean squared
    error of the pooled vectors before normalisation; plus, weighted, 1 - cosine similarity of every token's final
    state (padding left out), which gives the student a target per token rather than one per text, and of every
    layer's token states against its teacher layer's (the final layer's among them), a target per layer; and the
    in-batch similarities of the vectors (`similarity_loss`)."""
    if targets.loss == "mse":
        loss = F.mse_loss(student.pooled_embedding, teacher.pooled_embedding)
    else:
        loss = (1.0 - F.cosine_similarity(student.sentence_embedding, teacher.sentence_embedding, dim=-1)).mean()
    kept = attention_mask.bool()
    if targets.token_states_weight:
        loss = loss + targets.token_states_weight * token_cosine_loss(
            student.token_embeddings, teacher.token_embeddings, kept)
    if targets.layer_states_weight:
        loss = loss + targets.layer_states_weight * layer_states_loss(
            student.hidden_states, teacher.hidden_states, kept, targets.teacher_layers)
    if targets.similarity_weight:
        loss = loss + targets.similarity_weight * similarity_loss(
            student.sentence_embedding, teacher.sentence_embedding, targets.similarity_temperature)
    return loss


def output_distillation_loss(
    student: Any, teacher: Any, inputs: dict[str, torch.Tensor], temperature: float,
    embedding: EmbeddingTargets = EmbeddingTargets(),
) -> torch.Tensor:
    """Distillation between the student's and the teacher's outputs (ModelOutput objects) for any head.

    Sequence logits: one distribution per example. Question answering: the start and end distributions over the
    positions, padding masked out, averaged. Token classification: one distribution per labelled token; positions
    labelled -100 (padding, special tokens, later sub-tokens) are left out. Sentence embeddings: see
    `embedding_distillation_loss`.
    """
    if isinstance(student, SentenceEmbeddingOutput):
        return embedding_distillation_loss(student, teacher, inputs["attention_mask"], embedding)
    if isinstance(student, QuestionAnsweringModelOutput):
        padding = inputs["attention_mask"].eq(0)
        start, end = (
            distillation_loss(
                student[name].masked_fill(padding, MASKED_LOGIT), teacher[name].masked_fill(padding, MASKED_LOGIT),
                temperature,
            )
            for name in ("start_logits", "end_logits")
        )
        return (start + end) / 2
    if isinstance(student, TokenClassifierOutput):
        labels = inputs.get("labels")
        kept = labels.ne(IGNORED_LABEL) if labels is not None else inputs["attention_mask"].eq(1)
        return distillation_loss(student["logits"][kept], teacher["logits"][kept], temperature)
    return distillation_loss(student.logits, teacher.logits, temperature)


def precomputed_outputs(student: Any, logits: torch.Tensor) -> Any:
    """The teacher's precomputed logits in the shape of the student's outputs: for question answering, the start and
    end logits are the two columns of each token's row."""
    if isinstance(student, QuestionAnsweringModelOutput):
        return QuestionAnsweringModelOutput(start_logits=logits[..., 0], end_logits=logits[..., 1])
    if isinstance(student, TokenClassifierOutput):
        return TokenClassifierOutput(logits=logits)
    return SequenceClassifierOutput(logits=logits)


def with_teacher_logits(collate: Callable[[list[dict[str, Any]]], Any]) -> Callable[[list[dict[str, Any]]], Any]:
    """A collator that also batches the features' precomputed teacher logits: a row per sequence stacked, rows per
    token padded with zeros to the batch's padded length (padded positions are left out of the loss)."""

    def collate_with_logits(features: list[dict[str, Any]]) -> Any:
        if not features or TEACHER_LOGITS not in features[0]:
            return collate(features)
        rows = [np.asarray(feature[TEACHER_LOGITS], dtype=np.float32) for feature in features]
        batch = collate([{key: value for key, value in feature.items() if key != TEACHER_LOGITS}
                         for feature in features])
        if rows[0].ndim == 1:
            batch[TEACHER_LOGITS] = torch.from_numpy(np.stack(rows))
            return batch
        padded = np.zeros((len(rows), batch["input_ids"].shape[1], rows[0].shape[1]), dtype=np.float32)
        for index, row in enumerate(rows):
            padded[index, : len(row)] = row
        batch[TEACHER_LOGITS] = torch.from_numpy(padded)
        return batch

    return collate_with_logits


class SeededLengthGroupedSampler(Sampler[int]):
    """Length-grouped order (batches of similar lengths, little padding) drawn from (seed, epoch) alone.

    transformers' own length-grouped sampler draws from the global RNG, so a run resumed mid-epoch sees other
    batches than the uninterrupted run; this one gives both the same order.
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int) -> None:
        self.lengths, self.batch_size, self.seed = lengths, batch_size, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by the Trainer (through accelerate) at the start of every epoch."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))


class DistillationTrainer(Trainer):
    """A Trainer whose loss mixes the task loss with distillation from a frozen teacher.

    The teacher's outputs come from the ``teacher`` model run on each batch, or from the batch itself where its
    features carry ``teacher_logits`` (computed once before training, see `compression.stages.teacher`).
    ``hardness`` is the weight of the distillation term: 1.0 uses the teacher alone, 0.0 the labels alone; a model
    without a loss of its own (sentence embedding) learns from the teacher alone. Without either it is a plain
    Trainer. ``micro_batch_tokens`` runs each training batch in parts of rows (`compression.micro_batches`).
    """

    def __init__(
        self,
        *args: Any,
        teacher: PreTrainedModel | None = None,
        hardness: float = 1.0,
        temperature: float = 2.0,
        embedding: EmbeddingTargets = EmbeddingTargets(),
        micro_batch_tokens: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        use_steady_progress(self)
        self.teacher = teacher
        self.hardness = hardness
        self.temperature = temperature
        self.embedding = embedding
        self.micro_batch_tokens = micro_batch_tokens
        self._part_weight = 1.0  # the share of the batch's rows in the part being trained
        if teacher is not None:
            teacher.eval()
            teacher.requires_grad_(False)

    @property
    def _forward_options(self) -> dict[str, bool]:
        """Extra forward arguments of both models: every layer's states where the loss reads them."""
        return {"output_hidden_states": True} if self.embedding.needs_hidden_states else {}

    def _get_train_sampler(self, train_dataset: Dataset | None = None) -> Sampler | None:
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.args.train_sampling_strategy != "group_by_length" or dataset is None:
            return super()._get_train_sampler(train_dataset)
        lengths = [len(feature["input_ids"]) for feature in dataset]  # type: ignore[attr-defined,union-attr]
        batch = self.args.train_batch_size * self.args.gradient_accumulation_steps
        return SeededLengthGroupedSampler(lengths, batch, self.args.seed)

    def _get_eval_sampler(self, eval_dataset: Dataset) -> Sampler | None:
        """Evaluation in dataset order: the task metrics map prediction rows back to examples by position.

        (transformers' own choice under ``group_by_length`` shuffles evaluation batches too.)
        """
        if self.args.world_size > 1:
            return None  # accelerate shards the dataset in order
        return SequentialSampler(eval_dataset)  # type: ignore[arg-type]

    def _set_signature_columns_if_needed(self) -> None:
        """Keep the precomputed teacher logits in the batches (the model's forward does not take them)."""
        super()._set_signature_columns_if_needed()
        if self._signature_columns is not None and TEACHER_LOGITS not in self._signature_columns:
            self._signature_columns.append(TEACHER_LOGITS)

    def _teacher_outputs(self, inputs: dict[str, torch.Tensor], logits: torch.Tensor | None, student: Any) -> Any:
        """The teacher's outputs for the batch: its precomputed logits, or the teacher run on it (None: neither)."""
        if logits is not None:
            return precomputed_outputs(student, logits)
        if self.teacher is None:
            return None
        device = inputs["input_ids"].device
        if self.teacher.device != device:
            self.teacher.to(device)  # type: ignore[arg-type]  # transformers types Module.to too narrowly
        with torch.no_grad():
            return self.teacher(**inputs, **self._forward_options)

    def training_step(
        self, model: torch.nn.Module, inputs: dict[str, Any], num_items_in_batch: Any = None
    ) -> torch.Tensor:
        """One batch's forward and backward passes, in parts of at most ``micro_batch_tokens`` tokens; returns the
        batch's loss."""
        parts = split_rows(inputs, self.micro_batch_tokens)
        if len(parts) == 1:
            return super().training_step(model, inputs, num_items_in_batch)
        rows = row_count(inputs)
        losses = []
        try:
            for part in parts:
                self._part_weight = row_count(part) / rows
                losses.append(super().training_step(model, part, num_items_in_batch))
        finally:
            self._part_weight = 1.0
        return torch.stack(losses).sum()

    def compute_loss(  # type: ignore[override]
        self,
        model: torch.nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        precomputed = inputs.pop(TEACHER_LOGITS, None)
        outputs = model(**inputs, **self._forward_options)
        loss = outputs.loss
        teacher_outputs = (self._teacher_outputs(inputs, precomputed, outputs) if model.training or loss is None
                           else None)
        if teacher_outputs is not None:
            kd = output_distillation_loss(outputs, teacher_outputs, inputs, self.temperature, self.embedding)
            loss = kd if loss is None else self.hardness * kd + (1.0 - self.hardness) * loss
        if loss is None:
            raise ValueError(f"{type(model).__name__} has no loss of its own: it learns from a teacher")
        loss = loss * self._part_weight
        return (loss, outputs) if return_outputs else loss


def last_checkpoint(output_dir: str | Path) -> str | None:
    """The newest ``checkpoint-N`` folder in output_dir, to resume from, or None."""
    path = Path(output_dir)
    return get_last_checkpoint(str(path)) if path.is_dir() else None


TRAINER_BOOKKEEPING = ("loss", "runtime", "samples_per_second", "steps_per_second")


def validation_curve(trainer: Trainer) -> list[dict[str, float]]:
    """Every evaluation the Trainer logged (a resumed run's too), in order: step, epoch and the task metrics."""
    curve = []
    for entry in trainer.state.log_history:
        metrics = {key.removeprefix("eval_"): value for key, value in entry.items() if key.startswith("eval_")}
        if metrics:
            kept = {key: value for key, value in metrics.items() if key not in TRAINER_BOOKKEEPING}
            curve.append({"step": entry["step"], "epoch": round(entry.get("epoch", 0.0), 4), **kept})
    return curve


def final_evaluation(trainer: Trainer, resumed_from: str | None = None) -> dict[str, float] | None:
    """The task metrics of the evaluation the Trainer ran at its last step, without the ``eval_`` prefix (loss
    and timings left out), or None if it ran none there, or if it ran no step since ``resumed_from`` (the
    checkpoint it resumed: that evaluation is an earlier invocation's, maybe of other validation data).

    transformers evaluates at the end of step-based training, so this spares a second pass over the
    validation set (minutes for SQuAD on a CPU).
    """
    curve = validation_curve(trainer)
    if not curve or curve[-1]["step"] != trainer.state.global_step:
        return None
    if resumed_from is not None and trainer.state.global_step <= int(Path(resumed_from).name.split("-")[-1]):
        return None
    return {key: value for key, value in curve[-1].items() if key not in ("step", "epoch")}
