"""Guard against NaN/Inf: a bad batch is skipped and named; weights that an optimizer step has made
non-finite (or that give non-finite losses on every batch) stop the run with the step, the last finite loss
and the learning rate named. Checkpoints never hold such weights (LastAndBestCheckpoint refuses them)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pytorch_lightning as pl
import torch

log = logging.getLogger(__name__)


def skips_on_device(optimizer: torch.optim.Optimizer) -> bool:
    """True for optimizers whose step honours a device-side `found_inf` flag (the fused Adam/AdamW/SGD
    kernels that GradScaler drives): they leave weights, moments and step count untouched when it is 1."""
    return bool(getattr(optimizer, "_step_supports_amp_scaling", False) and optimizer.defaults.get("fused"))


def nonfinite_flag(tensors: list[torch.Tensor], device) -> torch.Tensor:
    """[] float32 on the device: 1.0 when any tensor holds a NaN/Inf, else 0.0 (no host synchronisation)."""
    if not tensors:
        return torch.zeros((), device=device)
    norms = torch._foreach_norm([t.detach() for t in tensors])  # a NaN/Inf anywhere makes its norm non-finite
    return (~torch.isfinite(torch.stack(norms).sum())).float()


@dataclass
class _Check:
    """One pending check: before a step (`kind="batch"`: loss and gradients) or after it (`"weights"`)."""

    kind: str
    step: int
    flag: torch.Tensor  # [] float32 on the device
    loss: torch.Tensor | None
    sources: list[str]
    lr: float


class NonFiniteGuard(pl.Callback):
    """Checks the loss and gradients before each optimizer step, and the weights after it.

    - A non-finite loss or gradient with finite weights is blamed on the batch: the step is skipped (AdamW
      leaves weights and moments untouched) and the batch's `source` entries (file + chain) are logged
      (`action="skip"`), or the run stops (`action="stop"`, or after `max_skips` skipped steps).
    - `max_consecutive_skips` bad batches in a row are blamed on the weights, not the batches: the run stops
      naming the last finite loss and the learning rate.
    - Weights made non-finite by a step stop the run at once (FloatingPointError) naming that step, its
      learning rate and the last finite loss; last.ckpt and the best checkpoint keep the last finite weights
      to resume from with a lower `optimizer.lr`.

    With a fused optimizer (`optimizer.fused: true`, see `skips_on_device`) the skip flag is handed to the
    optimizer as `found_inf` and the flags are read every `check_every_n_steps` steps (and before every
    validation and at the end of training), so there is no host synchronisation per step; a stop then comes
    up to that many steps late, never after a checkpoint. Other optimizers read the flags every step.

    Args:
        action: "skip" or "stop".
        max_skips: skipped steps tolerated in one run before stopping.
        max_consecutive_skips: bad batches in a row that are blamed on the weights (stop).
        check_every_n_steps: with a fused optimizer, steps between reads of the flags.
    """

    def __init__(
        self, action: str = "skip", max_skips: int = 20, max_consecutive_skips: int = 3, check_every_n_steps: int = 1
    ):
        if action not in ("skip", "stop"):
            raise ValueError(f"NonFiniteGuard: action must be 'skip' or 'stop', got {action!r}.")
        if int(check_every_n_steps) < 1:
            raise ValueError(f"NonFiniteGuard: check_every_n_steps must be >= 1, got {check_every_n_steps}.")
        if int(max_consecutive_skips) < 1:
            raise ValueError(f"NonFiniteGuard: max_consecutive_skips must be >= 1, got {max_consecutive_skips}.")
        self.action = action
        self.max_skips = int(max_skips)
        self.max_consecutive_skips = int(max_consecutive_skips)
        self.check_every_n_steps = int(check_every_n_steps)
        self.num_skipped = 0
        self.consecutive_skips = 0
        self.last_finite: tuple[int, float, float] | None = None  # (step, loss, lr) of the last finite loss
        self._step_lr = float("nan")
        self._pending: list[_Check] = []

    @staticmethod
    def _lr(optimizer: torch.optim.Optimizer) -> float:
        return float(optimizer.param_groups[0]["lr"])

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        loss = getattr(pl_module, "last_loss", None)
        loss = loss.detach() if loss is not None else None
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        flag = nonfinite_flag(grads + ([loss.reshape(1)] if loss is not None else []), pl_module.device)
        sources = list(getattr(pl_module, "last_sources", None) or ["<unknown: batch had no 'source'>"])
        self._step_lr = self._lr(optimizer)  # the scheduler moves it after the step: keep the step's own
        self._pending.append(_Check("batch", trainer.global_step, flag, loss, sources, self._step_lr))
        if skips_on_device(optimizer):
            optimizer.found_inf = flag
            if sum(c.kind == "batch" for c in self._pending) >= self.check_every_n_steps:
                self._read_pending(trainer)
            return
        if self._read_pending(trainer):  # the step just checked was bad: drop its gradients
            optimizer.zero_grad(set_to_none=True)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if (batch_idx + 1) % trainer.accumulate_grad_batches != 0:
            return  # no optimizer step after this micro-batch
        params = [p for p in pl_module.parameters() if p.requires_grad]
        step = trainer.global_step - 1  # the step just taken
        self._pending.append(_Check("weights", step, nonfinite_flag(params, pl_module.device), None, [], self._step_lr))
        if not any(skips_on_device(o) for o in trainer.optimizers):
            self._read_pending(trainer)  # fused: read with the next batch flags (no host synchronisation here)

    def _read_pending(self, trainer) -> bool:
        """Read the pending flags and losses (one host synchronisation); skip, log or raise for the bad ones.
        True when the last pending check was bad."""
        if not self._pending:
            return False
        pending, self._pending = self._pending, []
        flags = torch.stack([c.flag for c in pending]).cpu().tolist()
        for check, bad in zip(pending, flags):
            if check.kind == "weights":
                if bad:
                    self._stop_for_weights(check)
                continue
            if bad:
                self._handle_bad_batch(check)
            else:
                self.consecutive_skips = 0
                if check.loss is not None and check.loss.numel() == 1:
                    self.last_finite = (check.step, float(check.loss.float().cpu()), check.lr)
        return bool(flags[-1])

    def _last_finite_text(self) -> str:
        if self.last_finite is None:
            return "no finite loss in this run yet"
        step, loss, lr = self.last_finite
        return f"the last finite loss was {loss:.4g} at step {step} (learning rate {lr:.3g})"

    def _stop_for_weights(self, check: _Check) -> None:
        raise FloatingPointError(
            f"NonFiniteGuard: optimizer step {check.step} made the weights NaN/Inf (learning rate {check.lr:.3g}); "
            f"{self._last_finite_text()}. The step size, not a batch, is the cause: lower optimizer.lr (or "
            "trainer.gradient_clip_val) and resume from last.ckpt, which holds the last finite weights."
        )

    def _handle_bad_batch(self, check: _Check) -> None:
        loss_text = (
            f"{float(check.loss.float().cpu()):.4g}" if check.loss is not None and check.loss.numel() == 1 else "n/a"
        )
        message = (
            f"non-finite loss or gradient at global step {check.step} (loss={loss_text}); "
            f"batch sources: {', '.join(check.sources)}"
        )
        self.consecutive_skips += 1
        if self.consecutive_skips >= self.max_consecutive_skips:
            raise FloatingPointError(
                f"NonFiniteGuard: {self.consecutive_skips} batches in a row gave a non-finite loss or gradient, up "
                f"to step {check.step} (learning rate {check.lr:.3g}); {self._last_finite_text()}. The weights, "
                "not these batches, are the likely cause: lower optimizer.lr and resume from last.ckpt."
            )
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
