"""Masks over an encoder's Linear layers, pruned to a target sparsity by OBS or magnitude saliency."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from compression.pruning.fisher import BlockFisherInverse
from compression.pruning.obs import magnitude_saliency, obs_saliency, obs_update

log = logging.getLogger(__name__)

# The encoder's Linear layers: attention projections (BERT and RoBERTa: attention.self.{query,key,value} and
# attention.output.dense; MPNet: attention.attn.{q,k,v,o}) and both feed-forward layers (intermediate.dense,
# output.dense). Embeddings, MPNet's relative position bias, the pooler and the task head are left dense.
ENCODER_LINEARS = (
    r"(^|\.)encoder\.layer\.\d+\.(attention\.self\.(query|key|value)|attention\.output\.dense"
    r"|attention\.attn\.[qkvo]|intermediate\.dense|output\.dense)$"
)

Gradients = dict[str, torch.Tensor]


class GradientSource(Protocol):
    """A sized iterable of gradient samples (one dict of layer name -> gradient per mini-batch)."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[Gradients]: ...


@dataclass
class PrunableLayer:
    """One Linear layer under pruning and its keep-mask (True = kept)."""

    name: str
    module: nn.Linear
    mask: torch.Tensor

    @property
    def weight(self) -> torch.Tensor:
        return self.module.weight

    def synced_mask(self) -> torch.Tensor:
        """The mask, moved to the weight's device first if the model moved (e.g. the Trainer put it on a GPU)."""
        if self.mask.device != self.weight.device:
            self.mask = self.mask.to(self.weight.device)
        return self.mask


def find_layers(model: nn.Module, patterns: Iterable[str] = (ENCODER_LINEARS,)) -> list[PrunableLayer]:
    """Linear layers whose qualified names match any of the regular expressions."""
    compiled = [re.compile(p) for p in patterns]
    layers = [
        PrunableLayer(name, module, torch.ones_like(module.weight, dtype=torch.bool))
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and any(p.search(name) for p in compiled)
    ]
    if not layers:
        raise ValueError(f"no Linear layer of the model matches {list(patterns)}")
    return layers


