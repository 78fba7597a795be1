"""`oberta finetune`: fine-tune a dense encoder for text classification (the teacher)."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    PreTrainedModel,
    TrainingArguments,
)

from compression.base_models import DEFAULT_BASE_MODEL, resolve_base_model
from compression.data import Example, label_names, load_examples, split_validation
from compression.training import (
    DistillationTrainer,
    accuracy_metrics,
    encode_examples,
    freeze_embeddings,
    last_checkpoint,
)

log = logging.getLogger(__name__)
TRAINING_INFO = "oberta_training.json"


@dataclass
class DataConfig:
    """Where the examples come from and how validation is carved."""

    train_file: str
    validation_file: str | None = None
    validation_fraction: float = 0.05
    seed: int = 42
    text_column: str | None = None
    text_pair_column: str | None = None
    label_column: str | None = None
    label_names: list[str] | None = None
    max_train_examples: int | None = None
    max_length: int = 128


@dataclass
class FinetuneConfig:
    """Settings of a dense fine-tuning run."""

    data: DataConfig
    output_dir: str
    model: str = DEFAULT_BASE_MODEL
    epochs: float = 2.0
    learning_rate: float = 5e-5
    batch_size: int = 32
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    freeze_embeddings: bool = True
    eval_steps: int = 500
    save_steps: int = 500
    threads: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class PreparedData:
    """Train and validation examples with the label mapping."""

    train: list[Example]
    validation: list[Example]
    labels: list[str]
    display_labels: list[str]


def prepare_data(config: DataConfig) -> PreparedData:
    """Load the training file, carve or load validation, and fix the label order."""
    examples = load_examples(
        config.train_file, config.text_column, config.text_pair_column, config.label_column
    )
    if config.validation_file:
        train = examples
        validation = load_examples(
            config.validation_file, config.text_column, config.text_pair_column, config.label_column
        )
    else:
        train, validation = split_validation(examples, config.validation_fraction, config.seed)
    if config.max_train_examples is not None:
        train = train[: config.max_train_examples]
    labels = label_names(train + validation)
    display = config.label_names or labels
    if len(display) != len(labels):
        raise ValueError(f"--label-names gives {len(display)} names for {len(labels)} labels {labels}")
    return PreparedData(train, validation, labels, list(display))


def training_arguments(
    output_dir: str, epochs: float, learning_rate: float, batch_size: int, warmup_ratio: float,
    weight_decay: float, eval_steps: int, save_steps: int, seed: int,
) -> TrainingArguments:
    """TrainingArguments shared by fine-tuning and compression runs."""
    return TrainingArguments(
        output_dir=output_dir,
        num_train_epochs=epochs,
        learning_rate=learning_rate,
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=max(64, batch_size),
        warmup_steps=warmup_ratio,
        weight_decay=weight_decay,
        eval_strategy="steps",
        eval_steps=eval_steps,
        save_strategy="steps",
        save_steps=save_steps,
        save_total_limit=2,
        logging_steps=50,
        train_sampling_strategy="group_by_length",
        report_to="none",
        seed=seed,
        dataloader_num_workers=0,
    )


def load_classifier(model_name: str, data: PreparedData) -> PreTrainedModel:
    """A sequence classifier from a base encoder, with label names from the data."""
    id2label = dict(enumerate(data.display_labels))
    return AutoModelForSequenceClassification.from_pretrained(
        resolve_base_model(model_name),
        num_labels=len(data.labels),
        id2label=id2label,
        label2id={v: k for k, v in id2label.items()},
        attn_implementation="eager",
    )


def finetune(config: FinetuneConfig) -> dict[str, Any]:
    """Fine-tune, resume from the last checkpoint if one exists, save the final model; return metrics."""
    if config.threads:
        torch.set_num_threads(config.threads)
    data = prepare_data(config.data)
    base_path = resolve_base_model(config.model)
    tokenizer = AutoTokenizer.from_pretrained(base_path)
    model = load_classifier(config.model, data)
    if config.freeze_embeddings:
        log.info("froze %d embedding parameters", freeze_embeddings(model))
    label_to_id = {label: i for i, label in enumerate(data.labels)}
    train_features = encode_examples(tokenizer, data.train, label_to_id, config.data.max_length)
    eval_features = encode_examples(tokenizer, data.validation, label_to_id, config.data.max_length)
    args = training_arguments(
        config.output_dir, config.epochs, config.learning_rate, config.batch_size,
        config.warmup_ratio, config.weight_decay, config.eval_steps, config.save_steps, config.data.seed,
    )
    trainer = DistillationTrainer(
        model=model,
        args=args,
        train_dataset=train_features,
        eval_dataset=eval_features,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=accuracy_metrics,
    )
    trainer.train(resume_from_checkpoint=last_checkpoint(config.output_dir))
    metrics = trainer.evaluate()
    final_dir = Path(config.output_dir) / "final"
    trainer.save_model(str(final_dir))
    tokenizer.save_pretrained(str(final_dir))
    info = {
        "base_model": config.model,
        "labels": data.display_labels,
        "data": asdict(config.data),
        "train_examples": len(data.train),
        "validation_examples": len(data.validation),
        "validation_metrics": {k.removeprefix("eval_"): v for k, v in metrics.items()},
        "settings": {k: v for k, v in asdict(config).items() if k != "data"},
    }
    (final_dir / TRAINING_INFO).write_text(json.dumps(info, indent=2))
    log.info("validation metrics: %s", info["validation_metrics"])
    return info
