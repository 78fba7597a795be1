"""Shared training pieces: feature encoding, metrics and a Trainer with optional distillation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Sampler
from transformers import EvalPrediction, PreTrainedModel, PreTrainedTokenizerBase, Trainer
from transformers.trainer_pt_utils import get_length_grouped_indices
from transformers.trainer_utils import get_last_checkpoint

from compression.data import Example


def encode_examples(
    tokenizer: PreTrainedTokenizerBase,
    examples: list[Example],
    label_to_id: dict[str, int],
    max_length: int,
) -> list[dict[str, Any]]:
    """Tokenize examples (no padding: batches are padded dynamically) and attach label ids."""
    texts = [e.text for e in examples]
    pairs = [e.text_pair for e in examples]
    has_pairs = any(p is not None for p in pairs)
    if has_pairs and any(p is None for p in pairs):
        raise ValueError("some examples have a text pair and some do not")
    encoded = tokenizer(
        texts, pairs if has_pairs else None, truncation=True, max_length=max_length, padding=False
    )
    features = []
    for i, example in enumerate(examples):
        if example.label not in label_to_id:
            raise ValueError(f"label {example.label!r} is not one of {sorted(label_to_id)}")
        feature = {key: values[i] for key, values in encoded.items()}
        feature["labels"] = label_to_id[example.label]
        features.append(feature)
    return features


def accuracy_metrics(prediction: EvalPrediction) -> dict[str, float]:
    """Accuracy of argmax predictions."""
    logits = prediction.predictions
    if isinstance(logits, tuple):
        logits = logits[0]
    predicted = np.asarray(logits).argmax(axis=-1)
    return {"accuracy": float((predicted == np.asarray(prediction.label_ids)).mean())}


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

    ``hardness`` is the weight of the distillation term: 1.0 uses the teacher alone, 0.0 the labels alone.
    Without a teacher it is a plain Trainer.
    """

    def __init__(
        self,
        *args: Any,
        teacher: PreTrainedModel | None = None,
        hardness: float = 1.0,
        temperature: float = 2.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.teacher = teacher
        self.hardness = hardness
        self.temperature = temperature
        if teacher is not None:
            teacher.eval()
            teacher.requires_grad_(False)

    def _get_train_sampler(self, train_dataset: Dataset | None = None) -> Sampler | None:
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.args.train_sampling_strategy != "group_by_length" or dataset is None:
            return super()._get_train_sampler(train_dataset)
        lengths = [len(feature["input_ids"]) for feature in dataset]  # type: ignore[attr-defined,union-attr]
        batch = self.args.train_batch_size * self.args.gradient_accumulation_steps
        return SeededLengthGroupedSampler(lengths, batch, self.args.seed)

    def compute_loss(  # type: ignore[override]
        self,
        model: torch.nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        outputs = model(**inputs)
        loss = outputs.loss
        if self.teacher is not None and model.training:
            if self.teacher.device != outputs.logits.device:
                self.teacher.to(outputs.logits.device)
            with torch.no_grad():
                teacher_logits = self.teacher(**inputs).logits
            kd = distillation_loss(outputs.logits, teacher_logits, self.temperature)
            loss = self.hardness * kd + (1.0 - self.hardness) * loss
        return (loss, outputs) if return_outputs else loss


def last_checkpoint(output_dir: str | Path) -> str | None:
    """The newest ``checkpoint-N`` folder in output_dir, to resume from, or None."""
    path = Path(output_dir)
    return get_last_checkpoint(str(path)) if path.is_dir() else None
