"""LightningModule that trains a `FlowModel` with a `FlowMatcher` objective."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

from flashipa_train.train.lr_schedule import WarmupCosineLR

log = logging.getLogger(__name__)

# Seeds of the per-step noise generators are spread out so that runs with nearby seeds do not share steps.
_SEED_STRIDE = 1_000_003
# a compiled model's first steps compile it and record its CUDA graphs: their wall time is logged
_COMPILE_STEPS_REPORTED = 10


class FlowModule(pl.LightningModule):
    """Flow-matching training of a backbone generator.

    Each training step draws its noise (time, prior sample, self-conditioning coin) from a generator
    seeded by (seed, global step, rank), so a resumed run replays the same noise as an uninterrupted one.
    Validation uses fixed per-batch seeds, so validation losses are comparable across epochs; the EMA
    callback swaps the averaged weights in for it. Checkpoints carry the global RNG states and the run's
    resolved config (plain containers only, so `torch.load(weights_only=True)` reads them).

    Args:
        model: the `FlowModel` (or any module with its `forward(noisy) -> dict`).
        flow: the `FlowMatcher` providing `training_loss(model, batch, generator)`.
        optimizer: factory `params -> Optimizer` (a Hydra `_partial_` AdamW).
        scheduler: factory `(optimizer, total_steps) -> LRScheduler` stepped every optimizer step;
            None uses `WarmupCosineLR` with its defaults.
        seed: base seed of the per-step noise generators.
        val_noise_draws: noise draws averaged per validation batch.
        run_config: the resolved run config (plain dict) stored in checkpoints, or None.
    """

    def __init__(
        self,
        model: nn.Module,
        flow: Any,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        seed: int = 0,
        val_noise_draws: int = 4,
        run_config: dict | None = None,
    ):
        super().__init__()
        self.model = model
        self.flow = flow
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler or WarmupCosineLR
        self.seed = int(seed)
        self.val_noise_draws = int(val_noise_draws)
        self.run_config = run_config
        # Read by NonFiniteGuard before the optimizer step (tensors: no host synchronisation here).
        self.last_loss: torch.Tensor | None = None
        self.last_sources: list[str] | None = None
        self._logger_step_aligned = False
        self._fit_start = 0.0
        self._steps_this_fit = 0

    def forward(self, noisy: dict) -> dict:
        return self.model(noisy)

    def _generator(self, offset: int) -> torch.Generator:
        generator = torch.Generator(device=self.device)
        generator.manual_seed(self.seed * _SEED_STRIDE + offset)
        return generator

    @staticmethod
    def _batch_size(batch: dict) -> int:
        return int(batch["res_mask"].shape[0])

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        # The batch's `all_real` (flow/batch.py's TrainBatch), read while it is still on the CPU: the flow
        # matcher hands it to the model as NoisyInputs.all_real, and the sdpa attention needs no device read.
        if isinstance(batch, dict) and isinstance(batch.get("res_mask"), torch.Tensor):
            batch["all_real"] = bool(batch["res_mask"].all())
        return batch

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        offset = self.global_step * self.trainer.world_size + self.global_rank
        losses = self.flow.training_loss(self.model, batch, generator=self._generator(offset))
        self.last_loss = losses["loss"]
        self.last_sources = batch.get("source")
        metrics = {f"train/{name}": value.detach() for name, value in losses.items()}
        self.log_dict(metrics, on_step=True, on_epoch=False, batch_size=self._batch_size(batch))
        self.log(
            "train/loss_bar",
            losses["loss"].detach(),
            on_step=True,
            prog_bar=True,
            logger=False,
            batch_size=self._batch_size(batch),
        )
        return losses["loss"]

    def on_train_start(self) -> None:
        self._logger_step_aligned = False
        self._fit_start = time.perf_counter()
        self._steps_this_fit = 0

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._steps_this_fit += 1
        if self._steps_this_fit == _COMPILE_STEPS_REPORTED and getattr(self.model, "_compiled_call_impl", None):
            log.info(
                "first %d training steps took %.1f s (torch.compile and CUDA graph recording included)",
                _COMPILE_STEPS_REPORTED,
                time.perf_counter() - self._fit_start,
            )

    def on_train_batch_start(self, batch: dict, batch_idx: int) -> None:
        # Loggers use Lightning's count of optimizer steps as their x-axis, which comes back one ahead after a
        # resume from a validation-end checkpoint; realign it once with global_step so resumed curves continue.
        if not self._logger_step_aligned:
            epoch_loop = self.trainer.fit_loop.epoch_loop
            if hasattr(epoch_loop, "_batches_that_stepped"):
                epoch_loop._batches_that_stepped = self.global_step
            self._logger_step_aligned = True

    def on_train_epoch_start(self) -> None:
        # Lightning sets the sampler epoch from its epoch counter, which is one ahead after resuming from a
        # checkpoint written at an epoch's last validation; the DataModule's batch order and crops are a
        # function of (seed, epoch), so pin the epoch to `current_epoch` for an exact resume.
        loaders = self.trainer.train_dataloader
        for loader in loaders if isinstance(loaders, (list, tuple)) else [loaders]:
            for sampler in (getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None)):
                if hasattr(sampler, "set_epoch"):
                    sampler.set_epoch(self.current_epoch)

    def validation_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        # Several fixed noise draws per batch (t, prior, self-conditioning): one draw of t makes the loss of a
        # small validation set swing with t. Negative offsets never collide with training ones.
        offsets = [-1 - batch_idx * self.val_noise_draws - i for i in range(self.val_noise_draws)]
        draws = [self.flow.training_loss(self.model, batch, generator=self._generator(o)) for o in offsets]
        losses = {name: torch.stack([d[name].detach() for d in draws]).mean() for name in draws[0]}
        metrics = {f"val/{name}": value for name, value in losses.items()}
        self.log_dict(metrics, on_step=False, on_epoch=True, sync_dist=True, batch_size=self._batch_size(batch))
        return losses["loss"]

    def total_training_steps(self) -> int:
        """Optimizer steps of the whole run: `trainer.max_steps` when set, else Lightning's estimate."""
        if self.trainer.max_steps is not None and self.trainer.max_steps > 0:
            return int(self.trainer.max_steps)
        return int(self.trainer.estimated_stepping_batches)

    def configure_optimizers(self) -> dict:
        optimizer = self.optimizer_factory(params=[p for p in self.model.parameters() if p.requires_grad])
        scheduler = self.scheduler_factory(optimizer, total_steps=self.total_training_steps())
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1, "name": "train/lr"},
        }  # LearningRateMonitor's key

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        # Lightning's mixed-precision plugin refuses to clip for a fused optimizer, which unscales fp16
        # gradients inside its step; under bf16 there is no grad scaler, so the gradients are clipped here as
        # Lightning would clip fp32 ones (clip_grad_norm_ scales on the device: no host synchronisation).
        fused = getattr(optimizer, "defaults", {}).get("fused")
        if not gradient_clip_val or not fused or getattr(self.trainer.precision_plugin, "scaler", None) is not None:
            return super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        if gradient_clip_algorithm == "value":
            torch.nn.utils.clip_grad_value_(params, gradient_clip_val)
        else:
            torch.nn.utils.clip_grad_norm_(params, gradient_clip_val)

    # Checkpoint extras: global RNG states (as tensors and ints, readable with weights_only=True) and config.

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        np_state = np.random.get_state()
        checkpoint["rng_states"] = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": {
                "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                "pos": int(np_state[2]),
                "has_gauss": int(np_state[3]),
                "cached_gaussian": float(np_state[4]),
            },
            "python": random.getstate(),
        }
        if self.run_config is not None:
            checkpoint["run_config"] = self.run_config

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        states = checkpoint.get("rng_states")
        if states is None:
            return
        torch.set_rng_state(states["torch"])
        if states["cuda"] and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states["cuda"])
        numpy_state = states["numpy"]
        np.random.set_state(
            (
                "MT19937",
                numpy_state["keys"].numpy().astype(np.uint32),
                numpy_state["pos"],
                numpy_state["has_gauss"],
                numpy_state["cached_gaussian"],
            )
        )
        random.setstate(states["python"])
