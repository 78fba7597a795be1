"""Drives the pruner from transformers' Trainer events, and samples gradients for the OBS Fisher."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from compression.pruning.pruner import Gradients, Pruner
from compression.pruning.schedule import CubicSchedule
from compression.recipe import PruningRecipe

log = logging.getLogger(__name__)

LossFunction = Callable[[nn.Module, dict[str, torch.Tensor]], torch.Tensor]


class GradientSampler:
    """``count`` gradients of the training loss, each on a random mini-batch, for the pruned layers.

    Batches are drawn from a generator seeded by (seed, step), so a resumed run samples what the
    uninterrupted run would have.
    """

    def __init__(
        self,
        model: nn.Module,
        pruner: Pruner,
        loss_fn: LossFunction,
        dataset: list[dict[str, Any]],
        collate: Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]],
        batch_size: int,
        count: int,
        seed: int,
    ) -> None:
        self.model, self.pruner, self.loss_fn = model, pruner, loss_fn
        self.dataset, self.collate = dataset, collate
        self.batch_size, self.count, self.seed = batch_size, count, seed

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[Gradients]:
        generator = torch.Generator().manual_seed(self.seed)
        device = next(self.model.parameters()).device
        weights = [layer.weight for layer in self.pruner.layers]
        for _ in range(self.count):
            indices = torch.randint(len(self.dataset), (self.batch_size,), generator=generator).tolist()
            batch = {k: v.to(device) for k, v in self.collate([self.dataset[i] for i in indices]).items()}
            with torch.enable_grad():
                grads = torch.autograd.grad(self.loss_fn(self.model, batch), weights)
            yield {layer.name: g.detach() for layer, g in zip(self.pruner.layers, grads, strict=True)}


SamplerFactory = Callable[[int], GradientSampler]


def _steps_of(epochs: float, steps_per_epoch: float) -> int:
    return round(epochs * steps_per_epoch)


class PruningCallback(TrainerCallback):
    """One-shot pruning at the start epoch, cubic updates to the end epoch, masks held in between and after."""

    def __init__(self, pruner: Pruner, recipe: PruningRecipe, samplers: SamplerFactory | None) -> None:
        if recipe.scorer == "obs" and samplers is None:
            raise ValueError("OBS pruning needs a gradient sampler")
        self.pruner = pruner
        self.recipe = recipe
        self.samplers = samplers
        self.schedule: CubicSchedule | None = None
        self.history: list[dict[str, float]] = []

    def build_schedule(self, max_steps: int, epochs: float) -> CubicSchedule:
        """Translate the recipe's epochs into optimizer steps."""
        steps_per_epoch = max_steps / epochs
        start = _steps_of(self.recipe.start_epoch, steps_per_epoch)
        end = max(start, _steps_of(self.recipe.end_epoch, steps_per_epoch))
        interval = max(1, math.ceil(self.recipe.update_interval_epochs * steps_per_epoch))
        return CubicSchedule(self.recipe.initial_sparsity, self.recipe.final_sparsity, start, end, interval)

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.schedule = self.build_schedule(state.max_steps, args.num_train_epochs)
        log.info("pruning steps: %s", self.schedule.update_steps())
        self.pruner.masks_from_weights()  # zeros the student starts with (removed heads and neurons) stay zero
        if state.global_step > 0:
            log.info("resumed at step %d with sparsity %.4f", state.global_step, self.pruner.sparsity())
        elif self.schedule.is_update_step(0):
            self.prune_at(0)

    def on_optimizer_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.pruner.apply_masks()

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.schedule is not None and self.schedule.is_update_step(state.global_step):
            self.prune_at(state.global_step)

    def prune_at(self, step: int) -> None:
        """Prune to the schedule's sparsity at ``step``, in ``recomputations`` rounds of fresh Fisher estimates."""
        assert self.schedule is not None
        target = self.schedule.sparsity_at(step)
        start = self.pruner.sparsity()
        rounds = self.recipe.obs.recomputations if self.recipe.scorer == "obs" else 1
        for k in range(1, rounds + 1):
            sparsity = start + (target - start) * k / rounds
            sampler = self.samplers(step * 1000 + k) if self.samplers is not None else None
            self.pruner.prune(sparsity, sampler)
        _broadcast_from_first_rank(self.pruner)
        self.history.append({"step": step, "sparsity": self.pruner.sparsity()})


def _broadcast_from_first_rank(pruner: Pruner) -> None:
    """Under distributed training, make every rank hold rank 0's pruned weights and masks."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    for layer in pruner.layers:
        torch.distributed.broadcast(layer.weight.data, src=0)
    pruner.masks_from_weights()
