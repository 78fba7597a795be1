"""`oberta finetune`: fine-tune a dense encoder (the teacher) for classification, question answering or NER."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer

from compression.base_models import DEFAULT_BASE_MODEL, loading_from, resolve_base_model
from compression.export import model_input_names
from compression.interruption import train_resumably
from compression.micro_batches import check_micro_batches
from compression.precision import runnable_precision
from compression.run_clock import TRAINING_STAGE, RunClock, time_training
from compression.tasks import DataConfig, task_for
from compression.training import (
    DistillationTrainer,
    final_evaluation,
    freeze_embeddings,
    last_checkpoint,
    training_arguments,
    validation_curve,
)
from compression.training_loop import TrainingLoop, finetune_loop
from service.runtime.errors import ConfigError

log = logging.getLogger(__name__)
TRAINING_INFO = "oberta_training.json"


@dataclass(frozen=True)
class FinetuneConfig:
    """Settings of a dense fine-tuning run; the loop's ``max_length`` is the one the features are cut to."""

    data: DataConfig
    output_dir: str
    model: str = DEFAULT_BASE_MODEL
    loop: TrainingLoop = field(default_factory=finetune_loop)
    threads: int | None = None


def finetune(config: FinetuneConfig) -> dict[str, Any]:
    """Fine-tune, resume from the last checkpoint if one exists, save the final model; return metrics."""
    if config.threads:
        torch.set_num_threads(config.threads)
    loop = config.loop.model_copy(update={"precision": runnable_precision(config.loop.precision)})
    data_config = replace(config.data, max_length=loop.max_length)
    task = task_for(data_config.task)
    if task.needs_teacher:
        raise ConfigError(f"{task.name} learns from a teacher, not from labels: use `oberta compress`, where the "
                          "dense model teaches")
    check_micro_batches(task.name, task.loss_averages_examples, loop.micro_batch_tokens)
    data = task.prepare(data_config)
    base_path = resolve_base_model(config.model)
    with loading_from(base_path):
        tokenizer = AutoTokenizer.from_pretrained(base_path)
    model = task.new_model(base_path, data)
    if loop.freeze_embeddings:
        log.info("froze %d embedding parameters", freeze_embeddings(model))
    input_names = model_input_names(model)
    train_features = task.features(tokenizer, data.train, data, data_config, input_names)
    evaluation = task.evaluation(tokenizer, data.validation, data, data_config, input_names)
    trainer = DistillationTrainer(
        model=model,
        args=training_arguments(loop, output_dir=config.output_dir, seed=data_config.seed),
        train_dataset=train_features,
        eval_dataset=evaluation.features,
        data_collator=task.collator(tokenizer),
        compute_metrics=evaluation.trainer_metrics,
        micro_batch_tokens=loop.micro_batch_tokens,
    )
    resume = last_checkpoint(config.output_dir)
    clock = RunClock(config.output_dir)
    time_training(trainer, clock, TRAINING_STAGE, resumed=resume is not None)
    train_resumably(trainer, resume)
    metrics = final_evaluation(trainer, resume) or trainer.evaluate()
    final_dir = Path(config.output_dir) / "final"
    trainer.save_model(str(final_dir))
    tokenizer.save_pretrained(str(final_dir))
    info = {
        "task": task.name,
        "base_model": config.model,
        "labels": data.display_labels,
        "data": asdict(data_config),
        "train_examples": len(data.train),
        "train_features": len(train_features),
        "validation_examples": len(data.validation),
        "validation": data.record.model_dump(mode="json", exclude_none=True),
        "validation_metrics": {k.removeprefix("eval_"): v for k, v in metrics.items()},
        "validation_curve": validation_curve(trainer),
        "training_device": str(trainer.args.device),
        "wall_clock": clock.record(),
        "settings": {"model": config.model, "output_dir": config.output_dir, "threads": config.threads,
                     **loop.model_dump(mode="json")},
    }
    (final_dir / TRAINING_INFO).write_text(json.dumps(info, indent=2))
    log.info("validation metrics: %s", info["validation_metrics"])
    return info
