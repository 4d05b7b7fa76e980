"""Exponential moving average of the model weights, used for validation and sampling."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytorch_lightning as pl
import torch


class EMA(pl.Callback):
    """Keeps an fp32 shadow copy of every trainable parameter of `pl_module.model`, updated after each
    optimizer step as shadow <- shadow + (1 - d) * (param - shadow). The decay warms up as
    d = min(decay, (1 + n) / (10 + n)) after n updates, so early shadows are not dominated by the random
    initial weights. The long-run decay is capped so that its half-life, ln 2 / -ln d steps, is at most
    `max_half_life_fraction` of the run's `trainer.max_steps` (0.999, a half-life of 693 steps, would
    average a 2500-step run over its first half). Validation runs with the shadow weights swapped in; the
    shadow is stored in and restored from checkpoints (Lightning saves a callback's `state_dict`).

    The update is a fused `torch._foreach_lerp_` on device tensors: no host synchronisation per step.

    Args:
        decay: the long-run decay (0.999 averages over about 1000 steps).
        max_half_life_fraction: cap of the half-life as a fraction of trainer.max_steps (None: no cap).
        validate_with_ema: swap the shadow weights in for validation (and the sanity check).
    """

    def __init__(
        self, decay: float = 0.999, validate_with_ema: bool = True, max_half_life_fraction: float | None = 0.05
    ):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA: decay must lie in [0, 1), got {decay}.")
        if max_half_life_fraction is not None and not 0.0 < max_half_life_fraction <= 1.0:
            raise ValueError(
                f"EMA: max_half_life_fraction must lie in (0, 1] or be None, got {max_half_life_fraction}."
            )
        self.decay = float(decay)
        self.max_half_life_fraction = max_half_life_fraction
        self.validate_with_ema = validate_with_ema
        self.num_updates = 0
        self.shadow: dict[str, torch.Tensor] | None = None
        self._backup: list[torch.Tensor] | None = None

    # Shadow bookkeeping

    @staticmethod
    def _named_params(pl_module: pl.LightningModule) -> list[tuple[str, torch.nn.Parameter]]:
        return [(n, p) for n, p in pl_module.model.named_parameters() if p.requires_grad]

    def _ensure_shadow(self, pl_module: pl.LightningModule) -> None:
        """Create the shadow from the current weights, or move a restored shadow to the model's device."""
        params = self._named_params(pl_module)
        if self.shadow is None:
            self.shadow = {n: p.detach().float().clone() for n, p in params}
            return
        missing = [n for n, _ in params if n not in self.shadow]
        if missing:
            raise KeyError(
                f"EMA: the checkpoint's EMA state lacks parameters {missing[:5]} (of {len(missing)}); "
                "it was written by a different model configuration. Use the same model config to resume."
            )
        self.shadow = {n: self.shadow[n].to(device=p.device, dtype=torch.float32) for n, p in params}

    def decay_for_run(self, max_steps: int | None) -> float:
        """The long-run decay, capped so its half-life is at most max_half_life_fraction * max_steps."""
        if self.max_half_life_fraction is None or not max_steps or max_steps <= 0:
            return self.decay
        half_life = max(1.0, self.max_half_life_fraction * max_steps)
        return min(self.decay, 0.5 ** (1.0 / half_life))

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.decay = self.decay_for_run(getattr(trainer, "max_steps", None))
        self._ensure_shadow(pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # Lightning calls this after the optimizer step; skip micro-batches of gradient accumulation.
        if (batch_idx + 1) % trainer.accumulate_grad_batches != 0:
            return
        if self.shadow is None:
            self._ensure_shadow(pl_module)
        self.num_updates += 1
        decay = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        names, params = zip(*self._named_params(pl_module))
        shadows = [self.shadow[n] for n in names]
        current = [p.detach().float() for p in params]
        torch._foreach_lerp_(shadows, current, 1.0 - decay)

    # Swapping the shadow in and out

    @property
    def swapped_in(self) -> bool:
        """True while the model holds the shadow weights (between `swap_in` and `swap_out`)."""
        return self._backup is not None

    @torch.no_grad()
    def swap_in(self, pl_module: pl.LightningModule) -> None:
        """Replace the model's weights with the shadow, keeping the training weights aside."""
        if self._backup is not None:
            return
        self._ensure_shadow(pl_module)
        params = self._named_params(pl_module)
        self._backup = [p.detach().clone() for _, p in params]
        for name, param in params:
            param.copy_(self.shadow[name])

    @torch.no_grad()
    def swap_out(self, pl_module: pl.LightningModule) -> None:
        """Put the training weights back after `swap_in`."""
        if self._backup is None:
            return
        for (_, param), saved in zip(self._named_params(pl_module), self._backup):
            param.copy_(saved)
        self._backup = None

    @contextmanager
    def ema_weights(self, pl_module: pl.LightningModule) -> Iterator[None]:
        """`with ema.ema_weights(module): ...` runs the block with the shadow weights in the model.

        Inside validation the shadow is already in (validate_with_ema); then it is left to validation's end."""
        swap_here = not self.swapped_in
        if swap_here:
            self.swap_in(pl_module)
        try:
            yield
        finally:
            if swap_here:
                self.swap_out(pl_module)

    def on_validation_start(self, trainer, pl_module) -> None:
        if self.validate_with_ema:
            self.swap_in(pl_module)

    def on_validation_end(self, trainer, pl_module) -> None:
        # Runs before ModelCheckpoint's hook (Lightning orders checkpoint callbacks last), so the
        # checkpoint's `state_dict` always holds the training weights and the shadow goes in our state.
        self.swap_out(pl_module)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self.swap_out(pl_module)

    # Checkpoint state

    def state_dict(self) -> dict[str, Any]:
        shadow = None if self.shadow is None else {n: t.detach().cpu() for n, t in self.shadow.items()}
        return {"decay": self.decay, "num_updates": self.num_updates, "shadow": shadow}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.num_updates = int(state_dict["num_updates"])
        self.shadow = state_dict["shadow"]


def find_ema(trainer: pl.Trainer) -> EMA | None:
    """The trainer's EMA callback, or None when the run has none."""
    return next((c for c in trainer.callbacks if isinstance(c, EMA)), None)


@contextmanager
def sampling_weights(pl_module: pl.LightningModule) -> Iterator[None]:
    """Eval mode with the EMA weights (when the run has an EMA callback); both restored afterwards."""
    ema = find_ema(pl_module.trainer)
    was_training = pl_module.training
    pl_module.eval()
    try:
        if ema is None:
            yield
        else:
            with ema.ema_weights(pl_module):
                yield
    finally:
        pl_module.train(was_training)
