"""Lightning's ModelCheckpoint with a last.ckpt that is really the last, and no non-finite checkpoint.

Lightning 2.6 writes `last.ckpt` (save_last) only when a top-k checkpoint is written at the same step, so
with `monitor=val/loss, save_top_k=1` a validation that does not improve leaves last.ckpt behind, and the
end of fit (when it is not a validation step) writes nothing. This class writes last.ckpt at every
validation end and at the end of fit, through Lightning's own `_save_last_checkpoint` (same name, same
atomic CheckpointIO, same `last_model_path` bookkeeping). It also refuses to write any checkpoint, best or
last, while the weights (raw or EMA) or the monitored value are NaN/Inf: the previous files stay.
"""

from __future__ import annotations

import logging

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from flashipa_train.train.checkpoint_io import remove_temp_files
from flashipa_train.train.ema import find_ema

log = logging.getLogger(__name__)


def nonfinite_weight_names(trainer: pl.Trainer) -> list[str]:
    """Names of the model's parameters and EMA shadow tensors that hold a NaN or Inf (empty when all finite)."""
    named = [(f"model.{n}", p) for n, p in trainer.lightning_module.named_parameters()]
    ema = find_ema(trainer)
    if ema is not None and ema.shadow is not None:
        named += [(f"ema.{n}", t) for n, t in ema.shadow.items()]
    return [name for name, tensor in named if not bool(torch.isfinite(tensor.detach()).all())]


class LastAndBestCheckpoint(ModelCheckpoint):
    """`ModelCheckpoint` (same arguments) whose `last.ckpt` follows every validation and the end of fit, and
    which never writes a checkpoint with non-finite weights or a non-finite monitored value."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if trainer.is_global_zero and self.dirpath and "://" not in str(self.dirpath):
            for leftover in remove_temp_files(self.dirpath):
                log.info("Removed %s, left by a checkpoint write that was killed", leftover)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        self._save_last_if_behind(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save_last_if_behind(trainer)

    def _save_last_if_behind(self, trainer: pl.Trainer) -> None:
        # skips when a checkpoint (and so last.ckpt) was written at this step already
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def _save_topk_checkpoint(self, trainer: pl.Trainer, monitor_candidates: dict) -> None:
        current = monitor_candidates.get(self.monitor) if self.monitor else None
        if current is not None and not bool(torch.isfinite(torch.as_tensor(current)).all()):
            log.warning(
                "%s=%s at step %d: not written as a best checkpoint (best stays %s).",
                self.monitor,
                float(current),
                trainer.global_step,
                self.best_model_path or "none",
            )
            return
        super()._save_topk_checkpoint(trainer, monitor_candidates)

    def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        bad = nonfinite_weight_names(trainer)
        current = trainer.callback_metrics.get(self.monitor) if self.monitor else None
        if not bad and current is not None and not bool(torch.isfinite(torch.as_tensor(current)).all()):
            bad = [f"{self.monitor}={float(current)}"]
        if bad:
            log.error(
                "Not writing %s at step %d: non-finite %s. The earlier checkpoints are kept.",
                filepath,
                trainer.global_step,
                ", ".join(bad[:4]) + (" ..." if len(bad) > 4 else ""),
            )
            return
        super()._save_checkpoint(trainer, filepath)
