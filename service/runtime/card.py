"""The model card `model.yaml` that sits beside every exported model.

Written by `oberta export` / `oberta compress`, read by the server. Only the fields the server needs are
required; measured metrics and build details are free-form but recorded for people.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from service.runtime.errors import ConfigError, MissingFile

CARD_FILE = "model.yaml"
LEGACY_TASK_SETTINGS = "question_answering"  # where cards written before task_settings kept the QA settings
EngineName = Literal["deepsparse", "onnxruntime"]


class ModelCard(BaseModel):
    """What a model directory holds and how it was built and measured."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="model name used in URLs")
    task: str = Field(description="task the model serves (a name in service.runtime.tasks.TASKS)")
    labels: list[str] = Field(description="class or tag names, in output index order")
    max_length: int = Field(gt=1, description="maximum sequence length in tokens")
    architecture: str = Field(description="encoder family, e.g. bert or roberta")
    inputs: list[str] = Field(description="ONNX input names, e.g. input_ids, attention_mask, token_type_ids")
    files: dict[EngineName, str] = Field(
        description="ONNX file per engine, relative to the directory; engines share a file when they can"
    )
    tokenizer: str = Field(default="tokenizer.json", description="tokenizers-library file")
    precision: str = Field(default="fp32", description="fp32, int8, ...")
    sparsity: float | None = Field(default=None, description="measured sparsity of the encoder's Linear weights")
    metrics: dict[str, Any] = Field(default_factory=dict, description="measured quality and speed")
    build: dict[str, Any] = Field(default_factory=dict, description="command, data, recipe, base model")
    task_settings: dict[str, Any] = Field(
        default_factory=dict, description="the task's own settings, e.g. question answering's windows and answer length"
    )
    description: str = ""

    @model_validator(mode="before")
    @classmethod
    def _legacy_task_settings(cls, data: Any) -> Any:
        """Cards written before task_settings kept question answering's settings under their own key."""
        if isinstance(data, dict) and LEGACY_TASK_SETTINGS in data:
            data = dict(data)
            legacy = data.pop(LEGACY_TASK_SETTINGS)
            data.setdefault("task_settings", legacy or {})
        return data

    @model_validator(mode="after")
    def _known_task(self) -> ModelCard:
        """The task must be one the runtime knows; its settings are checked and completed with their defaults."""
        from service.runtime.tasks import task_spec  # the tasks import the card module for their types

        settings = task_spec(self.task).parse_settings(self.task_settings)
        self.task_settings = settings.model_dump() if settings is not None else {}
        return self


def load_card(model_dir: str | Path) -> ModelCard:
    """Read and validate `model.yaml` from a model directory."""
    path = Path(model_dir) / CARD_FILE
    if not path.is_file():
        raise MissingFile(f"{path} not found: a model directory needs a {CARD_FILE} card")
    with path.open(encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    try:
        return ModelCard.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path} is not a valid model card: {exc}") from exc


def save_card(card: ModelCard, model_dir: str | Path) -> Path:
    """Write the card as YAML; returns its path."""
    path = Path(model_dir) / CARD_FILE
    path.write_text(yaml.safe_dump(card.model_dump(mode="json"), sort_keys=False, allow_unicode=True))
    return path
