"""Learning-rate schedule: linear warm-up, then cosine decay to a floor, stepped once per optimizer step."""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LRScheduler


class WarmupCosineLR(LRScheduler):
    """lr(step) = base_lr * factor(step), with factor rising linearly from 1/warmup_steps to 1 over
    `warmup_steps` steps (never more than `max_warmup_fraction` of `total_steps`, so a short run does not
    spend itself warming up), then following half a cosine from 1 down to `min_lr_ratio` at `total_steps`,
    and staying at `min_lr_ratio` after that.

    Args:
        optimizer: the wrapped optimizer; its param groups' `lr` are the peak rates.
        total_steps: optimizer steps of the whole run (warm-up included).
        warmup_steps: steps of the linear warm-up (0 starts at the peak rate).
        max_warmup_fraction: cap of the warm-up as a fraction of total_steps.
        min_lr_ratio: final rate as a fraction of the peak rate.
        last_epoch: index of the last step taken (-1 for a fresh run; Lightning restores it on resume).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        total_steps: int,
        warmup_steps: int = 1000,
        min_lr_ratio: float = 0.1,
        max_warmup_fraction: float = 0.05,
        last_epoch: int = -1,
    ):
        if total_steps < 1:
            raise ValueError(f"WarmupCosineLR: total_steps must be >= 1, got {total_steps}; set trainer.max_steps.")
        if not 0.0 <= min_lr_ratio <= 1.0:
            raise ValueError(f"WarmupCosineLR: min_lr_ratio must lie in [0, 1], got {min_lr_ratio}.")
        self.total_steps = int(total_steps)
        if not 0.0 <= max_warmup_fraction <= 1.0:
            raise ValueError(f"WarmupCosineLR: max_warmup_fraction must lie in [0, 1], got {max_warmup_fraction}.")
        self.warmup_steps = max(0, min(int(warmup_steps), int(max_warmup_fraction * total_steps)))
        self.min_lr_ratio = float(min_lr_ratio)
        super().__init__(optimizer, last_epoch)

    def lr_factor(self, step: int) -> float:
        """Multiplier of the peak rate at optimizer step `step` (0-based)."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        decay_steps = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / decay_steps)
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cosine

    def get_lr(self) -> list[float]:
        factor = self.lr_factor(self.last_epoch)
        return [base_lr * factor for base_lr in self.base_lrs]
