"""Gradual sparsity schedules (Zhu & Gupta's cubic ramp, as oBERT uses)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CubicSchedule:
    """Sparsity jumps to ``initial`` at ``start_step`` and rises as a cubic to ``final`` at ``end_step``.

    Pruning happens every ``interval`` steps from ``start_step``; the last update lands on ``end_step``.
    """

    initial: float
    final: float
    start_step: int
    end_step: int
    interval: int

    def __post_init__(self) -> None:
        if not 0.0 <= self.initial <= self.final < 1.0:
            raise ValueError("need 0 <= initial sparsity <= final sparsity < 1")
        if self.start_step < 0 or self.end_step < self.start_step:
            raise ValueError("need 0 <= start step <= end step")
        if self.interval < 1:
            raise ValueError("the update interval must be at least one step")

    def sparsity_at(self, step: int) -> float:
        """Target sparsity after the pruning update at ``step`` (0 before the start)."""
        if step < self.start_step:
            return 0.0
        if step >= self.end_step or self.end_step == self.start_step:
            return self.final
        progress = (step - self.start_step) / (self.end_step - self.start_step)
        return self.final + (self.initial - self.final) * (1.0 - progress) ** 3

    def is_update_step(self, step: int) -> bool:
        """Whether the pruner acts at ``step``."""
        if step < self.start_step or step > self.end_step:
            return False
        return step == self.end_step or (step - self.start_step) % self.interval == 0

    def update_steps(self) -> list[int]:
        """All steps at which the pruner acts, in order."""
        steps = list(range(self.start_step, self.end_step, self.interval))
        return [*steps, self.end_step] if not steps or steps[-1] != self.end_step else steps
