"""The student's shape: the teacher's layers it keeps, and the attention heads and feed-forward neurons it loses.

Layers are dropped as in oBERTa (a subset of the teacher's layers initialises the student). Heads and neurons are
removed one at a time by second-order scores, as ZipLM (Kurtic et al. 2023) does, with the same number kept in
every layer: for a layer whose output is ``W x`` (W: [out, in]) and whose inputs over calibration text give
``H = Σ x xᵀ``, removing a group G of input columns (a head's columns of the attention output projection, or one
neuron's column of the second feed-forward layer) costs ``tr(W_G (H⁻¹_GG)⁻¹ W_Gᵀ)`` in reconstruction error, and
``W -= W_G (H⁻¹_GG)⁻¹ H⁻¹_G:`` is the best correction of the rest. The removed structure's weights become zeros
(the query, key and value rows of a head, the first feed-forward row of a neuron, and the matching input columns);
the pruner keeps every zero it starts with, and the export drops dead structures from the graph
(compression/compaction.py), so the speed-up reaches every engine.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel

log = logging.getLogger(__name__)


def encoder_layers(model: nn.Module) -> nn.ModuleList:
    """The encoder's list of transformer layers (``...encoder.layer`` in BERT, RoBERTa and MPNet)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and (name == "encoder.layer" or name.endswith(".encoder.layer")):
            return module
    raise ValueError(f"{type(model).__name__} has no encoder.layer list")


def keep_layers(model: nn.Module, indices: list[int]) -> None:
    """Keep only the given layers of the encoder, in that order; the configuration records the new depth."""
    layers = encoder_layers(model)
    if not indices or len(set(indices)) != len(indices) or not all(0 <= i < len(layers) for i in indices):
        raise ValueError(f"layers to keep must be distinct indices below {len(layers)}, got {indices}")
    kept = [layers[i] for i in indices]
    del layers[:]
    layers.extend(kept)
    for position, layer in enumerate(kept):
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                setattr(module, "layer_idx", position)  # noqa: B010 (any module that numbers itself)
    config: Any = getattr(model, "config", None)
    if config is not None:
        config.num_hidden_layers = len(kept)


@dataclass(frozen=True)
class LayerLinears:
    """The Linear layers of one transformer layer that structured pruning touches."""

    query: nn.Linear
    key: nn.Linear
    value: nn.Linear
    attention_output: nn.Linear
    intermediate: nn.Linear
    output: nn.Linear


def layer_linears(layer: Any) -> LayerLinears:
    """The Linear layers of a BERT/RoBERTa (attention.self.*) or MPNet (attention.attn.*) layer."""
    attention = layer.attention
    if hasattr(attention, "self"):
        q, k, v, o = attention.self.query, attention.self.key, attention.self.value, attention.output.dense
    else:
        q, k, v, o = attention.attn.q, attention.attn.k, attention.attn.v, attention.attn.o
    return LayerLinears(q, k, v, o, layer.intermediate.dense, layer.output.dense)


class _InputGram:
    """Accumulates ``Σ x xᵀ`` over every position of a Linear layer's input (float64)."""

    def __init__(self, module: nn.Linear) -> None:
        self.gram = torch.zeros(module.in_features, module.in_features, dtype=torch.float64)
        self.handle = module.register_forward_hook(self._add)

    def _add(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        x = inputs[0].detach().reshape(-1, inputs[0].shape[-1]).to(torch.float64).cpu()
        self.gram += x.T @ x


def remove_input_groups(weight: torch.Tensor, gram: torch.Tensor, group: int, keep: int,
                        damp: float = 0.01) -> list[int]:
    """Zero all but ``keep`` groups of ``group`` input columns of ``weight`` ([out, in]), one group at a time by
    least reconstruction error, correcting the remaining columns each time (in place); returns the removed groups.

    ``damp`` is added to the Gram matrix's diagonal as a fraction of its mean (columns that never fire stay
    invertible).
    """
    groups = weight.shape[1] // group
    w = weight.detach().to(torch.float64).clone()
    h = gram + damp * gram.diagonal().mean().clamp_min(1e-12) * torch.eye(gram.shape[0], dtype=torch.float64)
    h_inv = torch.linalg.inv(h)
    alive = list(range(groups))
    removed: list[int] = []
    while len(alive) > keep:
        columns = torch.tensor([[g * group + i for i in range(group)] for g in alive])  # [alive, group]
        blocks = h_inv[columns.unsqueeze(-1), columns.unsqueeze(-2)]  # [alive, group, group]
        block_inv = torch.linalg.inv(blocks)
        w_groups = w[:, columns].permute(1, 0, 2)  # [alive, out, group]
        errors = torch.einsum("aoi,aij,aoj->a", w_groups, block_inv, w_groups)
        best = int(errors.argmin())
        cols, inv = columns[best], block_inv[best]
        w -= w[:, cols] @ inv @ h_inv[cols, :]
        h_inv -= h_inv[:, cols] @ inv @ h_inv[cols, :]
        removed.append(alive.pop(best))
    for g in removed:  # exactly zero (the corrections leave rounding residue in earlier removed columns)
        w[:, g * group : (g + 1) * group] = 0.0
    weight.data.copy_(w.to(weight.dtype))
    return sorted(removed)


@torch.no_grad()
def _zero_rows(linear: nn.Linear, rows: torch.Tensor) -> None:
    linear.weight[rows] = 0.0
    if linear.bias is not None:
        linear.bias[rows] = 0.0


@dataclass(frozen=True)
class Removed:
    """What structured pruning removed, layer by layer."""

    heads: list[list[int]]
    neurons: list[int]


@torch.no_grad()
def prune_structures(
    model: PreTrainedModel, batches: Iterable[dict[str, torch.Tensor]], heads: int | None, neurons: int | None,
    damp: float = 0.01,
) -> Removed:
    """Keep ``heads`` attention heads and ``neurons`` feed-forward neurons in every layer (None: all), chosen and
    corrected by second-order scores on the model's inputs over ``batches``."""
    config: Any = model.config
    head_size = config.hidden_size // config.num_attention_heads
    parts = [layer_linears(layer) for layer in encoder_layers(model)]
    grams = [(_InputGram(p.attention_output), _InputGram(p.output)) for p in parts]
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            model(**batch)
    finally:
        for attention_gram, output_gram in grams:
            attention_gram.handle.remove()
            output_gram.handle.remove()
        model.train(was_training)
    removed_heads: list[list[int]] = []
    removed_neurons: list[int] = []
    for p, (attention_gram, output_gram) in zip(parts, grams, strict=True):
        layer_heads: list[int] = []
        if heads is not None and heads < config.num_attention_heads:
            layer_heads = remove_input_groups(p.attention_output.weight, attention_gram.gram, head_size, heads, damp)
            rows = torch.cat([torch.arange(h * head_size, (h + 1) * head_size) for h in layer_heads])
            for projection in (p.query, p.key, p.value):
                _zero_rows(projection, rows)
        layer_neurons: list[int] = []
        if neurons is not None and neurons < p.output.in_features:
            layer_neurons = remove_input_groups(p.output.weight, output_gram.gram, 1, neurons, damp)
            _zero_rows(p.intermediate, torch.tensor(layer_neurons))
        removed_heads.append(layer_heads)
        removed_neurons.append(len(layer_neurons))
    log.info("removed heads %s and %s feed-forward neurons per layer", removed_heads, removed_neurons)
    return Removed(removed_heads, removed_neurons)
