"""The card stage: the served model's model.yaml, with its metrics, measured sparsity and build record."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from compression.quantize import weight_sparsity
from compression.stages.record import BuildRecord
from service.runtime.card import ModelCard, load_card, save_card

COMPRESS_RESULT = "compress_result.json"


def file_megabytes(model_dir: Path, files: dict[str, str]) -> dict[str, float]:
    """Size of each model file in model_dir, in MB."""
    return {name: round((model_dir / name).stat().st_size / 1e6, 2) for name in sorted(set(files.values()))}


def write_card(
    card: ModelCard, model_dir: Path, output: Path, *, files: dict[str, str], precision: str,
    metrics: dict[str, Any], record: BuildRecord,
) -> ModelCard:
    """Save the final card in model_dir (and ``compress_result.json`` in output); returns it as loaded back."""
    final = card.model_copy(update={
        "files": files,
        "precision": precision,
        "metrics": metrics,
        "sparsity": float(weight_sparsity(model_dir / files["deepsparse"])["sparsity"]),
        "build": record.card_build(),
    })
    save_card(final, model_dir)
    (output / COMPRESS_RESULT).write_text(json.dumps(final.model_dump(mode="json"), indent=2))
    return load_card(model_dir)
