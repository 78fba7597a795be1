"""Masks over an encoder's Linear layers, pruned to a target sparsity by OBS or magnitude saliency."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Mapping
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
    """One Linear layer under pruning, its keep-mask (True = kept), and its live structure.

    ``live`` marks the weights outside all-zero rows and columns (removed heads and neurons, see
    compression/structure.py). The pruner works on those alone, laid out as the export's compacted matrix
    ``weight[live].view(live rows, live columns)``, so groups of 4 are consecutive columns of the matrix the
    engines run, and a removed column never shares a group with kept ones.
    """

    name: str
    module: nn.Linear
    mask: torch.Tensor
    live: torch.Tensor | None = None

    @property
    def weight(self) -> torch.Tensor:
        return self.module.weight

    @property
    def live_entries(self) -> torch.Tensor:
        """The live-structure mask on the weight's device (every weight until the pruner has looked)."""
        if self.live is None:
            self.live = torch.ones_like(self.weight, dtype=torch.bool)
        elif self.live.device != self.weight.device:
            self.live = self.live.to(self.weight.device)
        return self.live

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

    Targets count every weight of the layers, removed structures included (zeros still in a layer, or
    ``removed_weights``: per layer name, the weights a compacted layer no longer holds); the pruning itself happens
    among the live structures' weights (see :class:`PrunableLayer`). Fisher inverses are float64 by default: with the
    paper's damping (1e-7) the Woodbury updates lose most of their precision in float32 (measured against
    torch.linalg.inv on ill-conditioned gradients).
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
        removed_weights: Mapping[str, int] | None = None,
    ) -> None:
        if scorer not in ("obs", "magnitude"):
            raise ValueError(f"unknown scorer {scorer!r}; use obs or magnitude")
        if scope not in ("global", "per-layer"):
            raise ValueError(f"unknown scope {scope!r}; use global or per-layer")
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
        self.removed_weights = {layer.name: (removed_weights or {}).get(layer.name, 0) for layer in layers}
        self.masks_from_weights()
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
        """Rebuild the masks and live structures from the zeros of the weights (at the start of training, with
        removed heads and neurons, and when resuming from a checkpoint)."""
        for layer in self.layers:
            nonzero = layer.weight != 0
            layer.mask = nonzero
            layer.live = nonzero.any(dim=1, keepdim=True) & nonzero.any(dim=0, keepdim=True)
            columns = int(layer.live.any(dim=0).sum())
            if columns % self.group:
                raise ValueError(f"{layer.name}: {columns} live input columns are not a multiple of {self.group}")

    def sparsity(self) -> float:
        """Fraction of masked (or removed) weights over all layers."""
        removed = sum(self.removed_weights.values())
        total = sum(layer.mask.numel() for layer in self.layers) + removed
        return (sum(int((~layer.mask).sum()) for layer in self.layers) + removed) / total

    @torch.no_grad()
    def prune(self, sparsity: float, gradients: GradientSource | None = None) -> None:
        """Prune to ``sparsity``; OBS needs gradient samples (a sized iterable of dicts keyed by layer name).

        Samples are consumed as they come, so they need not all be held in memory.
        """
        live = [layer.live_entries for layer in self.layers]
        masks = [layer.synced_mask()[entries] for layer, entries in zip(self.layers, live, strict=True)]
        weights = [layer.weight.detach()[entries] for layer, entries in zip(self.layers, live, strict=True)]
        if self.scorer == "obs":
            if gradients is None:
                raise ValueError("the OBS scorer needs gradient samples")
            fishers = self._fisher_inverses(gradients, live, masks)
            saliencies = [self._obs_saliency(w, fishers[layer.name]) for layer, w in zip(self.layers, weights,
                                                                                          strict=True)]
        else:
            fishers = {}
            saliencies = [magnitude_saliency(w.float(), self.group) for w in weights]
        for mask, saliency in zip(masks, saliencies, strict=True):
            saliency[~mask.reshape(-1, self.group).all(dim=-1)] = -torch.inf
        keeps = self._select(saliencies, sparsity)
        for layer, entries, mask, w, keep in zip(self.layers, live, masks, weights, keeps, strict=True):
            kept = keep.repeat_interleave(self.group)
            if self.scorer == "obs":
                layer.weight[entries] = self._obs_update(w, fishers[layer.name], mask & ~kept)
            layer.mask = torch.zeros_like(layer.mask)
            layer.mask[entries] = kept
        self.apply_masks()
        log.info("pruned to %.4f sparsity (target %.4f) with %s", self.sparsity(), sparsity, self.scorer)

    def _fisher_inverses(self, gradients: GradientSource, live: list[torch.Tensor],
                         masks: list[torch.Tensor]) -> dict[str, BlockFisherInverse]:
        count = len(gradients)
        if count == 0:
            raise ValueError("no gradient samples")
        fishers = {
            layer.name: BlockFisherInverse(
                mask.numel(), self.block_size, count, self.damp, self.fisher_dtype, layer.weight.device
            )
            for layer, mask in zip(self.layers, masks, strict=True)
        }
        chunk: list[Gradients] = []
        for sample in gradients:
            chunk.append(sample)
            if len(chunk) == self.grads_per_update:
                self._fold(fishers, chunk, live, masks)
                chunk = []
        if chunk:
            self._fold(fishers, chunk, live, masks)
        return fishers

    def _fold(self, fishers: dict[str, BlockFisherInverse], chunk: list[Gradients], live: list[torch.Tensor],
              masks: list[torch.Tensor]) -> None:
        for layer, entries, mask in zip(self.layers, live, masks, strict=True):
            grads = torch.stack([sample[layer.name][entries] * mask for sample in chunk])
            fishers[layer.name].add_gradients(grads)

    def _obs_saliency(self, weights: torch.Tensor, finv: BlockFisherInverse) -> torch.Tensor:
        saliency = obs_saliency(finv.blocks(weights), finv, self.group).reshape(-1)
        return saliency[: weights.numel() // self.group]

    def _obs_update(self, weights: torch.Tensor, finv: BlockFisherInverse, newly_pruned: torch.Tensor) -> torch.Tensor:
        updated = obs_update(finv.blocks(weights), finv, finv.blocks(newly_pruned).bool(), self.group)
        return finv.unblock(updated).to(weights.dtype)

    def _select(self, saliencies: list[torch.Tensor], sparsity: float) -> list[torch.Tensor]:
        """Keep-masks over live groups: the lowest-saliency groups go, globally or layer by layer, until
        ``sparsity`` of all the weights (removed structures included) are zero."""
        if self.scope == "per-layer":
            return [_keep_top(s, self._groups_to_prune([layer], sparsity))
                    for layer, s in zip(self.layers, saliencies, strict=True)]
        flat = torch.cat(saliencies)
        keep = _keep_top(flat, self._groups_to_prune(self.layers, sparsity))
        return list(torch.split(keep, [s.numel() for s in saliencies]))

    def _groups_to_prune(self, layers: list[PrunableLayer], sparsity: float) -> int:
        total = sum(layer.mask.numel() + self.removed_weights[layer.name] for layer in layers)
        live = sum(int(layer.live_entries.sum()) for layer in layers)
        count = round((sparsity * total - (total - live)) / self.group)
        return min(max(count, 0), live // self.group)


def _keep_top(saliency: torch.Tensor, prune_count: int) -> torch.Tensor:
    """True for the groups to keep when the ``prune_count`` lowest-saliency groups go."""
    keep = torch.ones_like(saliency, dtype=torch.bool)
    if prune_count > 0:
        keep[torch.topk(saliency, prune_count, largest=False).indices] = False
    return keep
