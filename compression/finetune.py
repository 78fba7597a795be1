"""`oberta finetune`: fine-tune a dense encoder (the teacher) for classification, question answering or NER."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, TrainingArguments
from transformers.utils import is_torch_tf32_available

from compression.base_models import DEFAULT_BASE_MODEL, resolve_base_model
from compression.export import model_input_names
from compression.tasks import DataConfig, task_for
from compression.training import DistillationTrainer, final_evaluation, freeze_embeddings, last_checkpoint

log = logging.getLogger(__name__)
TRAINING_INFO = "oberta_training.json"


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
        tf32=True if is_torch_tf32_available() else None,  # TF32 matmuls on GPUs that have them (Ampere on)
    )


def finetune(config: FinetuneConfig) -> dict[str, Any]:
    """Fine-tune, resume from the last checkpoint if one exists, save the final model; return metrics."""
    if config.threads:
        torch.set_num_threads(config.threads)
    task = task_for(config.data.task)
    data = task.prepare(config.data)
    base_path = resolve_base_model(config.model)
    tokenizer = AutoTokenizer.from_pretrained(base_path)
    model = task.new_model(base_path, data)
    if config.freeze_embeddings:
        log.info("froze %d embedding parameters", freeze_embeddings(model))
    input_names = model_input_names(model)
    train_features = task.features(tokenizer, data.train, data, config.data, input_names)
    evaluation = task.evaluation(tokenizer, data.validation, data, config.data, input_names)
    args = training_arguments(
        config.output_dir, config.epochs, config.learning_rate, config.batch_size,
        config.warmup_ratio, config.weight_decay, config.eval_steps, config.save_steps, config.data.seed,
    )
    trainer = DistillationTrainer(
        model=model,
        args=args,
        train_dataset=train_features,
        eval_dataset=evaluation.features,
        data_collator=task.collator(tokenizer),
        compute_metrics=evaluation.trainer_metrics,
    )
    trainer.train(resume_from_checkpoint=last_checkpoint(config.output_dir))
    metrics = final_evaluation(trainer) or trainer.evaluate()
    final_dir = Path(config.output_dir) / "final"
    trainer.save_model(str(final_dir))
    tokenizer.save_pretrained(str(final_dir))
    info = {
        "task": task.name,
        "base_model": config.model,
        "labels": data.display_labels,
        "data": asdict(config.data),
        "train_examples": len(data.train),
        "train_features": len(train_features),
        "validation_examples": len(data.validation),
        "validation_metrics": {k.removeprefix("eval_"): v for k, v in metrics.items()},
        "settings": {k: v for k, v in asdict(config).items() if k != "data"},
    }
    (final_dir / TRAINING_INFO).write_text(json.dumps(info, indent=2))
    log.info("validation metrics: %s", info["validation_metrics"])
    return info
