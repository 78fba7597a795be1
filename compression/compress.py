"""`oberta compress`: oBERT pruning with distillation during fine-tuning, then INT8 and export, for any task.

The stages live in `compression.stages`; this module runs them in order. Run layout under ``output``:
``checkpoint-N/`` (Trainer checkpoints; a rerun resumes from the newest), ``trained/`` (the pruned PyTorch model)
with ``training_result.json`` (its metrics and build record), ``model.fp32.onnx`` and the served model directory
``model/``; with quantization-aware training also ``qat/``, ``qat-trained/`` (compression/stages/qat.py) and
``static-int8/`` (the static files of ``trained/``; each engine ships whichever file, QAT or static, scores higher
on validation). The training stage can run on a GPU machine and the export stage (INT8 with the deployment's own
onnx and ONNX Runtime) on the CPU machine.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel

from compression.run_clock import awake_seconds
from compression.stages.card import file_megabytes, write_card
from compression.stages.config import CompressConfig, Plan, Stage, plan
from compression.stages.evaluate import evaluate
from compression.stages.export import export
from compression.stages.prepare import Prepared, prepare
from compression.stages.qat import load_qat_model
from compression.stages.quantize import FP32_ONNX, quantize
from compression.stages.record import TRAINED, TrainingResult
from compression.stages.train import Trained, train
from compression.tasks import task_for
from service.runtime.card import ModelCard

log = logging.getLogger(__name__)
STATIC_COMPARISON = "static-int8"
"""Where a quantization-aware run writes the static INT8 files of its model before QAT, to compare with."""
__all__ = ["CompressConfig", "Stage", "compress", "export_trained"]


def compress(config: CompressConfig) -> ModelCard | None:
    """Run the configured stages; returns the served model's card, or None after the training stage alone.

    ``train`` prunes with distillation and saves ``trained/`` with ``training_result.json``; ``export``
    quantizes, exports and evaluates a ``trained/`` model (say, one trained on a GPU machine); ``all`` does both.
    """
    if config.threads:
        torch.set_num_threads(config.threads)
    settings = plan(config)
    if config.stage == "export":
        return export_trained(config, settings)
    trained = train(config, settings)
    return export_trained(config, settings, trained) if config.stage == "all" else None


def export_trained(config: CompressConfig, settings: Plan, trained: Trained | None = None) -> ModelCard:
    """Export, quantize and evaluate the ``trained/`` model of a finished training stage; returns its card.

    ``trained`` comes from a training stage in the same run; without it ``trained/`` is loaded and the data
    prepared again, and the record notes this stage's command and quantization settings.
    """
    started = awake_seconds()
    output = Path(config.output_dir)
    recipe = settings.recipe
    if trained is None:
        result = TrainingResult.load(output)
        student = task_for(settings.data.task).load_model(str(output / TRAINED))
        prepared = prepare(settings.data, str(output / TRAINED), student)
        record = result.build.model_copy(update={
            "validation": result.build.validation or prepared.data.record,
            "export_command": config.command,
            "export_overrides": settings.overrides or None,
            "recipe_settings": {**result.build.recipe_settings,
                                "quantization": recipe.quantization.model_dump(mode="json")},
        })
    else:
        result, student, prepared, record = trained.result, trained.student, trained.prepared, trained.result.build

    model_dir = Path(config.model_dir) if config.model_dir else output / "model"
    quantization = recipe.quantization
    metrics = dict(result.metrics)
    qat = None
    if quantization.method == "qat":
        qat = trained.qat if trained is not None and trained.qat is not None else load_qat_model(output, prepared)
        _static_int8(student, prepared, settings, output / STATIC_COMPARISON, config.name)
    card = export(qat.student if qat else student, prepared, settings.data, model_dir, config.name)
    record = record.model_copy(update=card.build)  # the export's parity and opset
    files = {str(engine): name for engine, name in card.files.items()}
    precision = card.precision
    if quantization.method != "none":
        files = quantize(model_dir, output, prepared, quantization, settings.data.seed,
                         qat.activation_ranges if qat else None)
        precision = "int8"
        kind = "qat_int8" if qat else "int8"
        graphs = {f"{kind}_{engine}_graph": model_dir / name for engine, name in files.items()}
        metrics.update(evaluate({**graphs, "fp32_onnx": output / FP32_ONNX}, prepared))
        record = record.model_copy(update={"quantization": quantization.model_dump(mode="json")})
    if qat:
        static = output / STATIC_COMPARISON
        metrics.update(evaluate({f"static_int8_{engine}_graph": static / name for engine, name in files.items()},
                                prepared))
        shipped = _ship_the_better(model_dir, static, files, metrics, prepared.task.metric)
        record = record.model_copy(update={"qat": {**(record.qat or {}), "shipped": shipped}})
    record = record.model_copy(update={
        "file_megabytes": file_megabytes(model_dir, files),
        "export_wall_clock_seconds": round(awake_seconds() - started),
    })
    return write_card(card, model_dir, output, files=files, precision=precision, metrics=metrics, record=record)


def _static_int8(student: PreTrainedModel, prepared: Prepared, settings: Plan, folder: Path, name: str) -> None:
    """The static INT8 files of the model before quantization-aware training, written into ``folder``."""
    export(student, prepared, settings.data, folder, name)
    quantize(folder, folder, prepared, settings.recipe.quantization, settings.data.seed)


def _ship_the_better(
    model_dir: Path, static: Path, files: dict[str, str], metrics: dict[str, Any], metric: str
) -> dict[str, str]:
    """Per engine, keep the QAT file unless the static file of the model before QAT scores higher on the task's
    metric, and then put that in its place (static is the fallback). ``int8_<engine>_graph_*`` become the shipped
    file's metrics, beside ``qat_int8_*`` and ``static_int8_*``; returns which kind each engine ships."""
    shipped = {}
    for engine, name in files.items():
        scores = {kind: metrics[f"{kind}_int8_{engine}_graph_{metric}"] for kind in ("qat", "static")}
        kind = "qat" if scores["qat"] >= scores["static"] else "static"
        if kind == "static":
            shutil.copyfile(static / name, model_dir / name)
        prefix = f"{kind}_int8_{engine}_graph_"
        metrics.update({f"int8_{engine}_graph_{key.removeprefix(prefix)}": value
                        for key, value in list(metrics.items()) if key.startswith(prefix)})
        shipped[engine] = kind
    return shipped
