"""The teacher of a compression run: loaded with its own tokenizer, scored on its own tokenization, and its logits
computed once, before training.

A frozen teacher gives the same logits at every epoch, so they are computed once (and kept in the run directory for a
resumed run) instead of at every step: on 2 CPU cores the teacher's forward pass is about a third of a distillation
step. A teacher's logits for a whole text do not depend on how it cuts the text into tokens, so a teacher with another
tokenizer (all-mpnet-base-v2 teaching a MiniLM student) can teach text classification: it reads each training text
its own way, and the student learns from the logits attached to its own features. Token-level tasks (question
answering, entities) compare outputs position by position and need a teacher that tokenizes as the student does;
their logits are one row per token of the student's feature (for question answering the start and end logits as two
columns). Sentence embeddings learn from the teacher's token states, which the teacher computes on every batch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoTokenizer, PreTrainedModel

from compression.base_models import loading_from, resolve_base_model
from compression.evaluate import torch_rows
from compression.export import model_input_names
from compression.finetune import TRAINING_INFO
from compression.run_clock import LOGITS_STAGE, RunClock, awake_seconds, machine
from compression.stages.prepare import Prepared, score
from compression.stages.record import TRAINED, TRAINING_RESULT, TrainingResult
from compression.tasks import CompressionTask, DataConfig
from compression.training import TEACHER_LOGITS
from compression.training_loop import Precision
from service.runtime.errors import ConfigError

log = logging.getLogger(__name__)
LOGITS_CACHE = "teacher_logits.npz"
LOGITS_PARTS = "teacher_logits.parts"  # chunks of an unfinished computation
LOGITS_BATCH = 128
LOGITS_CHUNK = 4096  # features between progress lines
TEACHER_TRAINING_KEYS = ("base_model", "settings", "train_examples", "validation", "validation_metrics",
                         "validation_curve", "training_device", "wall_clock")


@dataclass(frozen=True)
class Teacher:
    """A frozen teacher and how it reads text."""

    model: PreTrainedModel
    path: str
    tokenizer: Any
    input_names: list[str]
    own_tokenizer: bool  # it cuts text into tokens otherwise than the student


def _vocabulary(tokenizer: Any) -> dict[str, int]:
    return dict(tokenizer.get_vocab())


def load_teacher(task: CompressionTask, path: str, prepared: Prepared) -> Teacher:
    """The teacher at ``path`` with its tokenizer (the student's where the directory holds none). ValueError when its
    head does not fit the labels; ConfigError when it tokenizes otherwise than the student on a token-level task."""
    local = resolve_base_model(path)
    model = task.load_model(local)
    task.check_model(model, prepared.data, "teacher")
    try:
        with loading_from(local):
            tokenizer = AutoTokenizer.from_pretrained(local)
    except ConfigError:
        log.info("the teacher %s holds no tokenizer: it reads the student's tokens", path)
        tokenizer = prepared.tokenizer
    own = _vocabulary(tokenizer) != _vocabulary(prepared.tokenizer)
    if own and task.per_token:
        raise ConfigError(f"the teacher {path} tokenizes otherwise than the student; {task.name} compares outputs "
                          "token by token, so its teacher must share the student's tokenizer (a teacher with its own "
                          "tokenizer can teach text classification)")
    return Teacher(model, path, tokenizer, model_input_names(model), own)


def precomputes_logits(task: CompressionTask) -> bool:
    """Whether the task learns from the teacher's logits alone (computed once), not from its hidden states."""
    return not task.needs_teacher


def _pad_id(teacher: Teacher) -> int:
    return teacher.tokenizer.pad_token_id or 0


def teacher_score(teacher: Teacher, prepared: Prepared, data_config: DataConfig) -> dict[str, float]:
    """The task metric of the teacher on the validation examples, tokenized its own way."""
    if not teacher.own_tokenizer:
        return score(prepared, teacher.model)
    evaluation = prepared.task.evaluation(teacher.tokenizer, prepared.data.validation, prepared.data, data_config,
                                          teacher.input_names)
    rows = torch_rows(teacher.model, evaluation.features, teacher.input_names, prepared.task.output_names,
                      _pad_id(teacher))
    return evaluation.score(rows)


def _fingerprint(teacher: Teacher, prepared: Prepared, data_config: DataConfig, precision: Precision) -> str:
    """What the logits depend on: the teacher and its precision, and what it reads: every training text in order and
    the cut length (its own tokenization) or every training feature's tokens (the student's)."""
    digest = hashlib.sha256(f"{Path(teacher.path).resolve()}|{precision}|{data_config.max_length}".encode())
    if teacher.own_tokenizer:
        for example in prepared.data.train:
            digest.update(repr((example.text, example.text_pair)).encode())
    else:
        for feature in prepared.train:
            for name in prepared.input_names:
                digest.update(np.asarray(feature[name], dtype=np.int64).tobytes())
            digest.update(b"|")
    return digest.hexdigest()


def _logit_rows(rows: list[list[np.ndarray]], features: list[dict[str, Any]], per_token: bool) -> list[np.ndarray]:
    """One array per feature: the sequence's logits, or for a token-level task its tokens' rows of every output side
    by side (padding cut off): [tokens, columns]."""
    if not per_token:
        return [row[0] for row in rows]
    logits = []
    for feature, outputs in zip(features, rows, strict=True):
        length = len(feature["input_ids"])
        logits.append(np.concatenate([output[:length].reshape(length, -1) for output in outputs], axis=1))
    return logits


def _compute_logits(
    teacher: Teacher, prepared: Prepared, data_config: DataConfig, precision: Precision, parts: Path,
    fingerprint: str,
) -> list[np.ndarray]:
    """The teacher's logits of every training feature (see `_logit_rows`): on the student's features where it
    tokenizes as the student does, else on its own tokenization of the texts. Each chunk of features is kept in
    ``parts`` as it is done, so an interrupted computation (an hour for SQuAD on 2 cores) resumes where it stopped;
    the time of each kept chunk goes to the run's clock."""
    if teacher.own_tokenizer:
        features = prepared.task.features(teacher.tokenizer, prepared.data.train, prepared.data, data_config,
                                          teacher.input_names)
        input_names, pad_id = teacher.input_names, _pad_id(teacher)
    else:
        features, input_names, pad_id = prepared.train, prepared.input_names, prepared.pad_id
    device = next(teacher.model.parameters()).device
    log.info("teacher logits for %d training features (%s, %s)...", len(features), teacher.path, precision)
    order = sorted(range(len(features)), key=lambda i: -len(features[i]["input_ids"]))  # longest first: a safe ETA
    logits: list[np.ndarray] = [np.empty(0)] * len(features)
    clock = RunClock(parts.parent)
    clock.start(LOGITS_STAGE, resumed=any(parts.glob("*.npz")), machine=machine(device))
    started, computed = awake_seconds(), 0
    for first in range(0, len(order), LOGITS_CHUNK):
        indices = order[first : first + LOGITS_CHUNK]
        part = parts / f"{first:09d}.npz"
        rows = _read_cache(part, fingerprint)
        if rows is None:
            chunk_started = awake_seconds()
            chunk = [features[i] for i in indices]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                outputs = torch_rows(teacher.model, chunk, input_names, prepared.task.output_names, pad_id,
                                     LOGITS_BATCH)
            rows = [row.astype(np.float32) for row in _logit_rows(outputs, chunk, prepared.task.per_token)]
            _write_cache(part, fingerprint, rows)
            clock.add(LOGITS_STAGE, awake_seconds() - chunk_started)
            computed += len(indices)
        for index, row in zip(indices, rows, strict=True):
            logits[index] = row
        done, elapsed = first + len(indices), awake_seconds() - started
        if not computed:  # nothing computed yet in this sitting: no rate to tell the time left from
            log.info("teacher logits: %d of %d features read back from %s", done, len(features), parts)
            continue
        left = elapsed / computed * (len(features) - done)
        log.info("teacher logits: %d of %d features (%d read back), %.0f s, about %.0f s left", done, len(features),
                 done - computed, elapsed, left)
    return logits


def _read_cache(cache: Path, fingerprint: str) -> list[np.ndarray] | None:
    """The rows stored in ``cache`` if they were computed for ``fingerprint``."""
    if not cache.is_file():
        return None
    with np.load(cache) as stored:
        if str(stored["fingerprint"]) != fingerprint:
            return None
        logits = stored["logits"]
        if "lengths" not in stored:  # one row per feature
            return list(logits)
        return np.split(logits, np.cumsum(stored["lengths"])[:-1])


def _write_cache(cache: Path, fingerprint: str, rows: list[np.ndarray]) -> None:
    """Rows of one shape as one array; rows of tokens concatenated, with each feature's token count. Written under
    another name first, so an interrupted write leaves no partial file."""
    cache.parent.mkdir(parents=True, exist_ok=True)
    partial = cache.with_name(cache.name + ".partial.npz")
    if rows and rows[0].ndim == 2:
        np.savez(partial, logits=np.concatenate(rows), lengths=np.array([len(row) for row in rows]),
                 fingerprint=np.array(fingerprint))
    else:
        np.savez(partial, logits=np.stack(rows), fingerprint=np.array(fingerprint))
    partial.replace(cache)


def attach_teacher_logits(
    teacher: Teacher, prepared: Prepared, data_config: DataConfig, precision: Precision, run_dir: Path
) -> str:
    """Put the teacher's logits of every training feature into it (``teacher_logits``), computed once per run
    directory: a resumed run reads them back when the teacher, its precision and what it reads are the same. Returns
    how they were made, for the card."""
    if teacher.own_tokenizer and len(prepared.train) != len(prepared.data.train):
        raise ValueError("a teacher with its own tokenizer needs one training feature per example")
    fingerprint = _fingerprint(teacher, prepared, data_config, precision)
    cache = run_dir / LOGITS_CACHE
    logits = _read_cache(cache, fingerprint)
    if logits is not None:
        log.info("teacher logits read from %s", cache)
    else:
        parts = run_dir / LOGITS_PARTS
        logits = _compute_logits(teacher, prepared, data_config, precision, parts, fingerprint)
        _write_cache(cache, fingerprint, logits)
        shutil.rmtree(parts, ignore_errors=True)  # none where there was nothing to compute
    for feature, row in zip(prepared.train, logits, strict=True):
        feature[TEACHER_LOGITS] = row
    return "precomputed, own tokenizer" if teacher.own_tokenizer else "precomputed"


def teacher_training(path: str) -> dict[str, Any] | None:
    """How the teacher was trained (base model, settings, validation, final score and curve): from the
    ``oberta_training.json`` that `oberta finetune` leaves beside it, or, for the ``trained/`` model of an
    `oberta compress` run (a teacher assistant distilled from a larger teacher), from that run's result with its own
    teacher's record nested; None for a teacher trained elsewhere."""
    model_dir = Path(resolve_base_model(path))
    info_path = model_dir / TRAINING_INFO
    if info_path.is_file():
        info = json.loads(info_path.read_text())
        return {key: info[key] for key in TEACHER_TRAINING_KEYS if key in info}
    if model_dir.name == TRAINED and (model_dir.parent / TRAINING_RESULT).is_file():
        return _compressed_teacher_training(TrainingResult.load(model_dir.parent))
    return None


def _compressed_teacher_training(result: TrainingResult) -> dict[str, Any]:
    """The record of a teacher made by `oberta compress`: its command and recipe, validation, final FP32 score,
    curve and sparsity, and its own teacher."""
    build = result.build
    record = {
        "built_by": "oberta compress",
        "command": build.command,
        "base_model": build.model,
        "settings": build.recipe_settings,
        "train_examples": build.train_examples,
        "validation": build.validation.model_dump(mode="json", exclude_none=True) if build.validation else None,
        "validation_metrics": {name.removeprefix("student_fp32_"): value for name, value in result.metrics.items()
                               if name.startswith("student_fp32_")},
        "validation_curve": build.validation_curve,
        "sparsity": build.pytorch_sparsity,
        "teacher": build.teacher,
        "teacher_training": build.teacher_training,
    }
    return {key: value for key, value in record.items() if value is not None}
