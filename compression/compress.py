"""`oberta compress`: oBERT pruning with distillation during fine-tuning, then INT8 and export.

Run layout under ``output``: ``checkpoint-N/`` (Trainer checkpoints; a rerun resumes from the newest),
``trained/`` (the pruned PyTorch model), ``model.fp32.onnx`` and the served model directory ``model/``.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, PreTrainedModel

from compression.base_models import resolve_base_model
from compression.evaluate import batches, onnx_accuracy, torch_accuracy
from compression.export import export_model_dir, model_input_names
from compression.finetune import DataConfig, PreparedData, prepare_data, training_arguments
from compression.pruning.callback import GradientSampler, PruningCallback
from compression.pruning.pruner import ENCODER_LINEARS, Pruner, find_layers
from compression.quantize import quantize_model_dir, weight_sparsity
from compression.recipe import Recipe
from compression.training import DistillationTrainer, accuracy_metrics, encode_examples, freeze_embeddings
from compression.training import last_checkpoint as find_last_checkpoint
from service.card import ModelCard, load_card, save_card

log = logging.getLogger(__name__)
FP32_ONNX = "model.fp32.onnx"


@dataclass
class CompressConfig:
    """What to compress, with which recipe, and where to put it."""

    recipe: Recipe
    recipe_source: str
    model: str
    data: DataConfig
    output_dir: str
    name: str
    teacher: str | None = None
    model_dir: str | None = None
    threads: int | None = None
    command: str = ""


def _load(path: str) -> PreTrainedModel:
    return AutoModelForSequenceClassification.from_pretrained(resolve_base_model(path), attn_implementation="eager")


def _check_labels(model: PreTrainedModel, data: PreparedData, role: str) -> None:
    if model.config.num_labels != len(data.labels):
        raise ValueError(f"the {role} has {model.config.num_labels} labels but the data has {len(data.labels)}")


def _build_trainer(
    config: CompressConfig, student: PreTrainedModel, teacher: PreTrainedModel | None, tokenizer: Any,
    train: list[dict[str, Any]], validation: list[dict[str, Any]],
) -> tuple[DistillationTrainer, PruningCallback]:
    recipe = config.recipe
    training, pruning = recipe.training, recipe.pruning
    args = training_arguments(
        config.output_dir, training.epochs, training.learning_rate, training.batch_size, training.warmup_ratio,
        training.weight_decay, training.eval_steps, training.save_steps, config.data.seed,
    )
    args.lr_scheduler_type = training.lr_schedule  # type: ignore[assignment]
    collator = DataCollatorWithPadding(tokenizer)
    pruner = Pruner(
        find_layers(student, pruning.modules or (ENCODER_LINEARS,)),
        scorer=pruning.scorer, group=pruning.group, scope=pruning.scope,
        block_size=pruning.obs.block_size, damp=pruning.obs.damp,
    )
    trainer = DistillationTrainer(
        model=student, args=args, train_dataset=train, eval_dataset=validation, data_collator=collator,
        compute_metrics=accuracy_metrics, teacher=teacher,
        hardness=recipe.distillation.hardness if teacher is not None else 0.0,
        temperature=recipe.distillation.temperature,
    )

    def samplers(seed: int) -> GradientSampler:
        return GradientSampler(
            student, pruner, lambda m, b: trainer.compute_loss(m, b), train, collator,
            pruning.obs.grad_batch_size, pruning.obs.num_grads, config.data.seed * 1_000_003 + seed,
        )

    callback = PruningCallback(pruner, pruning, samplers if pruning.scorer == "obs" else None)
    trainer.add_callback(callback)
    return trainer, callback


def compress(config: CompressConfig) -> ModelCard:
    """Prune with distillation, quantize, export and evaluate; returns the served model's card."""
    started = time.time()
    if config.threads:
        torch.set_num_threads(config.threads)
    recipe = config.recipe
    config.data.max_length = recipe.training.max_length
    data = prepare_data(config.data)
    tokenizer = AutoTokenizer.from_pretrained(resolve_base_model(config.model))
    student = _load(config.model)
    _check_labels(student, data, "model")
    teacher_path = config.teacher or recipe.distillation.teacher
    teacher = _load(teacher_path) if teacher_path else None
    if teacher is not None:
        _check_labels(teacher, data, "teacher")
    if recipe.training.freeze_embeddings:
        freeze_embeddings(student)
    label_to_id = {label: i for i, label in enumerate(data.labels)}
    train = encode_examples(tokenizer, data.train, label_to_id, recipe.training.max_length)
    validation = encode_examples(tokenizer, data.validation, label_to_id, recipe.training.max_length)
    input_names = model_input_names(student)
    pad_id = tokenizer.pad_token_id or 0

    trainer, callback = _build_trainer(config, student, teacher, tokenizer, train, validation)
    trainer.train(resume_from_checkpoint=find_last_checkpoint(config.output_dir))
    callback.pruner.remove_hooks()
    output = Path(config.output_dir)
    trained_dir = output / "trained"
    trainer.save_model(str(trained_dir))
    tokenizer.save_pretrained(str(trained_dir))

    metrics: dict[str, Any] = {
        "validation_examples": len(validation),
        "student_fp32_accuracy": torch_accuracy(student, validation, input_names, pad_id),
    }
    if teacher is not None:
        metrics["teacher_accuracy"] = torch_accuracy(teacher, validation, input_names, pad_id)
    build = {
        "command": config.command,
        "recipe": config.recipe_source,
        "recipe_settings": recipe.model_dump(mode="json"),
        "model": config.model,
        "teacher": teacher_path,
        "data": asdict(config.data),
        "train_examples": len(train),
        "pruning_history": callback.history,
        "pytorch_sparsity": callback.pruner.sparsity(),
    }
    model_dir = Path(config.model_dir) if config.model_dir else output / "model"
    card = export_model_dir(student, tokenizer, model_dir, config.name, recipe.training.max_length, metrics, build)
    if recipe.quantization.method == "static":
        card = _quantize(card, model_dir, output, train, validation, input_names, pad_id, recipe)
    card.sparsity = float(weight_sparsity(model_dir / card.files["deepsparse"])["sparsity"])
    card.build["wall_clock_seconds"] = round(time.time() - started)
    save_card(card, model_dir)
    (output / "compress_result.json").write_text(json.dumps(card.model_dump(mode="json"), indent=2))
    return load_card(model_dir)


def _quantize(
    card: ModelCard, model_dir: Path, output: Path, train: list[dict[str, Any]], validation: list[dict[str, Any]],
    input_names: list[str], pad_id: int, recipe: Recipe,
) -> ModelCard:
    """Replace the FP32 ONNX in model_dir with per-engine INT8 files and record their accuracy."""
    fp32_path = output / FP32_ONNX
    shutil.move(str(model_dir / "model.onnx"), fp32_path)
    calibration = batches(train[: recipe.quantization.calibration_samples], input_names, 16, pad_id)
    card.files = quantize_model_dir(fp32_path, model_dir, calibration, recipe.quantization.calibration_method)  # type: ignore[assignment]
    card.precision = "int8"
    for engine, name in card.files.items():
        card.metrics[f"int8_{engine}_graph_accuracy"] = onnx_accuracy(model_dir / name, validation, input_names, pad_id)
    card.metrics["fp32_onnx_accuracy"] = onnx_accuracy(fp32_path, validation, input_names, pad_id)
    card.build["quantization"] = recipe.quantization.model_dump(mode="json")
    return card
