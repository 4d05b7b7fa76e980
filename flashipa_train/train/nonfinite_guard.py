"""Guard against NaN/Inf losses and gradients: names the batch's source structures and skips the
optimizer step or stops the run, as configured."""

from __future__ import annotations

import logging

import pytorch_lightning as pl
import torch

log = logging.getLogger(__name__)


def skips_on_device(optimizer: torch.optim.Optimizer) -> bool:
    """True for optimizers whose step honours a device-side `found_inf` flag (the fused Adam/AdamW/SGD
    kernels that GradScaler drives): they leave weights, moments and step count untouched when it is 1."""
    return bool(getattr(optimizer, "_step_supports_amp_scaling", False) and optimizer.defaults.get("fused"))


class NonFiniteGuard(pl.Callback):
    """Before each optimizer step, checks that the loss and the global gradient norm are finite.

    On a non-finite value it logs the step and the batch's `source` entries (file + chain), then either
    skips the optimizer step so AdamW leaves the weights and its moments untouched (`action="skip"`), or
    raises `FloatingPointError` (`action="stop"`). After `max_skips` skipped steps in one run it stops too.

    Two ways to skip:
      - fused optimizers (`optimizer.fused: true`, see `skips_on_device`): the flag is computed on the
        device and handed to the optimizer as `found_inf`, which skips the step inside its kernel. No host
        synchronisation: the flags are read every `check_every_n_steps` steps (and at validation and at the
        end of training), when the warnings are logged and `action="stop"` raises. A stop therefore comes up
        to that many steps late, but every bad step has been skipped.
      - other optimizers: the flag is read every step (one host synchronisation) and the gradients are
        dropped on a bad step.

    Args:
        action: "skip" or "stop".
        max_skips: skipped steps tolerated before stopping.
        check_every_n_steps: with a fused optimizer, steps between reads of the flags.
    """

    def __init__(self, action: str = "skip", max_skips: int = 20, check_every_n_steps: int = 1):
        if action not in ("skip", "stop"):
            raise ValueError(f"NonFiniteGuard: action must be 'skip' or 'stop', got {action!r}.")
        if int(check_every_n_steps) < 1:
            raise ValueError(f"NonFiniteGuard: check_every_n_steps must be >= 1, got {check_every_n_steps}.")
        self.action = action
        self.max_skips = int(max_skips)
        self.check_every_n_steps = int(check_every_n_steps)
        self.num_skipped = 0
        # (global step, non-finite flag [] float32 on the device, loss or None, batch sources) not yet read
        self._pending: list[tuple[int, torch.Tensor, torch.Tensor | None, list[str]]] = []

    @staticmethod
    def _nonfinite_flag(loss: torch.Tensor | None, grads: list[torch.Tensor], device) -> torch.Tensor:
        """[] float32 on the device: 1.0 when the loss or any gradient holds a NaN/Inf, else 0.0."""
        finite = torch.ones((), dtype=torch.bool, device=device)
        if loss is not None:
            finite = finite & torch.isfinite(loss.detach()).all()
        if grads:
            norms = torch._foreach_norm(grads)  # per-tensor L2 norms; a NaN/Inf anywhere makes its norm non-finite
            finite = finite & torch.isfinite(torch.stack(norms).sum())
        return (~finite).float()

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        loss = getattr(pl_module, "last_loss", None)
        loss = loss.detach() if loss is not None else None
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        flag = self._nonfinite_flag(loss, grads, pl_module.device)
        sources = list(getattr(pl_module, "last_sources", None) or ["<unknown: batch had no 'source'>"])
        self._pending.append((trainer.global_step, flag, loss, sources))
        if skips_on_device(optimizer):
            optimizer.found_inf = flag
            if len(self._pending) >= self.check_every_n_steps:
                self._read_pending(trainer)
            return
        if self._read_pending(trainer):  # the step just checked was bad: drop its gradients
            optimizer.zero_grad(set_to_none=True)

    def _read_pending(self, trainer) -> bool:
        """Read the pending flags (one host synchronisation), log or raise for the bad steps; True when the
        last pending step was bad."""
        if not self._pending:
            return False
        pending, self._pending = self._pending, []
        flags = torch.stack([flag for _, flag, _, _ in pending]).cpu()
        for (step, _, loss, sources), bad in zip(pending, flags.tolist()):
            if bad:
                self._handle_bad_step(step, loss, sources)
        return bool(flags[-1])

    def _handle_bad_step(self, step: int, loss: torch.Tensor | None, sources: list[str]) -> None:
        loss_text = f"{float(loss.float().cpu()):.4g}" if loss is not None and loss.numel() == 1 else "n/a"
        message = f"non-finite loss or gradient at global step {step} (loss={loss_text}); " \
                  f"batch sources: {', '.join(sources)}"
        if self.action == "stop" or self.num_skipped >= self.max_skips:
            why = "action='stop'" if self.action == "stop" else f"{self.num_skipped} steps already skipped"
            raise FloatingPointError(
                f"NonFiniteGuard: {message}. Stopping ({why}). Inspect these structures, lower the learning "
                "rate, or set callbacks.nonfinite_guard.action=skip."
            )
        self.num_skipped += 1
        log.warning("NonFiniteGuard: %s. Skipped this optimizer step (%d skipped so far).", message, self.num_skipped)

    def on_validation_start(self, trainer, pl_module) -> None:
        self._read_pending(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        self._read_pending(trainer)

    def state_dict(self) -> dict:
        return {"num_skipped": self.num_skipped}

    def load_state_dict(self, state_dict: dict) -> None:
        self.num_skipped = int(state_dict["num_skipped"])
