"""`oberta evaluate`: the engine files of a served model directory scored on its task's validation data.

The card gives the task, the file of each engine, the inputs, the sequence length and the task's settings; the data
are read, carved and encoded as `oberta compress` does (same flags, same seed), so a model is scored on the split its
build was scored on. Each distinct file runs on ONNX Runtime, as the compress run's evaluate stage does (so the
DeepSparse file is scored as a graph, wherever DeepSparse is missing); or the DeepSparse file runs on DeepSparse
itself, every shape compiled first.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer

from compression.base_models import loading_from
from compression.evaluate import SERVED_BATCH, engine_rows
from compression.tasks import DataConfig, Evaluation, PreparedData, task_for
from service.runtime.card import EngineName, ModelCard, load_card
from service.runtime.engines import Engine, EngineOptions
from service.runtime.engines.registry import INEXACT_DEEPSPARSE, deepsparse_inexact
from service.runtime.errors import ConfigError, MissingPackage

log = logging.getLogger(__name__)
ENGINE_ORDER: tuple[EngineName, ...] = ("onnxruntime", "deepsparse")


@dataclass(frozen=True)
class FileScore:
    """The metrics of one model file run on one engine."""

    file: str
    listed_for: list[str]  # the card's engines that serve this file
    runtime: EngineName  # the engine that ran it here
    metrics: dict[str, float]
    engine_info: dict[str, Any]
    seconds: float


@dataclass(frozen=True)
class ModelEvaluation:
    """A served model's scores on the validation data, and how that data was made."""

    model: str
    task: str
    validation_examples: int
    validation: dict[str, Any]
    scores: list[FileScore]


def check_labels(card: ModelCard, data: PreparedData) -> None:
    """The model's outputs must be the data's labels: same count, and, where the names are the same, the same order.

    Names may differ (SST-2's labels 0 and 1 served as negative and positive): outputs are matched by position.
    """
    names = data.display_labels or data.labels
    if len(card.labels) != len(names):
        raise ConfigError(f"the model has {len(card.labels)} labels {card.labels} but the data has {len(names)} "
                          f"{names}")
    if sorted(card.labels) == sorted(names) and card.labels != names:
        raise ConfigError(f"the model's labels are {card.labels}, in another order than the data's {names}")
    if card.labels != names:
        log.warning("the data's labels %s are scored as the model's %s, by position", names, card.labels)


def load_engine(runtime: EngineName, path: Path, card: ModelCard, threads: int | None) -> Engine:
    """ONNX Runtime on the file, or DeepSparse with every shape it serves compiled."""
    if runtime == "onnxruntime":
        from service.runtime.engines.onnxruntime_engine import OnnxRuntimeEngine

        return OnnxRuntimeEngine(path, threads=threads)
    from service.runtime.engines.deepsparse_engine import DeepSparseEngine, deepsparse_support

    usable, reason = deepsparse_support()
    if not usable:
        raise MissingPackage(f"--engine deepsparse: {reason}")
    if deepsparse_inexact(card):
        log.warning("--engine deepsparse: %s", INEXACT_DEEPSPARSE)
    engine = DeepSparseEngine(path, EngineOptions(max_length=card.max_length, max_batch_size=SERVED_BATCH,
                                                  threads=threads))
    while engine.compile_next():
        pass
    return engine


def score_file(runtime: EngineName, path: Path, card: ModelCard, evaluation: Evaluation, pad_id: int,
               threads: int | None) -> tuple[dict[str, float], dict[str, Any], float]:
    """The task's metrics of one file on one engine, the engine's facts, and the seconds the run took."""
    engine = load_engine(runtime, path, card, threads)
    started = time.perf_counter()
    rows = engine_rows(engine.run, evaluation.features, card.inputs, pad_id, SERVED_BATCH)
    return evaluation.score(rows), engine.info(), time.perf_counter() - started


def evaluate_model_dir(
    model_dir: Path, data: DataConfig, engine: EngineName = "onnxruntime", threads: int | None = None
) -> ModelEvaluation:
    """Score each distinct file of the card on ONNX Runtime, or (``engine`` deepsparse) the DeepSparse file on
    DeepSparse. The card's task, max_length and task settings replace the data config's."""
    card = load_card(model_dir)
    if engine == "deepsparse" and "deepsparse" not in card.files:
        raise ConfigError(f"{model_dir}: the card lists no deepsparse file (files: {dict(card.files)})")
    data = replace(data, task=card.task, max_length=card.max_length, task_settings=card.task_settings)
    task = task_for(card.task)
    prepared = task.prepare(data)
    check_labels(card, prepared)
    with loading_from(str(model_dir)):
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    evaluation = task.evaluation(tokenizer, prepared.validation, prepared, data, card.inputs)
    pad_id = tokenizer.pad_token_id or 0
    files = [card.files["deepsparse"]] if engine == "deepsparse" else list(
        dict.fromkeys(card.files[listed] for listed in ENGINE_ORDER if listed in card.files))
    scores = []
    for name in files:
        metrics, info, seconds = score_file(engine, model_dir / name, card, evaluation, pad_id, threads)
        listed_for = [str(listed) for listed, file in card.files.items() if file == name]
        scores.append(FileScore(name, listed_for, engine, metrics, info, round(seconds, 2)))
        log.info("%s on %s: %s", name, engine, metrics)
    return ModelEvaluation(str(model_dir), card.task, len(prepared.validation),
                           prepared.record.model_dump(mode="json", exclude_none=True), scores)
