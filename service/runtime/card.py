"""The model card `model.yaml` that sits beside every exported model.

Written by `oberta export` / `oberta compress`, read by the server. Only the fields the server needs are
required; measured metrics and build details are free-form but recorded for people.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

CARD_FILE = "model.yaml"
Task = Literal["text-classification", "question-answering", "token-classification"]
EngineName = Literal["deepsparse", "onnxruntime"]


class QuestionAnsweringSettings(BaseModel):
    """How a question-answering model reads long contexts and bounds its answers (in tokens)."""

    model_config = ConfigDict(extra="forbid")

    doc_stride: int = Field(default=128, ge=0, description="tokens shared by consecutive windows of a long context")
    max_query_length: int = Field(default=64, ge=1, description="question tokens kept; longer questions are cut")
    max_answer_length: int = Field(
        default=30, ge=1, description="longest answer in tokens, unless a request sets max_answer_length"
    )


class ModelCard(BaseModel):
    """What a model directory holds and how it was built and measured."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="model name used in URLs")
    task: Task = Field(description="task the model serves")
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
    question_answering: QuestionAnsweringSettings | None = Field(
        default=None, description="question answering only: context windows and answer length"
    )
    description: str = ""


def load_card(model_dir: str | Path) -> ModelCard:
    """Read and validate `model.yaml` from a model directory."""
    path = Path(model_dir) / CARD_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: a model directory needs a {CARD_FILE} card")
    with path.open(encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    return ModelCard.model_validate(data)


def save_card(card: ModelCard, model_dir: str | Path) -> Path:
    """Write the card as YAML; returns its path."""
    path = Path(model_dir) / CARD_FILE
    path.write_text(yaml.safe_dump(card.model_dump(mode="json"), sort_keys=False, allow_unicode=True))
    return path
