"""The training loop's settings, one model for `oberta finetune` and `oberta compress` (a recipe's `training:`).

Light on purpose (pydantic only): the CLI reads the defaults for its help text without importing torch.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_MAX_LENGTH = 128
Precision = Literal["fp32", "bf16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)


class TrainingLoop(BaseModel):
    """The fine-tuning loop: what `oberta finetune` runs, and what a compression recipe's pruning runs inside."""

    model_config = ConfigDict(extra="forbid")

    epochs: float = Field(3.0, gt=0, description="training epochs in all")
    learning_rate: float = Field(5e-5, gt=0, description="peak learning rate")
    lr_schedule: Literal["linear", "constant", "cosine"] = Field("linear", description="decay after warm-up")
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="share of steps spent warming up")
    batch_size: int = Field(32, ge=1, description="per-device batch size")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    max_length: int = Field(DEFAULT_MAX_LENGTH, gt=1, description="maximum sequence length in tokens")
    freeze_embeddings: bool = Field(True, description="keep the embedding layer fixed")
    micro_batch_tokens: int | None = Field(
        None, ge=1, description="run each batch's forward and backward passes in parts of at most this many tokens "
        "(rows times the batch's padded length, at least one row a part), each part's loss weighted by its share of "
        "the rows: the same update in less memory traffic, for tasks whose losses average over examples (text "
        "classification, question answering). On 2 Zen 4 cores a step over 32 windows of 384 tokens took 8.4 s "
        "whole and 4.2 s in parts of 2,048 tokens (256 tokens: 3.4 / 2.0 s; 128 tokens: no change)")
    eval_steps: int = Field(500, ge=1, description="evaluate every N steps")
    save_steps: int = Field(250, ge=1, description="checkpoint every N steps")
    precision: Precision = Field("fp32", description="fp32, or bf16: matrix products in bfloat16 under autocast, "
                                 "weights and optimizer state in fp32 (on a CPU with AMX-BF16: 1.9x faster for "
                                 "all-mpnet-base-v2, no faster for all-MiniLM-L6-v2); where bf16 would only be "
                                 "emulated (no AVX512-BF16 or AMX) training runs in fp32 instead")


FINETUNE_DEFAULTS: dict[str, Any] = {"epochs": 2.0, "warmup_ratio": 0.06, "weight_decay": 0.01, "save_steps": 500}
"""Where `oberta finetune`'s defaults differ from a recipe's: a dense teacher trains shorter, with warm-up."""


def finetune_loop(**given: Any) -> TrainingLoop:
    """`oberta finetune`'s loop: the settings given (None means not given) over its defaults."""
    return TrainingLoop.model_validate({**FINETUNE_DEFAULTS, **{k: v for k, v in given.items() if v is not None}})


def finetune_default(name: str) -> Any:
    """The value `oberta finetune` uses for a setting nobody gave (for help texts)."""
    return getattr(finetune_loop(), name)
