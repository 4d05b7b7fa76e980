"""Guard against NaN/Inf losses and gradients: names the batch's source structures and skips the
optimizer step or stops the run, as configured."""

from __future__ import annotations

import logging

import pytorch_lightning as pl
import torch

log = logging.getLogger(__name__)


class NonFiniteGuard(pl.Callback):
    """Before each optimizer step, checks that the loss and the global gradient norm are finite.

    On a non-finite value it logs the step and the batch's `source` entries (file + chain), then either
    drops the gradients so AdamW leaves the weights and its moments untouched (`action="skip"`), or raises
    `FloatingPointError` (`action="stop"`). After `max_skips` skipped steps in one run it stops as well.

    This costs one host synchronisation per optimizer step (reading one boolean); remove the callback
    (`callbacks.nonfinite_guard=null`) when benchmarking step times.

    Args:
        action: "skip" or "stop".
        max_skips: skipped steps tolerated before stopping.
    """

    def __init__(self, action: str = "skip", max_skips: int = 20):
        if action not in ("skip", "stop"):
            raise ValueError(f"NonFiniteGuard: action must be 'skip' or 'stop', got {action!r}.")
        self.action = action
        self.max_skips = int(max_skips)
        self.num_skipped = 0

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        loss = getattr(pl_module, "last_loss", None)
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        finite = torch.ones((), dtype=torch.bool, device=pl_module.device)
        if loss is not None:
            finite = finite & torch.isfinite(loss.detach())
        if grads:
            norms = torch._foreach_norm(grads)  # per-tensor L2 norms; a NaN/Inf anywhere makes its norm non-finite
            finite = finite & torch.isfinite(torch.stack(norms).sum())
        if bool(finite):
            return
        sources = list(getattr(pl_module, "last_sources", None) or ["<unknown: batch had no 'source'>"])
        message = (
            f"non-finite loss or gradient at global step {trainer.global_step} "
            f"(loss={loss.detach().float().cpu().item() if loss is not None else 'n/a'}); "
            f"batch sources: {', '.join(sources)}"
        )
        if self.action == "stop" or self.num_skipped >= self.max_skips:
            why = "action='stop'" if self.action == "stop" else f"{self.num_skipped} steps already skipped"
            raise FloatingPointError(
                f"NonFiniteGuard: {message}. Stopping ({why}). Inspect these structures, lower the learning "
                "rate, or set callbacks.nonfinite_guard.action=skip."
            )
        self.num_skipped += 1
        log.warning("NonFiniteGuard: %s. Skipping this optimizer step (%d skipped so far).", message, self.num_skipped)
        optimizer.zero_grad(set_to_none=True)

    def state_dict(self) -> dict:
        return {"num_skipped": self.num_skipped}

    def load_state_dict(self, state_dict: dict) -> None:
        self.num_skipped = int(state_dict["num_skipped"])
