"""An encoder that ends in a sentence vector: the base model's own class with pooling (and normalisation) on top.

The model is the encoder's architecture class (BertModel, RobertaModel, MPNetModel, ...) with a forward that pools
the last token states, so `from_pretrained` and `save_pretrained` work unchanged, the pruner finds the encoder's
linear layers, and the exported graph ends in the vector the server returns. How it pools is kept in the model's
config (`sentence_pooling`, `sentence_normalize`); a base without them takes its sentence-transformers
configuration (`1_Pooling/config.json`, a `Normalize` module in `modules.json`), else mean pooling and unit length.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AutoConfig, PretrainedConfig, PreTrainedModel
from transformers.models.auto.modeling_auto import MODEL_MAPPING
from transformers.utils import ModelOutput

from compression.base_models import loading_from
from service.runtime.errors import ConfigError
from service.runtime.tasks.sentence_embedding import Pooling, SentenceEmbeddingSettings

POOLING_CONFIG = Path("1_Pooling") / "config.json"
POOLING_FLAGS: dict[str, Pooling] = {
    "pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max",
}
NORMALIZE_MODULE = "sentence_transformers.models.Normalize"


@dataclass
class SentenceEmbeddingOutput(ModelOutput):
    """The pooled vector before and after normalisation, the token states it pools and, when asked for, every
    layer's states (``loss`` stays None: the teacher gives the targets)."""

    loss: torch.Tensor | None = None
    sentence_embedding: torch.Tensor | None = None
    pooled_embedding: torch.Tensor | None = None
    token_embeddings: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None


def pool(states: torch.Tensor, attention_mask: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    """One vector per row from the token states [batch, sequence, hidden], padding left out."""
    if pooling == "cls":
        return states[:, 0]
    mask = attention_mask.unsqueeze(-1).to(states.dtype)
    if pooling == "max":
        return states.masked_fill(mask == 0, torch.finfo(states.dtype).min).amax(dim=1)
    return (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


def _forward(self: Any, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
             token_type_ids: torch.Tensor | None = None, output_hidden_states: bool = False,
             **_: Any) -> SentenceEmbeddingOutput:
    """The encoder's forward, then pooling and (when configured) L2 normalisation; ``output_hidden_states`` adds the
    embeddings' and every layer's outputs (for distillation; the exported graph leaves them out)."""
    if attention_mask is None:
        raise ValueError("a sentence-embedding model needs the attention mask to pool")
    encoder_inputs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}
    if token_type_ids is not None:
        encoder_inputs["token_type_ids"] = token_type_ids
    encoded = super(type(self), self).forward(**encoder_inputs, output_hidden_states=output_hidden_states)
    states = encoded.last_hidden_state
    pooled = pool(states, attention_mask, self.config.sentence_pooling)
    embedding = F.normalize(pooled, p=2.0, dim=-1) if self.config.sentence_normalize else pooled
    return SentenceEmbeddingOutput(sentence_embedding=embedding, pooled_embedding=pooled, token_embeddings=states,
                                   hidden_states=encoded.hidden_states if output_hidden_states else None)


@cache
def embedding_class(encoder_class: type[PreTrainedModel]) -> type[PreTrainedModel]:
    """The encoder class with a pooling forward (one class per encoder class)."""
    return type(f"{encoder_class.__name__}ForSentenceEmbedding", (encoder_class,), {"forward": _forward})


def sentence_transformers_settings(path: Path) -> dict[str, Any]:
    """Pooling and normalisation from a sentence-transformers model directory (empty when it is not one)."""
    settings: dict[str, Any] = {}
    if (path / POOLING_CONFIG).is_file():
        flags = json.loads((path / POOLING_CONFIG).read_text())
        chosen = [mode for flag, mode in POOLING_FLAGS.items() if flags.get(flag)]
        if len(chosen) != 1:
            raise ConfigError(f"{path / POOLING_CONFIG}: supported pooling is one of mean, cls or max; got {flags}")
        settings["pooling"] = chosen[0]
    if (path / "modules.json").is_file():
        modules = json.loads((path / "modules.json").read_text())
        settings["normalize"] = any(module.get("type") == NORMALIZE_MODULE for module in modules)
    return settings


def embedding_settings(config: PretrainedConfig, path: str) -> SentenceEmbeddingSettings:
    """How the model pools: its config's, else its sentence-transformers files', else defaults."""
    if hasattr(config, "sentence_pooling"):
        known = {"pooling": config.sentence_pooling, "normalize": config.sentence_normalize}
    else:
        known = sentence_transformers_settings(Path(path))
    return SentenceEmbeddingSettings.model_validate({**known, "dimension": config.hidden_size})


def load_embedding_model(path: str) -> PreTrainedModel:
    """The encoder at path with its pooling forward (eager attention, for export)."""
    with loading_from(path):
        config = AutoConfig.from_pretrained(path)
    encoder_class = MODEL_MAPPING.get(type(config), None)
    if encoder_class is None:
        raise ConfigError(f"{path}: no encoder class for model type {config.model_type!r}")
    settings = embedding_settings(config, path)
    config.sentence_pooling, config.sentence_normalize = settings.pooling, settings.normalize
    with loading_from(path):
        model = embedding_class(encoder_class).from_pretrained(path, config=config, attn_implementation="eager")
    return model


def model_settings(model: PreTrainedModel) -> SentenceEmbeddingSettings:
    """The card's task settings for a sentence-embedding model: how its graph pools, and its vector's length."""
    config = model.config
    return SentenceEmbeddingSettings(
        pooling=config.sentence_pooling, normalize=config.sentence_normalize, dimension=config.hidden_size
    )
