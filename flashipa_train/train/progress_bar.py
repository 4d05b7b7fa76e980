"""Lightning's tqdm bar counting optimizer steps of the whole run (global step / max_steps) instead of the
batches of one epoch: a run on a small data set has many short epochs, and max_steps is what ends it."""

from __future__ import annotations

from pytorch_lightning.callbacks import TQDMProgressBar
from pytorch_lightning.callbacks.progress.tqdm_progress import _update_n


class StepProgressBar(TQDMProgressBar):
    """`TQDMProgressBar` whose training bar runs from the global step (a resumed run starts where it
    stopped) to `trainer.max_steps`, across epochs; with max_steps unset it is Lightning's per-epoch bar."""

    def on_train_epoch_start(self, trainer, *args) -> None:
        if trainer.max_steps is None or trainer.max_steps < 0:
            return super().on_train_epoch_start(trainer, *args)
        bar = self.train_progress_bar
        if bar.total != trainer.max_steps:
            bar.reset(total=trainer.max_steps)
            _update_n(bar, trainer.global_step)
        bar.set_description(f"step (epoch {trainer.current_epoch})")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.max_steps is None or trainer.max_steps < 0:
            return super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        step = trainer.global_step
        if self._should_update(step, self.train_progress_bar.total):
            _update_n(self.train_progress_bar, step)
            self.train_progress_bar.set_postfix(self.get_metrics(trainer, pl_module))
