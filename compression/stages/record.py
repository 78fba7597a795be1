"""The build record of a compression run (the card's ``build``) and the training stage's result file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from compression.validation import ValidationRecord
from service.runtime.errors import ConfigError, MissingFile

TRAINED = "trained"
TRAINING_RESULT = "training_result.json"


class BuildRecord(BaseModel):
    """How a compressed model was built: written into the card's ``build`` as a mapping."""

    model_config = ConfigDict(extra="forbid")

    command: str
    recipe: str
    recipe_settings: dict[str, Any]  # the effective recipe: the recipe file with the overrides applied
    overrides: dict[str, Any] = {}
    model: str
    teacher: str | None
    teacher_training: dict[str, Any] | None = None  # the teacher's `oberta finetune` record, its curve included
    teacher_logits: str | None = None  # "precomputed" (once, before training), maybe on the teacher's own tokenizer
    data: dict[str, Any]
    validation: ValidationRecord | None = None  # how validation was made, its overlaps with training (None: a
    # training result written before it was recorded; the export stage then records it from the data it prepares)
    train_examples: int
    train_features: int
    pruning_history: list[dict[str, Any]]
    validation_curve: list[dict[str, Any]] | None = None  # the student's evaluations during training, in order
    pytorch_sparsity: float
    student_layers: list[int] | None = None  # the starting model's layers the student kept (None: all)
    removed_heads: list[list[int]] | None = None  # per layer, the heads structured pruning removed
    training_device: str
    training_wall_clock_seconds: int  # the training's kept work, summed over the sittings (compression/run_clock.py)
    wall_clock: dict[str, Any] | None = None  # seconds of kept work and sittings per stage (teacher logits, training)
    export_command: str | None = None  # set when the export ran as a stage of its own
    export_overrides: dict[str, Any] | None = None
    onnx_parity_max_abs_diff: float | None = None
    opset: int | None = None
    layer_shapes: dict[str, list[int]] | None = None  # heads and feed-forward neurons per layer in the graph
    quantization: dict[str, Any] | None = None
    qat: dict[str, Any] | None = None  # quantization-aware training's settings and wall clock, where it ran
    file_megabytes: dict[str, float] | None = None
    export_wall_clock_seconds: int | None = None

    def card_build(self) -> dict[str, Any]:
        """The record as the card's ``build`` mapping (settings that do not apply are left out)."""
        return self.model_dump(mode="json", exclude_none=True)


class TrainingResult(BaseModel):
    """What the training stage leaves next to ``trained/``: the metrics so far and the build record."""

    model_config = ConfigDict(extra="forbid")

    metrics: dict[str, Any]
    build: BuildRecord

    def save(self, output: Path) -> None:
        """Write the result as JSON, leaving out settings that do not apply (None), as the card does."""
        (output / TRAINING_RESULT).write_text(self.model_dump_json(indent=2, exclude_none=True))

    @classmethod
    def load(cls, output: Path) -> TrainingResult:
        """The result of a finished training stage in ``output``."""
        path = output / TRAINING_RESULT
        if not path.is_file() or not (output / TRAINED).is_dir():
            raise MissingFile(f"{output} holds no finished training stage ({TRAINED}/ and {TRAINING_RESULT}): "
                              "run `oberta compress` with --stage train (or all) first")
        try:
            return cls.model_validate_json(path.read_text())
        except ValidationError as exc:
            raise ConfigError(f"{path} is not a training result of this version: {exc}") from exc
