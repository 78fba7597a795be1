"""`oberta compress`: oBERT pruning with distillation during fine-tuning, then INT8 and export, for any task.

Run layout under ``output``: ``checkpoint-N/`` (Trainer checkpoints; a rerun resumes from the newest),
``trained/`` (the pruned PyTorch model) with ``training_result.json`` (its metrics and build record),
``model.fp32.onnx`` and the served model directory ``model/``. The training stage can run on a GPU machine and
the export stage (INT8 with the deployment's own onnx and ONNX Runtime) on the CPU machine.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from transformers import AutoTokenizer, PreTrainedModel

from compression.base_models import resolve_base_model
from compression.evaluate import batches, onnx_rows, torch_rows
from compression.export import export_model_dir, model_input_names
from compression.finetune import training_arguments
from compression.pruning.callback import GradientSampler, PruningCallback
from compression.pruning.pruner import ENCODER_LINEARS, Pruner, find_layers
from compression.quantize import quantize_model_dir, weight_sparsity
from compression.recipe import Recipe
from compression.tasks import CompressionTask, DataConfig, Evaluation, PreparedData, task_for
from compression.training import DistillationTrainer, final_evaluation, freeze_embeddings
from compression.training import last_checkpoint as find_last_checkpoint
from service.runtime.card import ModelCard, load_card, save_card

log = logging.getLogger(__name__)
FP32_ONNX = "model.fp32.onnx"
TRAINED = "trained"
TRAINING_RESULT = "training_result.json"
Stage = Literal["all", "train", "export"]


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
    stage: Stage = "all"


def _prefixed(prefix: str, metrics: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}_{name}": value for name, value in metrics.items()}


def _build_trainer(
    config: CompressConfig, task: CompressionTask, student: PreTrainedModel, teacher: PreTrainedModel | None,
    tokenizer: Any, train: list[dict[str, Any]], evaluation: Evaluation,
) -> tuple[DistillationTrainer, PruningCallback]:
    recipe = config.recipe
    training, pruning = recipe.training, recipe.pruning
    args = training_arguments(
        config.output_dir, training.epochs, training.learning_rate, training.batch_size, training.warmup_ratio,
        training.weight_decay, training.eval_steps, training.save_steps, config.data.seed,
    )
    args.lr_scheduler_type = training.lr_schedule  # type: ignore[assignment]
    collator = task.collator(tokenizer)
    pruner = Pruner(
        find_layers(student, pruning.modules or (ENCODER_LINEARS,)),
        scorer=pruning.scorer, group=pruning.group, scope=pruning.scope,
        block_size=pruning.obs.block_size, damp=pruning.obs.damp,
    )
    trainer = DistillationTrainer(
        model=student, args=args, train_dataset=train, eval_dataset=evaluation.features, data_collator=collator,
        compute_metrics=evaluation.trainer_metrics, teacher=teacher,
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


@dataclass
class _Prepared:
    """Task, data and features of a run, shared by the training and export stages."""

    task: CompressionTask
    data: PreparedData
    tokenizer: Any
    train: list[dict[str, Any]]
    evaluation: Evaluation
    input_names: list[str]
    pad_id: int


def _prepare(config: CompressConfig, tokenizer_path: str, model: PreTrainedModel) -> _Prepared:
    config.data.max_length = config.recipe.training.max_length
    task = task_for(config.data.task)
    data = task.prepare(config.data)
    task.check_model(model, data, "model")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    input_names = model_input_names(model)
    train = task.features(tokenizer, data.train, data, config.data, input_names)
    evaluation = task.evaluation(tokenizer, data.validation, data, config.data, input_names)
    return _Prepared(task, data, tokenizer, train, evaluation, input_names, tokenizer.pad_token_id or 0)


def _score(prepared: _Prepared, model: PreTrainedModel) -> dict[str, float]:
    rows = torch_rows(model, prepared.evaluation.features, prepared.input_names, prepared.task.output_names,
                      prepared.pad_id)
    return prepared.evaluation.score(rows)


def compress(config: CompressConfig) -> ModelCard | None:
    """Run the configured stages; returns the served model's card, or None after the training stage alone.

    ``train`` prunes with distillation and saves ``trained/`` with ``training_result.json``; ``export``
    quantizes, exports and evaluates a ``trained/`` model (say, one trained on a GPU machine); ``all`` does both.
    """
    if config.threads:
        torch.set_num_threads(config.threads)
    if config.stage == "export":
        return export_student(config)
    student, prepared = train_student(config)
    return export_student(config, student, prepared) if config.stage == "all" else None


def train_student(config: CompressConfig) -> tuple[PreTrainedModel, _Prepared]:
    """Prune with distillation (resuming from the newest checkpoint), save ``trained/`` and the training result;
    returns the trained student and the prepared data, for an export in the same run."""
    started = time.time()
    recipe = config.recipe
    task = task_for(config.data.task)
    student = task.load_model(resolve_base_model(config.model))
    prepared = _prepare(config, resolve_base_model(config.model), student)
    teacher_path = config.teacher or recipe.distillation.teacher
    teacher = task.load_model(resolve_base_model(teacher_path)) if teacher_path else None
    if teacher is not None:
        task.check_model(teacher, prepared.data, "teacher")
    if recipe.training.freeze_embeddings:
        freeze_embeddings(student)

    trainer, callback = _build_trainer(
        config, task, student, teacher, prepared.tokenizer, prepared.train, prepared.evaluation
    )
    trainer.train(resume_from_checkpoint=find_last_checkpoint(config.output_dir))
    callback.pruner.remove_hooks()
    output = Path(config.output_dir)
    trained_dir = output / TRAINED
    trainer.save_model(str(trained_dir))
    prepared.tokenizer.save_pretrained(str(trained_dir))

    scores = final_evaluation(trainer) or _score(prepared, student)
    metrics: dict[str, Any] = {"validation_examples": len(prepared.data.validation),
                               **_prefixed("student_fp32", scores)}
    if teacher is not None:
        metrics.update(_prefixed("teacher", _score(prepared, teacher)))
    build = {
        "command": config.command,
        "recipe": config.recipe_source,
        "recipe_settings": recipe.model_dump(mode="json"),
        "model": config.model,
        "teacher": teacher_path,
        "data": asdict(config.data),
        "train_examples": len(prepared.data.train),
        "train_features": len(prepared.train),
        "pruning_history": callback.history,
        "pytorch_sparsity": callback.pruner.sparsity(),
        "training_device": str(student.device),
        "training_wall_clock_seconds": round(time.time() - started),
    }
    (output / TRAINING_RESULT).write_text(json.dumps({"metrics": metrics, "build": build}, indent=2))
    return student, prepared


def export_student(
    config: CompressConfig, student: PreTrainedModel | None = None, prepared: _Prepared | None = None
) -> ModelCard:
    """Export, quantize and evaluate the ``trained/`` model of a finished training stage; returns its card.

    ``student`` and ``prepared`` come from a training stage in the same run; without them ``trained/`` is loaded
    and the data prepared again.
    """
    started = time.time()
    output = Path(config.output_dir)
    trained_dir, result_path = output / TRAINED, output / TRAINING_RESULT
    if not result_path.is_file() or not trained_dir.is_dir():
        raise FileNotFoundError(f"{output} holds no finished training stage ({TRAINED}/ and {TRAINING_RESULT}): "
                                "run `oberta compress` with --stage train (or all) first")
    result = json.loads(result_path.read_text())
    recipe = config.recipe
    task = task_for(config.data.task)
    if student is None or prepared is None:
        student = task.load_model(str(trained_dir))
        prepared = _prepare(config, str(trained_dir), student)
    metrics, build = result["metrics"], result["build"]
    if config.stage == "export":  # quantization happens in this stage: record the settings it used
        build["export_command"] = config.command
        build["recipe_settings"]["quantization"] = recipe.quantization.model_dump(mode="json")
    model_dir = Path(config.model_dir) if config.model_dir else output / "model"
    card = export_model_dir(
        student, prepared.tokenizer, model_dir, config.name, recipe.training.max_length, metrics, build,
        task=task.name, task_settings=config.data.task_settings,
    )
    if recipe.quantization.method == "static":
        card = _quantize(card, model_dir, output, prepared, recipe, config.data.seed)
    card.sparsity = float(weight_sparsity(model_dir / card.files["deepsparse"])["sparsity"])
    card.build["file_megabytes"] = {name: round((model_dir / name).stat().st_size / 1e6, 2)
                                    for name in sorted(set(card.files.values()))}
    card.build["export_wall_clock_seconds"] = round(time.time() - started)
    save_card(card, model_dir)
    (output / "compress_result.json").write_text(json.dumps(card.model_dump(mode="json"), indent=2))
    return load_card(model_dir)


def _quantize(card: ModelCard, model_dir: Path, output: Path, prepared: _Prepared, recipe: Recipe,
              seed: int) -> ModelCard:
    """Replace the FP32 ONNX in model_dir with per-engine INT8 files and record their metrics.

    Calibration uses a seeded random sample of the training features, all padded to one length.
    """
    fp32_path = output / FP32_ONNX
    shutil.move(str(model_dir / "model.onnx"), fp32_path)
    quantization = recipe.quantization
    train, input_names, pad_id = prepared.train, prepared.input_names, prepared.pad_id
    sample = random.Random(seed).sample(train, min(quantization.calibration_samples, len(train)))
    length = max(len(f["input_ids"]) for f in sample)  # one shape: the histogram calibrators need it
    calibration = batches(sample, input_names, 16, pad_id, length)
    card.files = quantize_model_dir(fp32_path, model_dir, calibration, quantization)  # type: ignore[assignment]
    card.precision = "int8"
    evaluation = prepared.evaluation
    for engine, name in card.files.items():
        rows = onnx_rows(model_dir / name, evaluation.features, input_names, pad_id)
        card.metrics.update(_prefixed(f"int8_{engine}_graph", evaluation.score(rows)))
    fp32_rows = onnx_rows(fp32_path, evaluation.features, input_names, pad_id)
    card.metrics.update(_prefixed("fp32_onnx", evaluation.score(fp32_rows)))
    card.build["quantization"] = recipe.quantization.model_dump(mode="json")
    return card