class Pruner:
    """Holds masks and prunes them, globally or per layer, in groups of 1 or 4 weights.

    Fisher inverses are float64 by default: with the paper's damping (1e-7) the Woodbury updates lose most of
    their precision in float32 (measured against torch.linalg.inv on ill-conditioned gradients).
    """

    def __init__(
        self,
        layers: list[PrunableLayer],
        scorer: str = "obs",
        group: int = 1,
        scope: str = "global",
        block_size: int = 50,
        damp: float = 1e-7,
        grads_per_update: int = 32,
        fisher_dtype: torch.dtype = torch.float64,
    ) -> None:
        if scorer not in ("obs", "magnitude"):
            raise ValueError(f"unknown scorer {scorer!r}; use obs or magnitude")
        if scope not in ("global", "per-layer"):
            raise ValueError(f"unknown scope {scope!r}; use global or per-layer")
        for layer in layers:
            if layer.weight.shape[1] % group:
                raise ValueError(f"{layer.name}: input size {layer.weight.shape[1]} is not a multiple of {group}")
        if scorer == "obs" and block_size % group:
            raise ValueError(f"Fisher block size {block_size} is not a multiple of the group size {group}")
        self.layers = layers
        self.scorer = scorer
        self.group = group
        self.scope = scope
        self.block_size = block_size
        self.damp = damp
        self.grads_per_update = grads_per_update
        self.fisher_dtype = fisher_dtype
        self._hooks = [layer.weight.register_hook(self._grad_masker(layer)) for layer in layers]

    @staticmethod
    def _grad_masker(layer: PrunableLayer):  # type: ignore[no-untyped-def]
        return lambda grad: grad * layer.synced_mask()

    def remove_hooks(self) -> None:
        """Stop masking gradients (after training)."""
        for hook in self._hooks:
            hook.remove()
        self._hooks = []

    @torch.no_grad()
    def apply_masks(self) -> None:
        """Zero every pruned weight."""
        for layer in self.layers:
            layer.weight.mul_(layer.synced_mask())

    @torch.no_grad()
    def masks_from_weights(self) -> None:
        """Rebuild the masks from the zeros of the weights (used when resuming from a checkpoint)."""
        for layer in self.layers:
            layer.mask = layer.weight != 0

    def sparsity(self) -> float:
        """Fraction of masked weights over all layers."""
        total = sum(layer.mask.numel() for layer in self.layers)
        return sum(int((~layer.mask).sum()) for layer in self.layers) / total

    @torch.no_grad()
    def prune(self, sparsity: float, gradients: GradientSource | None = None) -> None:
        """Prune to ``sparsity``; OBS needs gradient samples (a sized iterable of dicts keyed by layer name).

        Samples are consumed as they come, so they need not all be held in memory.
        """
        for layer in self.layers:
            layer.synced_mask()
        if self.scorer == "obs":
            if gradients is None:
                raise ValueError("the OBS scorer needs gradient samples")
            fishers = self._fisher_inverses(gradients)
            saliencies = [self._obs_saliency(layer, fishers[layer.name]) for layer in self.layers]
        else:
            fishers = {}
            saliencies = [magnitude_saliency(layer.weight.detach().float(), self.group) for layer in self.layers]
        for layer, saliency in zip(self.layers, saliencies, strict=True):
            saliency[~layer.mask.reshape(-1, self.group).all(dim=-1)] = -torch.inf
        keeps = self._select(saliencies, sparsity)
        for layer, keep in zip(self.layers, keeps, strict=True):
            new_mask = keep.repeat_interleave(self.group).view_as(layer.mask)
            if self.scorer == "obs":
                self._apply_obs_update(layer, fishers[layer.name], layer.mask & ~new_mask)
            layer.mask = new_mask
        self.apply_masks()
        log.info("pruned to %.4f sparsity (target %.4f) with %s", self.sparsity(), sparsity, self.scorer)

    def _fisher_inverses(self, gradients: GradientSource) -> dict[str, BlockFisherInverse]:
        count = len(gradients)
        if count == 0:
            raise ValueError("no gradient samples")
        fishers = {
            layer.name: BlockFisherInverse(
                layer.weight.numel(), self.block_size, count, self.damp, self.fisher_dtype, layer.weight.device
            )
            for layer in self.layers
        }
        chunk: list[Gradients] = []
        for sample in gradients:
            chunk.append(sample)
            if len(chunk) == self.grads_per_update:
                self._fold(fishers, chunk)
                chunk = []
        if chunk:
            self._fold(fishers, chunk)
        return fishers

    def _fold(self, fishers: dict[str, BlockFisherInverse], chunk: list[Gradients]) -> None:
        for layer in self.layers:
            grads = torch.stack([sample[layer.name] * layer.mask for sample in chunk])
            fishers[layer.name].add_gradients(grads)

    def _obs_saliency(self, layer: PrunableLayer, finv: BlockFisherInverse) -> torch.Tensor:
        weights = finv.blocks(layer.weight.detach())
        saliency = obs_saliency(weights, finv, self.group).reshape(-1)
        return saliency[: layer.weight.numel() // self.group]

    def _apply_obs_update(self, layer: PrunableLayer, finv: BlockFisherInverse, newly_pruned: torch.Tensor) -> None:
        weights = finv.blocks(layer.weight.detach())
        updated = obs_update(weights, finv, finv.blocks(newly_pruned).bool(), self.group)
        layer.weight.copy_(finv.unblock(updated).view_as(layer.weight).to(layer.weight.dtype))

    def _select(self, saliencies: list[torch.Tensor], sparsity: float) -> list[torch.Tensor]:
        """Keep-masks over groups: the lowest-saliency groups go, globally or layer by layer."""
        if self.scope == "per-layer":
            return [_keep_top(s, sparsity) for s in saliencies]
        flat = torch.cat(saliencies)
        keep = _keep_top(flat, sparsity)
        return list(torch.split(keep, [s.numel() for s in saliencies]))


def _keep_top(saliency: torch.Tensor, sparsity: float) -> torch.Tensor:
    """True for the groups to keep so that round(sparsity * n) groups are pruned."""
    prune_count = round(sparsity * saliency.numel())
    keep = torch.ones_like(saliency, dtype=torch.bool)
    if prune_count > 0:
        keep[torch.topk(saliency, prune_count, largest=False).indices] = False
    return keep
